//! Measuring the pool: a short run of the engine on this machine tells what
//! one worker serves and what each kind of token costs, so what is sold
//! matches what the workers can serve.
//!
//! The unit of capacity is a generated token at the calibration batch:
//! capacity is aggregate greedy decode throughput with 32 sequences decoding
//! together, and a completion token is the unit. A prompt token weighs the
//! time the engine takes to prefill it over the time a generated token takes
//! at that batch (seconds per prefill token x decode tokens/s), so a
//! contract's rate buys the same compute whatever its prompts' lengths.
//! Prefills and decode steps are timed in turns, and the weight is the
//! median run's ratio, so a shared machine's changing speed moves both sides
//! of it alike.
//!
//! Attention makes a token cost more the more context it is computed from,
//! so where the engine is measured decides what is sold. It is measured
//! where chat traffic's work sits (`reservoir_workload::shape`, on
//! `TraceSpec::chat` counted with this model's tokenizer and chat template):
//! each decoding sequence holds the mean context a generated token is
//! computed from (its prompt plus what came before it), and the timed
//! prompt is as long as puts its tokens' mean position where the traffic's
//! prompt tokens sit (the long tail holds most of them). A round "typical
//! prompt" of 256 tokens decoded from 256 tokens of context timed both
//! kinds of token cheaper than they are in that traffic (its decodes hold
//! more context, its prompt tokens sit later), so it sold capacity a busy
//! worker does not have.
//!
//! The prefill rate a TTFT target allows for is measured on a long prompt
//! (1,024 tokens, or what the model's context holds): attention makes each
//! prompt token slower the later it comes, so the rate of a typical prompt
//! would promise long prompts a first token sooner than the engine can
//! compute it, and the rate of a long one covers every shorter prompt.

use std::sync::Arc;

use anyhow::Context;
use reservoir_domain::ModelId;
use reservoir_engine::Model;
use reservoir_engine::tokenizer::{ChatMessage, Tokenizer, chat_prompt};
use reservoir_workload::shape::{TrafficShape, shape};
use reservoir_workload::trace::TraceSpec;
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

/// Sequences decoded together while measuring.
pub const CALIBRATION_BATCH: usize = 32;
/// Turns per run: a prefill of the traffic's equivalent prompt, then
/// `CALIBRATION_STEPS_PER_TURN` decode steps (`reservoir_engine::bench::weigh`).
/// Enough turns that one slow step on a shared machine moves a figure little.
const CALIBRATION_TURNS: usize = 6;
const CALIBRATION_STEPS_PER_TURN: usize = 4;
/// Chat requests drawn to find where the traffic's work sits: enough that
/// the long tail (prompts near 1,000 tokens) is in the sample.
const SHAPE_SAMPLES: usize = 2_000;
/// The same requests every time: the same model gets the same shape.
const SHAPE_SEED: u64 = 0x5a11;
/// Prompt tokens of the timed long prefill (in steps of the worker's
/// budget), whose rate is the one TTFT targets allow for.
pub const ALLOWANCE_PROMPT_TOKENS: usize = 1024;
/// Runs measured; the median of each figure is kept, so one run disturbed
/// by another process on the machine neither inflates nor deflates what is
/// sold.
pub const CALIBRATION_RUNS: usize = 3;
/// Weights are kept in thousandths: the precision admission counts in
/// (`reservoir_sched::Weights`), so every reader sees the same number.
const WEIGHT_DECIMALS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Weighted tokens/s one worker sustains (generated tokens/s at the
    /// calibration batch), rounded down.
    pub tokens_per_s: u32,
    /// Prompt tokens/s of one long prompt's prefill, rounded down: the
    /// SLA's TTFT target of a request allows its prompt tokens / this rate.
    pub prefill_tokens_per_s: u32,
    /// What a prompt token costs in generated tokens at the calibration batch.
    pub prompt_weight: Decimal,
    /// What a generated token costs: 1, the unit of capacity.
    pub completion_weight: Decimal,
    /// Where it was measured (`from_rates` leaves both at 0).
    pub at: MeasuredAt,
}

/// Where the engine was measured, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeasuredAt {
    /// Context each sequence of the calibration batch decoded from, on
    /// average over the timed steps.
    pub decode_context: usize,
    /// Length of the prompt whose prefill set the prompt weight.
    pub prompt_tokens: usize,
}

