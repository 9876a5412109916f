//! What the step loop needs from an inference engine. The loop and the gRPC
//! layer see the engine only through this trait (tests wrap it to pause
//! steps or count calls); `EngineBackend` is the real one.

use std::path::Path;
use std::sync::Arc;

use reservoir_engine::{
    CacheSalt, Engine, EngineConfig, EngineError, EngineStats, PendingStep, SeqId, StepBatch, StepOutput, Tokenizer,
};

/// Fixed facts about the model and the KV pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendInfo {
    /// Longest sequence (prompt plus completion) in tokens.
    pub ctx_len: usize,
    pub vocab_size: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    pub total_blocks: usize,
    /// Most tokens one step may carry.
    pub max_batch_tokens: usize,
}

/// The engine as the step loop drives it. Runs on the loop's own thread.
pub trait InferenceBackend: Send + 'static {
    fn info(&self) -> BackendInfo;
    /// The model's tokenizer, shared with the gRPC handlers.
    fn tokenizer(&self) -> Arc<Tokenizer>;
    /// Registers a sequence; returns how many of its tokens came from the
    /// prefix cache (never all of them), which only sequences of the same
    /// `salt` share.
    fn add_sequence(&mut self, id: SeqId, tokens: &[u32], salt: CacheSalt) -> Result<usize, EngineError>;
    /// Frees the sequence's blocks.
    fn remove_sequence(&mut self, id: SeqId) -> Result<(), EngineError>;
    fn free_blocks(&self) -> usize;
    /// A step begun and not yet finished.
    type Pending: Send;
    /// Starts a step that runs layer by layer, so other (higher-priority)
    /// steps over other sequences can run between its layers. `OutOfBlocks`
    /// leaves everything as it was.
    fn begin_step(&mut self, batch: &StepBatch) -> Result<Self::Pending, EngineError>;
    /// Runs layers until the pass is complete (true) or `pause` answers true
    /// between two layers (false). `pause` runs on a compute thread: keep it
    /// to an atomic load.
    fn advance(&mut self, step: &mut Self::Pending, pause: &(dyn Fn() -> bool + Sync)) -> Result<bool, EngineError>;
    /// Runs what is left and returns the step's logits.
    fn finish_step(&mut self, step: Self::Pending) -> Result<StepOutput, EngineError>;
    /// One whole forward pass.
    fn step(&mut self, batch: &StepBatch) -> Result<StepOutput, EngineError> {
        let pending = self.begin_step(batch)?;
        self.finish_step(pending)
    }
    fn stats(&self) -> EngineStats;
}

/// `reservoir_engine::Engine` plus its tokenizer.
pub struct EngineBackend {
    engine: Engine,
    tokenizer: Arc<Tokenizer>,
    max_batch_tokens: usize,
}

impl EngineBackend {
    pub fn new(engine: Engine, tokenizer: Arc<Tokenizer>, max_batch_tokens: usize) -> Self {
        EngineBackend { engine, tokenizer, max_batch_tokens }
    }

    /// Loads a GGUF model and sizes the KV pool to `kv_budget_bytes`.
    pub fn load(model_path: &Path, kv_budget_bytes: usize) -> Result<Self, EngineError> {
        let loaded = reservoir_engine::load(model_path)?;
        let cfg = EngineConfig { kv_budget_bytes, ..EngineConfig::default() };
        let max_batch_tokens = cfg.max_batch_tokens;
        let engine = Engine::new(loaded.model, cfg)?;
        Ok(EngineBackend::new(engine, loaded.tokenizer, max_batch_tokens))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl InferenceBackend for EngineBackend {
    fn info(&self) -> BackendInfo {
        let c = &self.engine.model().config;
        let s = self.engine.stats();
        BackendInfo {
            ctx_len: c.ctx_len,
            vocab_size: c.vocab_size,
            block_size: s.block_size,
            total_blocks: s.total_blocks,
            max_batch_tokens: self.max_batch_tokens,
        }
    }

    fn tokenizer(&self) -> Arc<Tokenizer> {
        self.tokenizer.clone()
    }

    fn add_sequence(&mut self, id: SeqId, tokens: &[u32], salt: CacheSalt) -> Result<usize, EngineError> {
        self.engine.add_sequence_salted(id, tokens, salt)
    }

    fn remove_sequence(&mut self, id: SeqId) -> Result<(), EngineError> {
        self.engine.remove_sequence(id)
    }

    fn free_blocks(&self) -> usize {
        self.engine.stats().free_blocks
    }

    type Pending = PendingStep;

    fn begin_step(&mut self, batch: &StepBatch) -> Result<PendingStep, EngineError> {
        self.engine.begin_step(batch)
    }

    fn advance(&mut self, step: &mut PendingStep, pause: &(dyn Fn() -> bool + Sync)) -> Result<bool, EngineError> {
        self.engine.advance(step, usize::MAX, pause)
    }

    fn finish_step(&mut self, step: PendingStep) -> Result<StepOutput, EngineError> {
        self.engine.finish_step(step)
    }

    fn stats(&self) -> EngineStats {
        self.engine.stats()
    }
}
