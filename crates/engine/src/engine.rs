//! The step API: sequences, their block tables, and one forward pass per
//! step over a batch that mixes prefill chunks and decode tokens.
//!
//! Policy (who runs when, chunk sizes, preemption) belongs to the scheduler;
//! the engine only executes what it is given and reports out-of-blocks as
//! an ordinary `Err` before touching any state of the step.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::attention::KvStore;
use crate::error::EngineError;
use crate::kv::{BlockId, BlockKey, BlockPool, CacheSalt};
use crate::model::{Model, Pass};

pub type SeqId = u64;

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Tokens per KV block.
    pub block_size: usize,
    /// Memory for K/V across all layers; the pool gets as many blocks as fit.
    pub kv_budget_bytes: usize,
    pub prefix_caching: bool,
    /// Upper bound on tokens in one step: activations scale with it
    /// (about 30 KiB per token for SmolLM2-135M), so a step is refused above it.
    pub max_batch_tokens: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { block_size: 16, kv_budget_bytes: 256 << 20, prefix_caching: true, max_batch_tokens: 8192 }
    }
}

/// Which logits an entry wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    None,
    /// Only the entry's last token (decode, end of a prompt).
    Last,
    /// Every token of the entry (perplexity, scoring).
    All,
}

/// One sequence's share of a step: its next tokens (a prefill chunk or one
/// decode token), placed after the tokens it already has in cache.
#[derive(Debug, Clone)]
pub struct StepEntry {
    pub seq: SeqId,
    pub tokens: Vec<u32>,
    pub logits: Logits,
}

#[derive(Debug, Clone, Default)]
pub struct StepBatch {
    pub entries: Vec<StepEntry>,
}

#[derive(Debug, Clone)]
pub struct SeqLogits {
    pub seq: SeqId,
    /// `[n][vocab]`: one row for `Logits::Last`, one per token for `All`.
    pub logits: Vec<f32>,
}

#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    pub outputs: Vec<SeqLogits>,
    pub n_tokens: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineStats {
    pub total_blocks: usize,
    pub free_blocks: usize,
    pub cached_blocks: usize,
    pub block_size: usize,
    pub live_sequences: usize,
    /// Allocated-but-unfilled slots / allocated slots, over live sequences.
    pub kv_waste: f64,
    /// Prompt blocks served from the prefix cache / full prompt blocks looked up.
    pub prefix_hit_rate: f64,
}

struct Sequence {
    /// Tokens whose K/V are in the cache, in order.
    tokens: Vec<u32>,
    table: Vec<BlockId>,
    /// Chain hash at the end of each full block (prefix caching).
    hashes: Vec<u64>,
    /// The chain's root: blocks are shared only between sequences of one salt.
    salt: CacheSalt,
}

/// A step begun with `Engine::begin_step` and not yet finished.
#[derive(Debug)]
pub struct PendingStep {
    id: u64,
    entries: Vec<StepEntry>,
    pass: Pass,
    n_tokens: usize,
}

impl PendingStep {
    pub fn entries(&self) -> &[StepEntry] {
        &self.entries
    }

    pub fn layers_done(&self) -> usize {
        self.pass.layers_done()
    }
}

pub struct Engine {
    model: Arc<Model>,
    cfg: EngineConfig,
    pool: BlockPool,
    store: KvStore,
    seqs: HashMap<SeqId, Sequence>,
    lookup_blocks: u64,
    hit_blocks: u64,
    /// Sequences of pending steps (see `begin_step`).
    in_step: HashSet<SeqId>,
    /// Ids of pending steps.
    pending: HashSet<u64>,
}