/// Where chat traffic's work sits for this model: prompts counted with its
/// tokenizer and chat template, as the gateway counts them.
fn chat_traffic_shape(tokenizer: &Tokenizer) -> anyhow::Result<TrafficShape> {
    let chat = TraceSpec::chat(SHAPE_SEED, "calibration", 1_000_000, 1.0);
    // With the short system message most clients send.
    let system = ChatMessage::new("system", "You are a helpful assistant.");
    let counted = |r: &reservoir_workload::trace::TraceRequest| {
        chat_prompt(tokenizer, &[system.clone(), ChatMessage::new("user", &r.prompt)]).len()
    };
    Ok(shape(&chat, SHAPE_SAMPLES, counted)?)
}

impl Calibration {
    /// The figures as the contracts service records them with the model.
    pub fn measured(&self) -> reservoir_contracts::Measured {
        reservoir_contracts::Measured {
            capacity_tokens_per_s: self.tokens_per_s,
            prefill_tokens_per_s: self.prefill_tokens_per_s,
            prompt_weight: self.prompt_weight,
            completion_weight: self.completion_weight,
        }
    }
}

/// Runs the engine briefly on `model`, prefilling in steps of at most
/// `step_token_budget` tokens as a worker does, where chat traffic's work
/// sits (`chat_traffic_shape`), `runs` times (at least once; the median of
/// each figure is kept: `CALIBRATION_RUNS` for what is sold). Blocking:
/// call it from a blocking thread. A run takes 5 to 13 s on SmolLM2-135M
/// on the 2-core machines here.
pub fn measure_model(
    model: &Arc<Model>,
    tokenizer: &Tokenizer,
    step_token_budget: usize,
    runs: usize,
) -> anyhow::Result<Calibration> {
    let traffic = chat_traffic_shape(tokenizer)?;
    let runs = runs.max(1);
    let mut weighings = Vec::with_capacity(runs);
    let mut allowance_prefill = Vec::with_capacity(runs);
    // Room for the decode steps' tokens beyond the context.
    let context_room = model.config.ctx_len.saturating_sub(CALIBRATION_TURNS * CALIBRATION_STEPS_PER_TURN + 16);
    let long = reservoir_engine::bench::Spec {
        prefill_tokens: ALLOWANCE_PROMPT_TOKENS.min(context_room),
        prefill_chunk: step_token_budget,
        batches: &[],
        decode_steps: 0,
        decode_context: 0,
    };
    let at = MeasuredAt {
        decode_context: traffic.decode_context_tokens().min(context_room),
        prompt_tokens: traffic.equivalent_prompt_tokens().min(context_room),
    };
    let weigh = weigh_spec(at, step_token_budget, CALIBRATION_TURNS);
    for _ in 0..runs {
        let report = reservoir_engine::bench::run(model, &long).context("calibration run")?;
        allowance_prefill.push(report.prefill_tok_per_s);
        let w = reservoir_engine::bench::weigh(model, &weigh).context("calibration run")?;
        weighings.push((w.prefill_tokens_per_s(), w.decode_tokens_per_s()));
    }
    let (weight_prefill, decode) = typical_run(&weighings).context("calibration produced no figures")?;
    let allowance_prefill = median(allowance_prefill).context("calibration produced no prefill figure")?;
    let mut calibration = from_rates(weight_prefill, decode)?;
    calibration.prefill_tokens_per_s = whole_rate(allowance_prefill, "long prefill")?;
    calibration.at = at;
    Ok(calibration)
}

/// What one calibration run times where the traffic's work sits (`at`):
/// `turns` turns of a prefill of the equivalent prompt, in steps of the
/// worker's budget, then decode steps of the calibration batch.
pub fn weigh_spec(at: MeasuredAt, step_token_budget: usize, turns: usize) -> reservoir_engine::bench::WeighSpec {
    reservoir_engine::bench::WeighSpec {
        prompt_tokens: at.prompt_tokens,
        prefill_chunk: step_token_budget,
        batch: CALIBRATION_BATCH,
        // Starting below the mean by half of what the timed steps add.
        context: at.decode_context.saturating_sub(turns * CALIBRATION_STEPS_PER_TURN / 2).max(1),
        turns,
        decode_steps_per_turn: CALIBRATION_STEPS_PER_TURN,
    }
}

/// Of runs' (prefill, decode) rates, the median decode rate, and a prefill
/// rate that keeps the median run's ratio of the two: the weight is a
/// ratio measured within one run, where both rates saw the same machine.
fn typical_run(runs: &[(f64, f64)]) -> Option<(f64, f64)> {
    let decode = median(runs.iter().map(|r| r.1).collect())?;
    let ratio = median(runs.iter().map(|r| r.1 / r.0).collect())?;
    Some((decode / ratio, decode))
}

