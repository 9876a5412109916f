//! A worker started with `worker.scheduler_url` announces itself to the
//! scheduler, then again every few seconds: a scheduler that restarted (and
//! forgot its workers) learns them back without anyone restarting them.

use std::time::Duration;

use reservoir_proto::v1 as pb;
use reservoir_proto::v1::scheduler_service_client::SchedulerServiceClient;
use reservoir_runtime::{InternalToken, Shutdown};

const REGISTER_EVERY: Duration = Duration::from_secs(5);
/// First retry after a failed registration (the scheduler may still be starting).
const RETRY_FIRST: Duration = Duration::from_millis(200);

/// Registers `worker_id` at `url` with the scheduler until shutdown.
pub async fn register_with_scheduler(
    scheduler_url: String,
    worker_id: String,
    url: String,
    token: InternalToken,
    shutdown: Shutdown,
) {
    let mut pause = RETRY_FIRST;
    let mut registered = false;
    loop {
        let request = pb::RegisterWorkerRequest { worker_id: worker_id.clone(), url: url.clone() };
        let answer = async {
            let channel = tonic::transport::Endpoint::from_shared(scheduler_url.clone())?.connect().await?;
            let mut client = SchedulerServiceClient::new(token.attach(channel));
            client.register_worker(request).await.map_err(anyhow::Error::from)
        };
        match tokio::time::timeout(Duration::from_secs(2), answer).await {
            Ok(Ok(_)) => {
                if !registered {
                    tracing::info!(scheduler = %scheduler_url, worker = %worker_id, %url, "registered with the scheduler");
                }
                registered = true;
                pause = REGISTER_EVERY;
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                tracing::warn!(scheduler = %scheduler_url, %error, "cannot register with the scheduler; retrying");
                registered = false;
                pause = (pause * 2).min(REGISTER_EVERY);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => return,
        }
    }
}