/// Step ids are unique across engines, so a step cannot be finished on an
/// engine that did not begin it.
static NEXT_STEP_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Engine {
    pub fn new(model: Arc<Model>, cfg: EngineConfig) -> Result<Self, EngineError> {
        let c = &model.config;
        if cfg.block_size == 0 || cfg.block_size > 1024 {
            return Err(EngineError::InvalidArgument("block_size must be in 1..=1024".into()));
        }
        let per_block = KvStore::bytes_per_block(c.n_layers, cfg.block_size, c.kv_dim());
        let n_blocks = cfg.kv_budget_bytes / per_block;
        if n_blocks == 0 {
            return Err(EngineError::InvalidArgument(format!(
                "KV budget {} bytes is below one block ({per_block} bytes)",
                cfg.kv_budget_bytes
            )));
        }
        let store = KvStore::new(c.n_layers, n_blocks, cfg.block_size, c.kv_dim(), c.head_dim);
        Ok(Engine {
            pool: BlockPool::new(n_blocks),
            store,
            model,
            cfg,
            seqs: HashMap::new(),
            lookup_blocks: 0,
            hit_blocks: 0,
            in_step: HashSet::new(),
            pending: HashSet::new(),
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Registers a sequence whose prompt is `prompt`, sharing the prefix
    /// cache with every other sequence added without a salt (single-user
    /// tools; a multi-tenant caller uses `add_sequence_salted`).
    pub fn add_sequence(&mut self, id: SeqId, prompt: &[u32]) -> Result<usize, EngineError> {
        self.add_sequence_salted(id, prompt, CacheSalt::NONE)
    }

    /// Registers a sequence whose prompt is `prompt`. With prefix caching,
    /// full blocks of the prompt already cached under the same `salt` are
    /// attached (never the last prompt token: its logits must be computed),
    /// and the blocks it fills are published under that salt only. Returns
    /// how many prompt tokens are cached; the caller prefills `prompt[cached..]`.
    pub fn add_sequence_salted(&mut self, id: SeqId, prompt: &[u32], salt: CacheSalt) -> Result<usize, EngineError> {
        if self.seqs.contains_key(&id) {
            return Err(EngineError::DuplicateSequence(id));
        }
        let mut seq = Sequence { tokens: Vec::new(), table: Vec::new(), hashes: Vec::new(), salt };
        if self.cfg.prefix_caching && !prompt.is_empty() {
            let bs = self.cfg.block_size;
            let n_full = (prompt.len() - 1) / bs;
            self.lookup_blocks += n_full as u64;
            let mut parent = salt.root();
            for chunk in prompt.chunks_exact(bs).take(n_full) {
                let key = BlockKey::new(parent, chunk);
                let Some(b) = self.pool.lookup(&key) else { break };
                self.pool.retain(b)?;
                seq.table.push(b);
                seq.hashes.push(key.hash);
                seq.tokens.extend_from_slice(chunk);
                parent = key.hash;
                self.hit_blocks += 1;
            }
        }
        let cached = seq.tokens.len();
        self.seqs.insert(id, seq);
        Ok(cached)
    }

    /// Frees the sequence's blocks (cached full blocks stay reusable until evicted).
    pub fn remove_sequence(&mut self, id: SeqId) -> Result<(), EngineError> {
        if self.in_step.contains(&id) {
            return Err(EngineError::InvalidArgument(format!("sequence {id} is in a step in progress")));
        }
        let seq = self.seqs.remove(&id).ok_or(EngineError::UnknownSequence(id))?;
        // Deepest blocks first, so LRU evicts prefix tails before prefix roots.
        // Tables only hold blocks this engine retained, so release cannot fail;
        // keep going on error so one bad entry cannot leak the others.
        let mut result = Ok(());
        for &b in seq.table.iter().rev() {
            if let Err(e) = self.pool.release(b) {
                result = Err(e);
            }
        }
        result
    }

    /// Registers `copy` as a copy of `id`: the same tokens, with their K/V
    /// copied into blocks of its own (nothing shared, nothing published to
    /// the prefix cache again). Lets `bench` decode many sequences at a long
    /// context without prefilling each.
    pub fn copy_sequence(&mut self, id: SeqId, copy: SeqId) -> Result<(), EngineError> {
        if self.seqs.contains_key(&copy) {
            return Err(EngineError::DuplicateSequence(copy));
        }
        if self.in_step.contains(&id) {
            return Err(EngineError::InvalidArgument(format!("sequence {id} is in a step in progress")));
        }
        let s = self.seqs.get(&id).ok_or(EngineError::UnknownSequence(id))?;
        let (tokens, hashes, salt, from) = (s.tokens.clone(), s.hashes.clone(), s.salt, s.table.clone());
        let table = self.pool.allocate_n(from.len())?;
        for (&a, &b) in from.iter().zip(&table) {
            self.store.copy_block(a as usize, b as usize);
        }
        self.seqs.insert(copy, Sequence { tokens, table, hashes, salt });
        Ok(())
    }

    pub fn has_sequence(&self, id: SeqId) -> bool {
        self.seqs.contains_key(&id)
    }

    /// Tokens of the sequence with K/V in cache.
    pub fn sequence_len(&self, id: SeqId) -> Result<usize, EngineError> {
        self.seqs.get(&id).map(|s| s.tokens.len()).ok_or(EngineError::UnknownSequence(id))
    }

    /// Blocks needed so that `n_more` tokens fit after what `id` holds.
    pub fn blocks_needed(&self, id: SeqId, n_more: usize) -> Result<usize, EngineError> {
        let s = self.seqs.get(&id).ok_or(EngineError::UnknownSequence(id))?;
        let need = (s.tokens.len() + n_more).div_ceil(self.cfg.block_size);
        Ok(need.saturating_sub(s.table.len()))
    }

    /// Ensures room for `n_more` tokens; all-or-nothing.
    pub fn allocate(&mut self, id: SeqId, n_more: usize) -> Result<(), EngineError> {
        let n = self.blocks_needed(id, n_more)?;
        let blocks = self.pool.allocate_n(n)?;
        if let Some(s) = self.seqs.get_mut(&id) {
            s.table.extend(blocks);
        }
        Ok(())
    }

    /// Runs one forward pass over all entries' tokens. Blocks are allocated
    /// as needed; if they do not all fit, nothing runs and `OutOfBlocks`
    /// comes back with the pool as it was.
    pub fn step(&mut self, batch: &StepBatch) -> Result<StepOutput, EngineError> {
        let pending = self.begin_step(batch)?;
        self.finish_step(pending)
    }

    /// Layers of the model: the most `advance` calls a step can take.
    pub fn n_layers(&self) -> usize {
        self.model.config.n_layers
    }

    /// Starts a step that runs in parts (`advance`, then `finish_step`), so
    /// that between its layers the caller may run other steps over other
    /// sequences: a long step of low-priority work gives way to the prefill
    /// of a request that just arrived. Checks and allocation are those of
    /// `step`; the step's sequences cannot be in another step, nor removed,
    /// until it is finished. Results are bit-identical to `step`.
    pub fn begin_step(&mut self, batch: &StepBatch) -> Result<PendingStep, EngineError> {
        let ctx_len = self.model.config.ctx_len;
        let total: usize = batch.entries.iter().map(|e| e.tokens.len()).sum();
        if total > self.cfg.max_batch_tokens {
            return Err(EngineError::InvalidBatch(format!(
                "{total} tokens exceed max_batch_tokens {}",
                self.cfg.max_batch_tokens
            )));
        }
        let mut seen = HashSet::new();
        let mut need = 0usize;
        for e in &batch.entries {
            if !seen.insert(e.seq) {
                return Err(EngineError::InvalidBatch(format!("sequence {} twice in one step", e.seq)));
            }
            if self.in_step.contains(&e.seq) {
                return Err(EngineError::InvalidBatch(format!("sequence {} is in a step in progress", e.seq)));
            }
            if e.tokens.is_empty() {
                return Err(EngineError::InvalidBatch(format!("sequence {} has no tokens", e.seq)));
            }
            let len = self.sequence_len(e.seq)?;
            if len + e.tokens.len() > ctx_len {
                return Err(EngineError::ContextOverflow { seq: e.seq, pos: len + e.tokens.len(), max: ctx_len });
            }
            need += self.blocks_needed(e.seq, e.tokens.len())?;
        }
        if need > self.pool.n_free() {
            return Err(EngineError::OutOfBlocks { needed: need, free: self.pool.n_free() });
        }
        for e in &batch.entries {
            self.allocate(e.seq, e.tokens.len())?;
        }

        let mut tokens = Vec::with_capacity(total);
        let mut pos = Vec::with_capacity(total);
        let mut tables: Vec<&[u32]> = Vec::with_capacity(total);
        let mut logit_rows = Vec::new();
        for e in &batch.entries {
            let s = &self.seqs[&e.seq];
            let base = s.tokens.len();
            let first_row = tokens.len();
            tokens.extend_from_slice(&e.tokens);
            pos.extend(base..base + e.tokens.len());
            tables.extend(std::iter::repeat_n(s.table.as_slice(), e.tokens.len()));
            match e.logits {
                Logits::None => {}
                Logits::Last => logit_rows.push(tokens.len() - 1),
                Logits::All => logit_rows.extend(first_row..tokens.len()),
            }
        }
        let pass = self.model.begin(&tokens, &pos, &tables, &self.store, &logit_rows)?;
        self.in_step.extend(batch.entries.iter().map(|e| e.seq));
        let id = NEXT_STEP_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pending.insert(id);
        Ok(PendingStep { id, entries: batch.entries.clone(), pass, n_tokens: total })
    }

    /// Runs up to `layers` more layers of a pending step, stopping early
    /// when `pause` answers true between two layers (it is asked on a
    /// compute thread, so it should be a cheap check such as an atomic
    /// flag); true when all have run.
    pub fn advance(
        &mut self,
        step: &mut PendingStep,
        layers: usize,
        pause: &(dyn Fn() -> bool + Sync),
    ) -> Result<bool, EngineError> {
        self.check_pending(step)?;
        Ok(self.model.run_layers(&mut step.pass, &mut self.store, layers, pause))
    }

    /// Runs what is left of a pending step, commits its tokens and returns
    /// its logits, exactly as `step` would have.
    pub fn finish_step(&mut self, step: PendingStep) -> Result<StepOutput, EngineError> {
        self.check_pending(&step)?;
        let PendingStep { id, entries, pass, n_tokens } = step;
        self.pending.remove(&id);
        let logits = self.model.finish(pass, &mut self.store);
        let vocab = self.model.config.vocab_size;
        let mut outputs = Vec::new();
        let mut row = 0usize;
        for e in &entries {
            self.in_step.remove(&e.seq);
            let n = match e.logits {
                Logits::None => 0,
                Logits::Last => 1,
                Logits::All => e.tokens.len(),
            };
            if n > 0 {
                outputs.push(SeqLogits { seq: e.seq, logits: logits[row * vocab..(row + n) * vocab].to_vec() });
            }
            row += n;
            self.commit_tokens(e.seq, &e.tokens);
        }
        Ok(StepOutput { outputs, n_tokens })
    }

    /// A pending step is only valid on the engine that began it, once.
    fn check_pending(&self, step: &PendingStep) -> Result<(), EngineError> {
        if self.pending.contains(&step.id) {
            Ok(())
        } else {
            Err(EngineError::InvalidBatch("this step is not in progress on this engine".into()))
        }
    }

    /// Appends computed tokens and publishes newly filled blocks to the prefix cache.
    fn commit_tokens(&mut self, id: SeqId, new: &[u32]) {
        let bs = self.cfg.block_size;
        let Some(s) = self.seqs.get_mut(&id) else { return };
        s.tokens.extend_from_slice(new);
        while (s.hashes.len() + 1) * bs <= s.tokens.len() {
            let i = s.hashes.len();
            let parent = if i == 0 { s.salt.root() } else { s.hashes[i - 1] };
            let key = BlockKey::new(parent, &s.tokens[i * bs..(i + 1) * bs]);
            s.hashes.push(key.hash);
            if self.cfg.prefix_caching {
                self.pool.register(s.table[i], key);
            }
        }
    }

    pub fn stats(&self) -> EngineStats {
        let bs = self.cfg.block_size;
        let (mut alloc, mut used) = (0usize, 0usize);
        for s in self.seqs.values() {
            alloc += s.table.len() * bs;
            used += s.tokens.len();
        }
        EngineStats {
            total_blocks: self.pool.n_total(),
            free_blocks: self.pool.n_free(),
            cached_blocks: self.pool.n_cached(),
            block_size: bs,
            live_sequences: self.seqs.len(),
            kv_waste: if alloc == 0 { 0.0 } else { (alloc - used.min(alloc)) as f64 / alloc as f64 },
            prefix_hit_rate: if self.lookup_blocks == 0 {
                0.0
            } else {
                self.hit_blocks as f64 / self.lookup_blocks as f64
            },
        }
    }

    /// Pool invariants (tests and debug endpoints).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.pool.check_invariants()?;
        let mut refs: HashMap<BlockId, u32> = HashMap::new();
        for s in self.seqs.values() {
            for &b in &s.table {
                *refs.entry(b).or_default() += 1;
            }
        }
        for (&b, &n) in &refs {
            if self.pool.ref_count(b) != n {
                return Err(format!("block {b}: {n} table references, ref count {}", self.pool.ref_count(b)));
            }
        }
        let used = self.pool.n_total() - self.pool.n_free();
        if used != refs.len() {
            return Err(format!("{used} used blocks but {} referenced", refs.len()));
        }
        Ok(())
    }
}
