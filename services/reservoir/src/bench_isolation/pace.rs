//! How fast the machine runs around each phase, against right after
//! calibration. Capacity is measured once, before the first phase; a shared
//! machine's speed drifts over minutes, and a phase run while it is slower
//! has less capacity than was measured (every figure over capacity falls
//! with it, whatever the scheduler does). So between phases, with nothing
//! else running, the bench times a short run of calibration's own work (a
//! few turns of a prefill and decode steps where chat traffic's work sits,
//! `calibrate::weigh_spec`) and prints its rate against the same run's rate
//! right after calibration. It says which machine a run's figures were
//! measured on; it corrects nothing.

use std::sync::Arc;

use reservoir_engine::Model;
use reservoir_platform::calibrate::{self, MeasuredAt};
use reservoir_workload::report::Weights;

/// Turns of the short run: about 2 s on SmolLM2-135M here.
const PACE_TURNS: usize = 3;

/// Weighted tokens/s of the short run (prompt tokens at their weight).
pub async fn measure(model: Arc<Model>, at: MeasuredAt, step_token_budget: usize, w: Weights) -> anyhow::Result<f64> {
    tokio::task::spawn_blocking(move || {
        let spec = calibrate::weigh_spec(at, step_token_budget, PACE_TURNS);
        let run = reservoir_engine::bench::weigh(&model, &spec)?;
        let work = run.decode_tokens as f64 * w.completion + run.prefill_tokens as f64 * w.prompt;
        Ok(work / (run.decode_s + run.prefill_s))
    })
    .await?
}
