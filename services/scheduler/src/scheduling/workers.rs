//! The scheduler's view of its workers: those configured at start and those
//! that register (`RegisterWorker`). Each has a watcher that holds the
//! worker's stats stream open: every update refreshes what routing sees
//! (free KV blocks, the model it serves), and a stream that ends or stays silent past
//! `STATS_SILENCE` marks the worker unhealthy, so it gets no new work until
//! the stream is back.

use std::sync::Arc;
use std::time::Duration;

use reservoir_proto::v1 as pb;

use super::state::{RegisterError, Registered};
use super::{Shared, WorkerEndpoint};

/// Workers send stats at least once a second; this much silence means gone.
const STATS_SILENCE: Duration = Duration::from_secs(2);
/// Pause before reopening a stream that failed.
const REOPEN_AFTER: Duration = Duration::from_millis(250);
/// Stats the scheduler asks for at most this often.
const STATS_MIN_INTERVAL_MS: u32 = 50;

/// Adds a worker (and starts its watcher), or points a known id at a new
/// url. Returns whether the id was known.
pub async fn register(shared: &Arc<Shared>, endpoint: WorkerEndpoint) -> Result<bool, RegisterError> {
    let registered = shared.core.lock().await.register(endpoint)?;
    match registered {
        Registered::Known => Ok(true),
        Registered::Added(index) => {
            tokio::spawn(watch(shared.clone(), index));
            shared.wake.notify_one();
            Ok(false)
        }
    }
}

/// Follows worker `index`'s stats stream until shutdown, reopening it when it fails.
pub async fn watch(shared: Arc<Shared>, index: usize) {
    let shutdown = shared.shutdown.clone();
    loop {
        let Some(mut client) = shared.core.lock().await.worker_client(index) else {
            return;
        };
        let request = pb::WatchStatsRequest { min_interval_ms: STATS_MIN_INTERVAL_MS };
        if let Ok(Ok(response)) = tokio::time::timeout(STATS_SILENCE, client.watch_stats(request)).await {
            let mut stream = response.into_inner();
            // Once per stream: learn the model's tokenizer if no worker taught it yet.
            let mut asked_tokenizer = false;
            loop {
                tokio::select! {
                    next = tokio::time::timeout(STATS_SILENCE, stream.message()) => match next {
                        Ok(Ok(Some(stats))) => {
                            update(&shared, index, Some(&stats)).await;
                            shared.tokenizers.note_context(&stats.model_id, stats.context_length);
                            if !asked_tokenizer && shared.tokenizers.should_learn(&stats.model_id) {
                                asked_tokenizer = true;
                                match shared.tokenizers.learn_from(&mut client, &stats.model_id).await {
                                    Ok(()) => shared.metrics.tokenizer_known.with_label_values(&[&stats.model_id]).set(1),
                                    Err(e) => tracing::warn!(error = %e, model = %stats.model_id,
                                        "could not learn the model's tokenizer; admission estimates prompt tokens"),
                                }
                            }
                        }
                        _ => break,
                    },
                    _ = shutdown.wait() => return,
                }
            }
        }
        update(&shared, index, None).await;
        tokio::select! {
            _ = tokio::time::sleep(REOPEN_AFTER) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Records what the stream said of worker `index` (`None`: it failed).
async fn update(shared: &Shared, index: usize, stats: Option<&pb::WorkerStats>) {
    let back = shared.core.lock().await.note_stats(index, stats, &shared.metrics);
    if back {
        shared.wake.notify_one();
    }
}
