//! Library helpers the CLI calls: loading, a single-prompt generation
//! iterator on top of the step API, and llama.cpp-compatible perplexity.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::attention::KvStore;
use crate::engine::{Engine, Logits, SeqId, StepBatch, StepEntry};
use crate::error::EngineError;
use crate::gguf::GgufFile;
use crate::model::Model;
use crate::sampler::{Sampler, SamplingParams, log_softmax_at};
use crate::text::TextStream;
use crate::tokenizer::Tokenizer;

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `<root>/.reservoir/models/SmolLM2-135M-Instruct.Q4_1.gguf`, where
/// `scripts/fetch-model` puts it.
pub fn default_model_path(workspace_root: &Path) -> PathBuf {
    workspace_root.join(".reservoir").join("models").join(DEFAULT_MODEL_FILE)
}

/// A model and its tokenizer, both immutable and shareable.
#[derive(Clone)]
pub struct LoadedModel {
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
}

pub fn load(path: &Path) -> Result<LoadedModel, EngineError> {
    let f = GgufFile::open(path)?;
    let model = Arc::new(Model::load(&f)?);
    let tokenizer = Arc::new(crate::tokenizer::from_gguf(&f)?);
    Ok(LoadedModel { model, tokenizer })
}

/// Starts generating for one prompt on `engine` (see `Generation`).
pub fn generate<'a>(
    engine: &'a mut Engine,
    tokenizer: &'a Tokenizer,
    seq: SeqId,
    prompt: &[u32],
    params: SamplingParams,
) -> Result<Generation<'a>, EngineError> {
    Generation::new(engine, tokenizer, seq, prompt, params)
}

/// Prompt tokens fed per step while prefilling in `Generation`.
const PREFILL_CHUNK: usize = 512;

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedToken {
    pub id: u32,
    pub logprob: f32,
    /// Text that became final with this token (held back while it could
    /// still be the start of a stop string or of a multi-byte char).
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token (EOS or `stop_token_ids`) or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
}

/// Greedy/sampled generation for one prompt. Iterates generated tokens; the
/// sequence's blocks are freed when the iterator is dropped.
pub struct Generation<'a> {
    engine: &'a mut Engine,
    tokenizer: &'a Tokenizer,
    seq: SeqId,
    sampler: Sampler,
    /// The prompt, then the generated tokens.
    history: Vec<u32>,
    prompt_len: usize,
    pending: Vec<u32>,
    n_generated: usize,
    stream: TextStream,
    pub finish: Option<FinishReason>,
}

impl<'a> Generation<'a> {
    pub fn new(
        engine: &'a mut Engine,
        tokenizer: &'a Tokenizer,
        seq: SeqId,
        prompt: &[u32],
        params: SamplingParams,
    ) -> Result<Self, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidArgument("empty prompt".into()));
        }
        let params_stops = params.stop_strings.clone();
        let sampler = Sampler::new(params)?;
        let cached = engine.add_sequence(seq, prompt)?;
        Ok(Generation {
            engine,
            tokenizer,
            seq,
            sampler,
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            pending: prompt[cached..].to_vec(),
            n_generated: 0,
            stream: TextStream::new(params_stops),
            finish: None,
        })
    }

    /// All text generated so far (final or not).
    pub fn text(&self) -> &str {
        self.stream.text()
    }

    fn run(&mut self) -> Result<Option<GeneratedToken>, EngineError> {
        let p = self.sampler.params().clone();
        if self.n_generated >= p.max_tokens
            || self.engine.sequence_len(self.seq)? + self.pending.len() > self.engine.model().config.ctx_len
        {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        let mut logits = Vec::new();
        while !self.pending.is_empty() {
            let n = self.pending.len().min(PREFILL_CHUNK);
            let chunk: Vec<u32> = self.pending.drain(..n).collect();
            let last = self.pending.is_empty();
            let entry =
                StepEntry { seq: self.seq, tokens: chunk, logits: if last { Logits::Last } else { Logits::None } };
            let out = self.engine.step(&StepBatch { entries: vec![entry] })?;
            if last {
                logits = out.outputs.into_iter().next().map(|o| o.logits).unwrap_or_default();
            }
        }
        let s = self.sampler.sample(&logits, &self.history, self.prompt_len)?;
        let is_stop = self.tokenizer.eos_id == Some(s.token) || p.stop_token_ids.contains(&s.token);
        if is_stop {
            self.finish = Some(FinishReason::Stop);
            return Ok(None);
        }
        self.n_generated += 1;
        self.history.push(s.token);
        self.pending.push(s.token);
        // At max_tokens nothing follows, so nothing is held back for a stop string.
        let last = self.n_generated >= p.max_tokens;
        let piece = self.stream.push(&self.tokenizer.token_bytes(s.token), last);
        if piece.stopped {
            self.finish = Some(FinishReason::Stop);
        } else if last {
            self.finish = Some(FinishReason::Length);
        }
        let text = piece.text;
        Ok(Some(GeneratedToken { id: s.token, logprob: s.logprob, text }))
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<GeneratedToken, EngineError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.finish.is_some() {
            return None;
        }
        match self.run() {
            Ok(t) => t.map(Ok),
            Err(e) => {
                self.finish = Some(FinishReason::Stop);
                Some(Err(e))
            }
        }
    }
}

impl Drop for Generation<'_> {
    fn drop(&mut self) {
        // The sequence was added in `new`, so removal cannot fail.
        let _ = self.engine.remove_sequence(self.seq);
    }
}

/// Perplexity as llama.cpp's `perplexity` tool computes it: the text is
/// tokenized once and cut into `len / ctx` non-overlapping windows of `ctx`
/// tokens (a shorter tail is dropped). When `bos` is given (tokenizers that
/// add BOS) each window's first token is replaced by it. Each window is
/// evaluated from scratch and only its second half is scored: logits at
/// positions `first = ctx/2 ..= ctx-2` predict tokens `first+1 ..= ctx-1`,
/// so every scored token sees at least `ctx/2` tokens of context.
/// Returns exp(mean negative log-likelihood).
pub fn perplexity(model: &Model, tokens: &[u32], ctx: usize, bos: Option<u32>) -> Result<f64, EngineError> {
    if ctx < 4 || ctx > model.config.ctx_len {
        return Err(EngineError::InvalidArgument(format!("ctx must be in 4..={}", model.config.ctx_len)));
    }
    let n_chunks = tokens.len() / ctx;
    if n_chunks == 0 {
        return Err(EngineError::InvalidArgument(format!("need at least {ctx} tokens, got {}", tokens.len())));
    }
    let c = &model.config;
    let block_size = 16;
    let n_blocks = ctx.div_ceil(block_size);
    let table: Vec<u32> = (0..n_blocks as u32).collect();
    let first = ctx / 2;
    let rows: Vec<usize> = (first..ctx - 1).collect();
    let (mut nll, mut count) = (0f64, 0usize);
    for chunk in tokens.chunks_exact(ctx).take(n_chunks) {
        let mut window = chunk.to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        let mut store = KvStore::new(c.n_layers, n_blocks, block_size, c.kv_dim(), c.head_dim);
        let pos: Vec<usize> = (0..ctx).collect();
        let tables: Vec<&[u32]> = vec![&table; ctx];
        let logits = model.forward(&window, &pos, &tables, &mut store, &rows)?;
        for (i, &r) in rows.iter().enumerate() {
            let l = &logits[i * c.vocab_size..(i + 1) * c.vocab_size];
            nll -= log_softmax_at(l, window[r + 1] as usize) as f64;
            count += 1;
        }
    }
    Ok((nll / count as f64).exp())
}
