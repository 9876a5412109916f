//! Throughput measurement on a loaded model (the CLI prints the report).
//!
//! Prefill: one sequence, `prefill_tokens` prompt tokens in one step.
//! Decode: `batch` sequences with a short distinct prompt each, prefilled
//! together, then `decode_steps` steps of one greedy token per sequence;
//! aggregate tok/s = batch * decode_steps / decode time. Each decode point
//! also records per-step times and the KV waste (allocated but unfilled
//! slots) at the end of its run, so the CLI can report them.

use std::sync::Arc;
use std::time::Instant;

use crate::attention::KvStore;
use crate::engine::{Engine, EngineConfig, Logits, StepBatch, StepEntry};
use crate::error::EngineError;
use crate::model::Model;
use crate::sampler::argmax;

#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub prefill_tokens: usize,
    pub prefill_tok_per_s: f64,
    /// (batch size, aggregate decode tok/s)
    pub decode_tok_per_s: Vec<(usize, f64)>,
    /// Wall time of the single prefill step.
    pub prefill_ms: f64,
    /// One entry per batch size, same order as `decode_tok_per_s`.
    pub decode: Vec<DecodePoint>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecodePoint {
    pub batch: usize,
    pub tok_per_s: f64,
    pub step_ms_mean: f64,
    pub step_ms_max: f64,
    /// `EngineStats::kv_waste` with all `batch` sequences live after the last step.
    pub kv_waste: f64,
}

pub fn run(
    model: &Arc<Model>,
    prefill_tokens: usize,
    batches: &[usize],
    decode_steps: usize,
) -> Result<BenchReport, EngineError> {
    let vocab = model.config.vocab_size as u32;
    let prompt_len = 16usize;
    let max_batch = batches.iter().copied().max().unwrap_or(1);
    let c = &model.config;
    let per_token = KvStore::bytes_per_block(c.n_layers, 1, c.kv_dim());
    let need_tokens = (prefill_tokens + 16).max(max_batch * (prompt_len + decode_steps + 16));
    let cfg = EngineConfig {
        block_size: 16,
        kv_budget_bytes: need_tokens * per_token + (64 << 20),
        prefix_caching: false,
        ..EngineConfig::default()
    };
    let mut eng = Engine::new(model.clone(), cfg)?;

    let prompt: Vec<u32> = (0..prefill_tokens as u32).map(|i| (i * 7919 + 13) % vocab).collect();
    eng.add_sequence(0, &prompt)?;
    let t0 = Instant::now();
    eng.step(&StepBatch { entries: vec![StepEntry { seq: 0, tokens: prompt, logits: Logits::Last }] })?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let prefill_tok_per_s = prefill_tokens as f64 / prefill_s;
    eng.remove_sequence(0)?;

    let mut decode = Vec::new();
    let mut points = Vec::new();
    for &b in batches {
        let ids: Vec<u64> = (1..=b as u64).collect();
        let mut entries = Vec::new();
        for &id in &ids {
            let p: Vec<u32> = (0..prompt_len as u32).map(|i| (i * 31 + id as u32 * 101) % vocab).collect();
            eng.add_sequence(id, &p)?;
            entries.push(StepEntry { seq: id, tokens: p, logits: Logits::Last });
        }
        let mut out = eng.step(&StepBatch { entries })?;
        let t0 = Instant::now();
        let mut step_ms_max = 0f64;
        for _ in 0..decode_steps {
            let t_step = Instant::now();
            let entries = out
                .outputs
                .iter()
                .map(|o| StepEntry { seq: o.seq, tokens: vec![argmax(&o.logits)], logits: Logits::Last })
                .collect();
            out = eng.step(&StepBatch { entries })?;
            step_ms_max = step_ms_max.max(t_step.elapsed().as_secs_f64() * 1e3);
        }
        let decode_s = t0.elapsed().as_secs_f64();
        let tok_per_s = (b * decode_steps) as f64 / decode_s;
        decode.push((b, tok_per_s));
        points.push(DecodePoint {
            batch: b,
            tok_per_s,
            step_ms_mean: decode_s * 1e3 / decode_steps.max(1) as f64,
            step_ms_max,
            kv_waste: eng.stats().kv_waste,
        });
        for id in ids {
            eng.remove_sequence(id)?;
        }
    }
    Ok(BenchReport {
        prefill_tokens,
        prefill_tok_per_s,
        decode_tok_per_s: decode,
        prefill_ms: prefill_s * 1e3,
        decode: points,
    })
}
