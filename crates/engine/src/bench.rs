//! Throughput measurement on a loaded model (the CLI prints the report).
//!
//! Prefill: one sequence, `prefill_tokens` prompt tokens in steps of at most
//! `prefill_chunk` (a worker's step budget spreads a long prompt so), each
//! step timed.
//! Decode: `batch` sequences each holding `decode_context` tokens of context
//! (one prompt prefilled once, its K/V copied into blocks of each sequence's
//! own, so attention reads as much memory as distinct prompts would), then
//! `decode_steps` steps of one greedy token per sequence; aggregate tok/s =
//! batch * decode_steps / decode time. Attention's cost grows with the
//! context, so the context is part of what a figure means. Each decode point
//! also records per-step times and the KV waste (allocated but unfilled
//! slots) at the end of its run, so the CLI can report them.
//!
//! `weigh`: prefills and decode steps timed in turns, for the pool's
//! calibration (what a prompt token weighs against a generated one).

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
    /// Wall time of the whole prefill.
    pub prefill_ms: f64,
    /// Wall time of each prefill step, with the prompt tokens it carried:
    /// a long prompt's later steps attend over more positions, so its
    /// first steps alone give the rate of a shorter prompt.
    pub prefill_steps: Vec<(usize, f64)>,
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

/// What `run` measures.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    pub prefill_tokens: usize,
    /// Prompt tokens per prefill step at most.
    pub prefill_chunk: usize,
    pub batches: &'a [usize],
    pub decode_steps: usize,
    /// Tokens of context each decoding sequence holds before the timed steps.
    pub decode_context: usize,
}

pub fn run(model: &Arc<Model>, spec: &Spec) -> Result<BenchReport, EngineError> {
    let Spec { prefill_tokens, prefill_chunk, batches, decode_steps, decode_context } = *spec;
    let context = decode_context.max(1);
    let max_batch = batches.iter().copied().max().unwrap_or(1);
    let mut eng = bench_engine(model, (prefill_tokens + 16).max(max_batch * (context + decode_steps + 16)))?;

    let prompt = bench_prompt(model, prefill_tokens, 0);
    let prefill_steps = prefill_in_steps(&mut eng, &prompt, prefill_chunk)?;
    let prefill_s = prefill_seconds(&prefill_steps);
    let prefill_tok_per_s = prefill_tokens as f64 / prefill_s;

    let mut decode = Vec::new();
    let mut points = Vec::new();
    for &b in batches {
        let ids: Vec<u64> = (1..=b as u64).collect();
        let mut next = decoding_batch(&mut eng, &ids, context)?;
        let t0 = Instant::now();
        let mut step_ms_max = 0f64;
        for _ in 0..decode_steps {
            let t_step = Instant::now();
            decode_step(&mut eng, &mut next)?;
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
        prefill_steps,
        decode: points,
    })
}

/// An engine with room for `tokens` tokens of K/V (and some to spare), no
/// prefix cache: every prompt is computed.
fn bench_engine(model: &Arc<Model>, tokens: usize) -> Result<Engine, EngineError> {
    let c = &model.config;
    let per_token = KvStore::bytes_per_block(c.n_layers, 1, c.kv_dim());
    let cfg = EngineConfig {
        block_size: 16,
        kv_budget_bytes: tokens * per_token + (64 << 20),
        prefix_caching: false,
        ..EngineConfig::default()
    };
    Engine::new(model.clone(), cfg)
}

/// A prompt of `tokens` tokens; another `variant` gives another prompt.
fn bench_prompt(model: &Model, tokens: usize, variant: u32) -> Vec<u32> {
    let vocab = model.config.vocab_size as u32;
    (0..tokens as u32).map(|i| (i * 7919 + 13 + variant * 1009) % vocab).collect()
}

/// Prefills `prompt` as sequence 0 in steps of at most `chunk` tokens, then
/// removes it; answers each step's (tokens, ms).
fn prefill_in_steps(eng: &mut Engine, prompt: &[u32], chunk: usize) -> Result<Vec<(usize, f64)>, EngineError> {
    eng.add_sequence(0, prompt)?;
    let chunks: Vec<&[u32]> = prompt.chunks(chunk.max(1)).collect();
    let mut steps = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let logits = if i + 1 == chunks.len() { Logits::Last } else { Logits::None };
        let t_step = Instant::now();
        eng.step(&StepBatch { entries: vec![StepEntry { seq: 0, tokens: chunk.to_vec(), logits }] })?;
        steps.push((chunk.len(), t_step.elapsed().as_secs_f64() * 1e3));
    }
    eng.remove_sequence(0)?;
    Ok(steps)
}

