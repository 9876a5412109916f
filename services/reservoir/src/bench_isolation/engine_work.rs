//! What the engine computed during a phase's measured window, from the
//! worker's own counters (`WorkerStats`): every token it prefilled or
//! decoded, at the calibrated weights, whether or not its result reached a
//! client within the window (work past its edges and recomputation after
//! preemption count; prefix-cache hits are not computed). Over capacity,
//! it says how much of the calibrated capacity a busy engine computes on
//! this traffic; `util` says how much of the capacity went to useful work
//! within the window.
//! The time the engine spent in steps over the window says how busy it was:
//! an engine that computes less than the capacity while busy throughout
//! ran slower than calibrated; one that idled was not given the work.

use std::time::Instant;

use reservoir_proto::v1 as pb;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_workload::report::Weights;

/// A reading of the worker's counters.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    prefilled: u64,
    decoded: u64,
    step_seconds: f64,
}

/// What the engine did in a phase's window.
#[derive(Debug, Clone, Copy)]
pub struct EngineWork {
    /// Weighted tokens computed per second over the capacity.
    pub share_of_capacity: f64,
    /// Share of the window spent in engine steps.
    pub busy: f64,
}

pub async fn read(worker_url: &str) -> anyhow::Result<Totals> {
    let mut client = WorkerServiceClient::connect(worker_url.to_owned()).await?;
    let s = client.stats(pb::WorkerStatsRequest {}).await?.into_inner();
    Ok(Totals { prefilled: s.prefilled_tokens, decoded: s.decoded_tokens, step_seconds: s.step_seconds })
}

/// `read` at `at` (the start or end of a window).
pub async fn read_at(worker_url: String, at: Instant) -> anyhow::Result<Totals> {
    tokio::time::sleep_until(at.into()).await;
    read(&worker_url).await
}

/// What the engine did between two readings `secs` apart: weighted
/// tokens/s over `capacity`, and the share of the time it spent in steps.
pub fn between(before: Totals, after: Totals, w: Weights, capacity: f64, secs: f64) -> EngineWork {
    if capacity <= 0.0 || secs <= 0.0 {
        return EngineWork { share_of_capacity: f64::NAN, busy: f64::NAN };
    }
    let prefilled = after.prefilled.saturating_sub(before.prefilled) as f64;
    let decoded = after.decoded.saturating_sub(before.decoded) as f64;
    let per_s = (prefilled * w.prompt + decoded * w.completion) / secs;
    // A step is counted when it ends: one running at either reading moves
    // up to a step's time across the edge.
    let busy = (after.step_seconds - before.step_seconds).max(0.0) / secs;
    EngineWork { share_of_capacity: per_s / capacity, busy }
}
