//! Measuring the pool: a short run of the engine on this machine tells how
//! many weighted tokens/s one worker serves, so what is sold matches what
//! the workers can serve.
//!
//! The figure is aggregate greedy decode throughput at a batch of 32
//! sequences: completion tokens carry weight 1, and decode dominates the cost
//! of serving (prompt tokens are prefilled several times faster, hence their
//! lower default weight).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

/// Sequences decoded together while measuring.
const CALIBRATION_BATCH: usize = 32;
/// Decode steps timed per run (after one warm-up prefill).
const CALIBRATION_STEPS: usize = 8;
/// Prompt tokens of the timed prefill: a typical chat prompt's length.
const CALIBRATION_PROMPT_TOKENS: usize = 256;
/// Runs measured; the median is kept, so one run disturbed by another
/// process on the machine neither inflates nor deflates what is sold.
const CALIBRATION_RUNS: usize = 3;

#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    /// Weighted tokens/s one worker sustains, rounded down.
    pub tokens_per_s: u32,
    /// Prompt tokens/s of one request's prefill (the first, cold step of the
    /// run, so on the slow side), rounded down: the SLA's TTFT target of a
    /// request allows its prompt tokens / this rate.
    pub prefill_tokens_per_s: u32,
}

/// Runs the engine briefly on the model at `path`. Blocking: call it from a
/// blocking thread. Takes a few seconds.
pub fn measure(path: &Path) -> anyhow::Result<Calibration> {
    let loaded = reservoir_engine::load(path).with_context(|| format!("loading {}", path.display()))?;
    let model: Arc<_> = loaded.model;
    let report = reservoir_engine::bench::run(
        &model,
        CALIBRATION_PROMPT_TOKENS,
        &[CALIBRATION_BATCH; CALIBRATION_RUNS],
        CALIBRATION_STEPS,
    )
    .context("calibration run")?;
    let mut runs: Vec<f64> = report.decode_tok_per_s.iter().map(|(_, tps)| *tps).collect();
    runs.sort_by(f64::total_cmp);
    let decode = runs.get(runs.len() / 2).copied().ok_or_else(|| anyhow::anyhow!("calibration produced no figure"))?;
    anyhow::ensure!(decode.is_finite() && decode >= 1.0, "calibration measured {decode} tokens/s");
    let prefill = report.prefill_tok_per_s;
    anyhow::ensure!(prefill.is_finite() && prefill >= 1.0, "calibration measured a prefill of {prefill} tokens/s");
    // Truncation is the rounding wanted: never sell more than was measured.
    Ok(Calibration {
        tokens_per_s: decode.min(f64::from(u32::MAX)) as u32,
        prefill_tokens_per_s: prefill.min(f64::from(u32::MAX)) as u32,
    })
}