/// A measured rate as the whole tokens/s recorded, rounded down (never sell
/// or promise more than was measured).
fn whole_rate(rate: f64, name: &str) -> anyhow::Result<u32> {
    anyhow::ensure!(rate.is_finite() && rate >= 1.0, "calibration measured a {name} rate of {rate} tokens/s");
    Ok(rate.min(f64::from(u32::MAX)) as u32)
}

/// The calibration of a pool that prefills `prefill_tokens_per_s` and
/// decodes `decode_tokens_per_s` at the calibration batch (the TTFT
/// allowance's rate is then the same prefill rate; `measure_model` sets the
/// long prompt's).
pub fn from_rates(prefill_tokens_per_s: f64, decode_tokens_per_s: f64) -> anyhow::Result<Calibration> {
    let (tokens_per_s, whole_prefill) =
        (whole_rate(decode_tokens_per_s, "decode")?, whole_rate(prefill_tokens_per_s, "prefill")?);
    // Seconds per prompt token over seconds per generated token.
    let ratio = decode_tokens_per_s / prefill_tokens_per_s;
    let prompt_weight = Decimal::from_f64(ratio)
        .with_context(|| format!("a prompt weight of {ratio}"))?
        .round_dp_with_strategy(WEIGHT_DECIMALS, rust_decimal::RoundingStrategy::MidpointNearestEven)
        // A prompt token is never free, however fast prefill is.
        .max(Decimal::new(1, WEIGHT_DECIMALS));
    anyhow::ensure!(
        prompt_weight < Decimal::from(1000),
        "calibration measured a prompt token at {prompt_weight} generated tokens"
    );
    Ok(Calibration {
        tokens_per_s,
        prefill_tokens_per_s: whole_prefill,
        prompt_weight,
        completion_weight: Decimal::ONE,
        at: MeasuredAt::default(),
    })
}

fn median(mut runs: Vec<f64>) -> Option<f64> {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied()
}

/// Measures `model` (prefilling in steps of `step_token_budget` tokens, the
/// workers' `worker.step_token_budget`; `runs` runs, `measure_model`) and
/// records the figures as `id`'s capacity, prefill rate and weights.
/// Nothing is recorded when the measurement fails.
pub async fn calibrate(
    pool: &sqlx::PgPool,
    id: &ModelId,
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    step_token_budget: usize,
    runs: usize,
) -> anyhow::Result<Calibration> {
    let calibration = tokio::task::spawn_blocking(move || measure_model(&model, &tokenizer, step_token_budget, runs))
        .await
        .context("calibration stopped")??;
    reservoir_contracts::record_calibration(pool, id, &calibration.measured()).await?;
    Ok(calibration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_token_weighs_its_prefill_time_in_generated_tokens() {
        // Prefill at 900 tokens/s, decode at 720: a prompt token takes 0.8
        // of a generated token's time.
        let c = from_rates(900.0, 720.0).expect("calibration");
        assert_eq!((c.tokens_per_s, c.prefill_tokens_per_s), (720, 900));
        assert_eq!((c.prompt_weight, c.completion_weight), (Decimal::new(8, 1), Decimal::ONE));
        // Thousandths, half to even; never zero.
        assert_eq!(from_rates(3000.0, 1000.0).expect("calibration").prompt_weight, Decimal::new(333, 3));
        assert_eq!(from_rates(1e7, 10.0).expect("calibration").prompt_weight, Decimal::new(1, 3));
        // Fractions of a token/s are never sold.
        assert_eq!(from_rates(900.9, 720.9).expect("calibration").tokens_per_s, 720);
    }

    #[test]
    fn the_weight_is_the_median_runs_ratio_not_a_ratio_of_medians() {
        // (prefill, decode): the machine ran slow in the second run, fast in
        // the third; within each run the ratio is what it is.
        let runs = [(1000.0, 500.0), (600.0, 330.0), (1400.0, 680.0)];
        let (prefill, decode) = typical_run(&runs).expect("figures");
        assert_eq!(decode, 500.0);
        // Ratios 0.5, 0.55, 0.486: the median is 0.5.
        assert_eq!(decode / prefill, 0.5);
        assert_eq!(typical_run(&[]), None);
    }

    #[test]
    fn impossible_rates_are_refused() {
        for (prefill, decode) in [(0.0, 700.0), (900.0, f64::NAN), (f64::INFINITY, 700.0), (1.0, 5000.0)] {
            assert!(from_rates(prefill, decode).is_err(), "{prefill} / {decode}");
        }
    }
}