fn prefill_seconds(steps: &[(usize, f64)]) -> f64 {
    steps.iter().map(|(_, ms)| ms).sum::<f64>() / 1e3
}

/// Sequences `ids`, each holding `context` tokens of context (one prompt
/// prefilled, its K/V copied into each), ready to decode: each with the
/// token it feeds next.
pub(crate) fn decoding_batch(eng: &mut Engine, ids: &[u64], context: usize) -> Result<Vec<(u64, u32)>, EngineError> {
    let Some(&first_id) = ids.first() else { return Ok(Vec::new()) };
    let vocab = eng.model().config.vocab_size as u32;
    let p: Vec<u32> = (0..context.max(1) as u32).map(|i| (i * 31 + ids.len() as u32 * 101) % vocab).collect();
    eng.add_sequence(first_id, &p)?;
    let first = eng.step(&StepBatch { entries: vec![StepEntry { seq: first_id, tokens: p, logits: Logits::Last }] })?;
    let token = first.outputs.first().map(|o| argmax(&o.logits)).unwrap_or(0);
    for &id in &ids[1..] {
        eng.copy_sequence(first_id, id)?;
    }
    // Every sequence decodes the prompt's next token first.
    Ok(ids.iter().map(|&seq| (seq, token)).collect())
}

/// One greedy decode step of every sequence in `next`, which then holds
/// their following tokens.
pub(crate) fn decode_step(eng: &mut Engine, next: &mut Vec<(u64, u32)>) -> Result<(), EngineError> {
    let entries = next.iter().map(|&(seq, t)| StepEntry { seq, tokens: vec![t], logits: Logits::Last }).collect();
    let out = eng.step(&StepBatch { entries })?;
    *next = out.outputs.iter().map(|o| (o.seq, argmax(&o.logits))).collect();
    Ok(())
}

/// What `weigh` times.
#[derive(Debug, Clone, Copy)]
pub struct WeighSpec {
    /// Prompt tokens of each timed prefill (a prompt of its own each turn).
    pub prompt_tokens: usize,
    /// Prompt tokens per prefill step at most.
    pub prefill_chunk: usize,
    /// Sequences decoding together.
    pub batch: usize,
    /// Tokens of context each decoding sequence holds before the first turn.
    pub context: usize,
    pub turns: usize,
    pub decode_steps_per_turn: usize,
}

/// What a `weigh` run timed, in total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weighing {
    pub prefill_tokens: usize,
    pub prefill_s: f64,
    pub decode_tokens: usize,
    pub decode_s: f64,
}

impl Weighing {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prefill_tokens as f64 / self.prefill_s
    }

    pub fn decode_tokens_per_s(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_s
    }
}

/// Times prompt tokens against generated ones in turns: each turn prefills
/// a prompt of its own (in steps of `prefill_chunk`), then runs
/// `decode_steps_per_turn` decode steps of `batch` sequences. A shared
/// machine that speeds up or slows down during the run moves both figures
/// alike, so their ratio (what a prompt token weighs) holds still where
/// one prefill timed before all the decode steps would not.
pub fn weigh(model: &Arc<Model>, spec: &WeighSpec) -> Result<Weighing, EngineError> {
    let decoded = spec.turns * spec.decode_steps_per_turn;
    let mut eng = bench_engine(model, spec.prompt_tokens + 16 + spec.batch * (spec.context + decoded + 16))?;
    let ids: Vec<u64> = (1..=spec.batch.max(1) as u64).collect();
    let mut next = decoding_batch(&mut eng, &ids, spec.context)?;
    let mut w = Weighing { prefill_tokens: 0, prefill_s: 0.0, decode_tokens: 0, decode_s: 0.0 };
    for turn in 0..spec.turns {
        let prompt = bench_prompt(model, spec.prompt_tokens, turn as u32);
        let steps = prefill_in_steps(&mut eng, &prompt, spec.prefill_chunk)?;
        w.prefill_s += prefill_seconds(&steps);
        w.prefill_tokens += prompt.len();
        let t0 = Instant::now();
        for _ in 0..spec.decode_steps_per_turn {
            decode_step(&mut eng, &mut next)?;
        }
        w.decode_s += t0.elapsed().as_secs_f64();
        w.decode_tokens += next.len() * spec.decode_steps_per_turn;
    }
    Ok(w)
}
