//! The scheduler's view of its workers: those configured at start and those
//! that register (`RegisterWorker`). Each has a watcher that holds the
//! worker's stats stream open: every update refreshes what routing sees
//! (free KV blocks), and a stream that ends or stays silent past
//! `STATS_SILENCE` marks the worker unhealthy, so it gets no new work until
//! the stream is back.

use std::sync::Arc;
use std::time::Duration;

use reservoir_proto::v1 as pb;

use super::{Shared, WorkerEndpoint, WorkerSlot};

/// Workers send stats at least once a second; this much silence means gone.
const STATS_SILENCE: Duration = Duration::from_secs(2);
/// Pause before reopening a stream that failed.
const REOPEN_AFTER: Duration = Duration::from_millis(250);
/// Stats the scheduler asks for at most this often.
const STATS_MIN_INTERVAL_MS: u32 = 50;

/// Adds a worker (and starts its watcher), or points a known id at a new
/// url. Returns whether the id was known.
/// Most workers the scheduler follows: a registration beyond it is refused,
/// so a caller cannot grow the scheduler's table (and its watchers) at will.
pub const WORKERS_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the scheduler already follows {WORKERS_MAX} workers")]
    Full,
    #[error("url: {0}")]
    BadUrl(anyhow::Error),
}

pub async fn register(shared: &Arc<Shared>, endpoint: WorkerEndpoint) -> Result<bool, RegisterError> {
    let mut core = shared.core.lock().await;
    if let Some(slot) = core.workers.iter_mut().find(|w| w.endpoint.id == endpoint.id) {
        if slot.endpoint.url != endpoint.url {
            tracing::info!(worker = %endpoint.id, url = %endpoint.url, "worker moved");
            let fresh = WorkerSlot::new(endpoint, &shared.internal_token).map_err(RegisterError::BadUrl)?;
            slot.endpoint = fresh.endpoint;
            slot.client = fresh.client;
        }
        return Ok(true);
    }
    if core.workers.len() >= WORKERS_MAX {
        return Err(RegisterError::Full);
    }
    tracing::info!(worker = %endpoint.id, url = %endpoint.url, "worker registered");
    core.workers.push(WorkerSlot::new(endpoint, &shared.internal_token).map_err(RegisterError::BadUrl)?);
    let index = core.workers.len() - 1;
    drop(core);
    tokio::spawn(watch(shared.clone(), index));
    shared.wake.notify_one();
    Ok(false)
}

/// Follows worker `index`'s stats stream until shutdown, reopening it when it fails.
pub async fn watch(shared: Arc<Shared>, index: usize) {
    let shutdown = shared.shutdown.clone();
    loop {
        let Some(mut client) = shared.core.lock().await.workers.get(index).map(|w| w.client.clone()) else {
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
    let mut core = shared.core.lock().await;
    let Some(slot) = core.workers.get_mut(index) else { return };
    let id = slot.endpoint.id.as_str();
    let m = &shared.metrics;
    m.worker_up.with_label_values(&[id]).set(i64::from(stats.is_some()));
    if let Some(s) = stats {
        let used = 1.0 - f64::from(s.free_kv_blocks) / f64::from(s.total_kv_blocks.max(1));
        m.worker_kv_used_ratio.with_label_values(&[id]).set(used);
        m.worker_tokens_per_s.with_label_values(&[id]).set(s.tokens_per_s);
        slot.free_kv_blocks = s.free_kv_blocks;
        if slot.model_id != s.model_id {
            slot.model_id.clone_from(&s.model_id);
        }
    }
    let back = stats.is_some() && !slot.healthy;
    if slot.healthy && stats.is_none() {
        tracing::warn!(worker = %id, "worker stats stream lost; no new work for it until it is back");
    }
    slot.healthy = stats.is_some();
    drop(core);
    if back {
        shared.wake.notify_one();
    }
}
