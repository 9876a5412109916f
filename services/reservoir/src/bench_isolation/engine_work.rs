//! What the engine computed during a phase, from the worker's own counters
//! (`WorkerStats`): every token it prefilled or decoded, at the calibrated
//! weights, whether or not its result reached a client within the phase
//! (work past the phase's edges and recomputation after preemption count;
//! prefix-cache hits are not computed). Over capacity, it says how much of
//! the calibrated capacity a busy engine computes on this traffic; `util`
//! says how much of the capacity went to useful work within the phase.

use std::time::Instant;

use reservoir_proto::v1 as pb;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_workload::report::Weights;

/// A reading of the worker's counters.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    prefilled: u64,
    decoded: u64,
}

pub async fn read(worker_url: &str) -> anyhow::Result<Totals> {
    let mut client = WorkerServiceClient::connect(worker_url.to_owned()).await?;
    let s = client.stats(pb::WorkerStatsRequest {}).await?.into_inner();
    Ok(Totals { prefilled: s.prefilled_tokens, decoded: s.decoded_tokens })
}

/// `read` at `at` (the end of a phase).
pub async fn read_at(worker_url: String, at: Instant) -> anyhow::Result<Totals> {
    tokio::time::sleep_until(at.into()).await;
    read(&worker_url).await
}

/// Weighted tokens/s computed between two readings `secs` apart, over `capacity`.
pub fn share_of_capacity(before: Totals, after: Totals, w: Weights, capacity: f64, secs: f64) -> f64 {
    let prefilled = after.prefilled.saturating_sub(before.prefilled) as f64;
    let decoded = after.decoded.saturating_sub(before.decoded) as f64;
    let per_s = (prefilled * w.prompt + decoded * w.completion) / secs;
    if capacity > 0.0 && secs > 0.0 { per_s / capacity } else { f64::NAN }
}
