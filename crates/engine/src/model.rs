//! Llama forward pass over a flat batch of tokens from many sequences.
//!
//! Weights are immutable (`Arc<Model>` is shared by every sequence); per-step
//! state lives in the caller's `KvStore`. Conventions follow llama.cpp's
//! LLM_ARCH_LLAMA: RMSNorm, "normal" RoPE rotating consecutive pairs
//! (x[2i], x[2i+1]) — the GGUF converter permuted Q/K rows for it — GQA
//! attention, SwiGLU FFN, and the token embedding reused as output
//! projection when `output.weight` is absent (tied embeddings).

use rayon::prelude::*;

use crate::attention::{AttnShape, KvStore, paged_attention};
use crate::error::EngineError;
use crate::gguf::{GgufFile, Value};
use crate::kernels::{Input, Weight};
use crate::quant::{GgmlType, dequantize_row};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub dim: usize,
    pub ffn_dim: usize,
    pub head_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub ctx_len: usize,
    pub vocab_size: usize,
}

impl Config {
    pub fn from_gguf(f: &GgufFile) -> Result<Self, EngineError> {
        let arch = f.get("general.architecture").and_then(Value::as_str).unwrap_or("<missing>");
        if arch != "llama" {
            return Err(EngineError::UnsupportedArchitecture(arch.to_string()));
        }
        let u = |k: &str| -> Result<usize, EngineError> {
            f.get(&format!("llama.{k}"))
                .and_then(Value::as_u64)
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| EngineError::MissingMetadata(format!("llama.{k}")))
        };
        let fl = |k: &str, d: f32| f.get(&format!("llama.{k}")).and_then(Value::as_f32).unwrap_or(d);
        let n_heads = u("attention.head_count")?;
        let dim = u("embedding_length")?;
        let vocab_size = match u("vocab_size") {
            Ok(v) => v,
            Err(_) => f
                .get("tokenizer.ggml.tokens")
                .and_then(Value::as_array)
                .map(|a| a.len())
                .ok_or_else(|| EngineError::MissingMetadata("llama.vocab_size".into()))?,
        };
        let c = Config {
            n_layers: u("block_count")?,
            n_heads,
            n_kv_heads: u("attention.head_count_kv").unwrap_or(n_heads),
            dim,
            ffn_dim: u("feed_forward_length")?,
            head_dim: dim.checked_div(n_heads).unwrap_or(0),
            rope_base: fl("rope.freq_base", 10000.0),
            rms_eps: fl("attention.layer_norm_rms_epsilon", 1e-5),
            ctx_len: u("context_length")?,
            vocab_size,
        };
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::BadConfig(m.to_string()));
        if self.n_layers == 0 || self.n_heads == 0 || self.n_kv_heads == 0 || self.dim == 0 {
            return bad("zero-sized dimension");
        }
        if !self.dim.is_multiple_of(self.n_heads)
            || self.head_dim * self.n_heads != self.dim
            || !self.head_dim.is_multiple_of(2)
        {
            return bad("embedding dim must split into even-sized heads");
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad("head count must be a multiple of KV head count");
        }
        if !self.dim.is_multiple_of(32) || !self.ffn_dim.is_multiple_of(32) || self.ffn_dim == 0 {
            return bad("dims must be multiples of 32");
        }
        if self.vocab_size == 0 || self.ctx_len == 0 {
            return bad("empty vocabulary or context");
        }
        Ok(())
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

fn weight(f: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<Weight, EngineError> {
    let info = f.tensor_info(name).ok_or_else(|| EngineError::MissingTensor(name.to_string()))?;
    let expected = vec![cols as u64, rows as u64];
    if info.dims != expected {
        return Err(EngineError::BadShape { tensor: name.into(), expected, found: info.dims.clone() });
    }
    Weight::new(info.ty, rows, cols, f.tensor_bytes(info)?)
        .ok_or_else(|| EngineError::Gguf(format!("tensor {name}: bad size")))
}

fn vector(f: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>, EngineError> {
    let info = f.tensor_info(name).ok_or_else(|| EngineError::MissingTensor(name.to_string()))?;
    if info.n_elements() != n as u64 || !matches!(info.ty, GgmlType::F32 | GgmlType::F16) {
        return Err(EngineError::BadShape { tensor: name.into(), expected: vec![n as u64], found: info.dims.clone() });
    }
    let mut v = vec![0f32; n];
    dequantize_row(info.ty, f.tensor_bytes(info)?.as_slice(), &mut v);
    Ok(v)
}

/// One transformer block's weights.
pub struct Block {
    attn_norm: Vec<f32>,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    ffn_norm: Vec<f32>,
    w_gate: Weight,
    w_up: Weight,
    w_down: Weight,
}

/// Per-token placement of a batch: position and the owning sequence's block table.
pub struct BatchLayout<'a> {
    pub pos: &'a [usize],
    pub tables: &'a [&'a [u32]],
    /// Slot each token's K/V is written to.
    pub slots: &'a [usize],
    /// RoPE (cos, sin) per token, `[T][head_dim / 2]` each.
    cos: &'a [f32],
    sin: &'a [f32],
}

impl Block {
    pub fn load(f: &GgufFile, c: &Config, i: usize) -> Result<Self, EngineError> {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        Ok(Block {
            attn_norm: vector(f, &n("attn_norm"), c.dim)?,
            wq: weight(f, &n("attn_q"), c.dim, c.dim)?,
            wk: weight(f, &n("attn_k"), c.kv_dim(), c.dim)?,
            wv: weight(f, &n("attn_v"), c.kv_dim(), c.dim)?,
            wo: weight(f, &n("attn_output"), c.dim, c.dim)?,
            ffn_norm: vector(f, &n("ffn_norm"), c.dim)?,
            w_gate: weight(f, &n("ffn_gate"), c.ffn_dim, c.dim)?,
            w_up: weight(f, &n("ffn_up"), c.ffn_dim, c.dim)?,
            w_down: weight(f, &n("ffn_down"), c.dim, c.ffn_dim)?,
        })
    }

    /// Updates the residual stream `x` (`[T][dim]`) in place.
    pub fn forward(&self, c: &Config, layer: usize, x: &mut [f32], lay: &BatchLayout, kv: &mut KvStore) {
        let t = lay.pos.len();
        let (dim, kvd, hd) = (c.dim, c.kv_dim(), c.head_dim);
        let mut h = x.to_vec();
        rms_norm(&mut h, &self.attn_norm, c.rms_eps);
        let mut q = vec![0f32; t * dim];
        let mut k = vec![0f32; t * kvd];
        let mut v = vec![0f32; t * kvd];
        let hq = Input::best(&h, t, dim);
        self.wq.matmul_input(&hq, &mut q);
        self.wk.matmul_input(&hq, &mut k);
        self.wv.matmul_input(&hq, &mut v);
        drop(hq);
        for tt in 0..t {
            let (cs, sn) = (&lay.cos[tt * hd / 2..(tt + 1) * hd / 2], &lay.sin[tt * hd / 2..(tt + 1) * hd / 2]);
            rope(&mut q[tt * dim..(tt + 1) * dim], cs, sn);
            rope(&mut k[tt * kvd..(tt + 1) * kvd], cs, sn);
            kv.write(layer, lay.slots[tt], &k[tt * kvd..(tt + 1) * kvd], &v[tt * kvd..(tt + 1) * kvd]);
        }
        let shape = AttnShape { n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: hd };
        // `h` is reused as the attention output.
        paged_attention(shape, &q, kv.layer(layer), lay.tables, lay.pos, &mut h);
        self.wo.matmul(&h, t, &mut q);
        add(x, &q);

        h.copy_from_slice(x);
        rms_norm(&mut h, &self.ffn_norm, c.rms_eps);
        let mut g = vec![0f32; t * c.ffn_dim];
        let mut u = vec![0f32; t * c.ffn_dim];
        let hq = Input::best(&h, t, dim);
        self.w_gate.matmul_input(&hq, &mut g);
        self.w_up.matmul_input(&hq, &mut u);
        drop(hq);
        let silu = |(g, u): (&mut [f32], &[f32])| {
            for (a, b) in g.iter_mut().zip(u) {
                *a = *a / (1.0 + (-*a).exp()) * b;
            }
        };
        // Per element the same operations either way; forking pays from a few tokens.
        if t >= 4 {
            g.par_chunks_mut(c.ffn_dim).zip(u.par_chunks(c.ffn_dim)).for_each(silu);
        } else {
            silu((&mut g, &u));
        }
        self.w_down.matmul(&g, t, &mut q);
        add(x, &q);
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// RMSNorm of each `w.len()`-sized row: x * w / sqrt(mean(x^2) + eps).
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    let norm = |row: &mut [f32]| {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
        let s = 1.0 / (ms + eps).sqrt();
        row.iter_mut().zip(w).for_each(|(a, b)| *a = *a * s * b);
    };
    // Forking costs more than normalizing a few rows.
    if x.len() < 64 * w.len() {
        x.chunks_mut(w.len()).for_each(norm);
    } else {
        x.par_chunks_mut(w.len()).for_each(norm);
    }
}

/// Rotates consecutive pairs of every head in `x` (heads of `2 * cos.len()`).
fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    for head in x.chunks_exact_mut(2 * cos.len()) {
        for (i, pair) in head.chunks_exact_mut(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos[i] - b * sin[i];
            pair[1] = a * sin[i] + b * cos[i];
        }
    }
}

pub struct Model {
    pub config: Config,
    embed: Weight,
    blocks: Vec<Block>,
    out_norm: Vec<f32>,
    output: Weight,
}

impl Model {
    pub fn load(f: &GgufFile) -> Result<Self, EngineError> {
        let c = Config::from_gguf(f)?;
        let embed = weight(f, "token_embd.weight", c.vocab_size, c.dim)?;
        let output = match f.tensor_info("output.weight") {
            Some(_) => weight(f, "output.weight", c.vocab_size, c.dim)?,
            None => embed.clone(),
        };
        let blocks = (0..c.n_layers).map(|i| Block::load(f, &c, i)).collect::<Result<_, _>>()?;
        Ok(Model { out_norm: vector(f, "output_norm.weight", c.dim)?, config: c, embed, blocks, output })
    }

    /// Runs the batch, writing each token's K/V to its slot, and returns the
    /// logits (`[rows.len()][vocab]`) of the tokens listed in `logit_rows`.
    /// The caller guarantees every table covers its token's positions.
    pub fn forward(
        &self,
        tokens: &[u32],
        pos: &[usize],
        tables: &[&[u32]],
        kv: &mut KvStore,
        logit_rows: &[usize],
    ) -> Result<Vec<f32>, EngineError> {
        let pass = self.begin(tokens, pos, tables, kv, logit_rows)?;
        Ok(self.finish(pass, kv))
    }

    /// Validates a batch and embeds its tokens: a forward pass that has run
    /// no layer yet. Owned, so other passes (over other sequences) may run
    /// between its layers.
    pub fn begin(
        &self,
        tokens: &[u32],
        pos: &[usize],
        tables: &[&[u32]],
        kv: &KvStore,
        logit_rows: &[usize],
    ) -> Result<Pass, EngineError> {
        let c = &self.config;
        let t = tokens.len();
        if pos.len() != t || tables.len() != t {
            return Err(EngineError::InvalidBatch("tokens, positions and tables differ in length".into()));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(EngineError::BadToken(bad));
        }
        if logit_rows.iter().any(|&r| r >= t) {
            return Err(EngineError::InvalidBatch("logit row out of range".into()));
        }
        let mut slots = Vec::with_capacity(t);
        for (p, table) in pos.iter().zip(tables) {
            if *p >= c.ctx_len {
                return Err(EngineError::InvalidBatch(format!("position {p} beyond context {}", c.ctx_len)));
            }
            // Attention reads 0..=p through the table: every block up to p's
            // must exist in the store.
            let used = table.get(..=*p / kv.block_size).unwrap_or(&[]);
            if used.len() <= *p / kv.block_size || used.iter().any(|&b| b as usize >= kv.n_blocks) {
                return Err(EngineError::InvalidBatch("block table too short or out of range".into()));
            }
            slots.push(kv.slot(table, *p).ok_or_else(|| EngineError::InvalidBatch("block table too short".into()))?);
        }
        let half = c.head_dim / 2;
        let mut cos = vec![0f32; t * half];
        let mut sin = vec![0f32; t * half];
        for (tt, &p) in pos.iter().enumerate() {
            for i in 0..half {
                let theta = p as f32 * c.rope_base.powf(-2.0 * i as f32 / c.head_dim as f32);
                cos[tt * half + i] = theta.cos();
                sin[tt * half + i] = theta.sin();
            }
        }
        // Tokens of one sequence share its table: keep one copy per run of
        // equal tables rather than one per token.
        let mut owned: Vec<Vec<u32>> = Vec::new();
        let mut table_of = Vec::with_capacity(t);
        for (i, table) in tables.iter().enumerate() {
            if i == 0 || !std::ptr::eq(*table, tables[i - 1]) {
                owned.push(table.to_vec());
            }
            table_of.push(owned.len() - 1);
        }
        let mut x = vec![0f32; t * c.dim];
        for (row, &id) in x.chunks_exact_mut(c.dim).zip(tokens) {
            self.embed.row_f32(id as usize, row);
        }
        Ok(Pass {
            pos: pos.to_vec(),
            tables: owned,
            table_of,
            slots,
            cos,
            sin,
            x,
            logit_rows: logit_rows.to_vec(),
            next_layer: 0,
        })
    }

    /// Runs up to `n` more layers of `pass`, stopping early when `pause`
    /// answers true between two layers; true when every layer has run.
    pub fn run_layers(&self, pass: &mut Pass, kv: &mut KvStore, n: usize, pause: &(dyn Fn() -> bool + Sync)) -> bool {
        let end = pass.next_layer.saturating_add(n).min(self.blocks.len());
        let Pass { pos, tables, table_of, slots, cos, sin, x, next_layer, .. } = pass;
        let tables: Vec<&[u32]> = table_of.iter().map(|&i| tables[i].as_slice()).collect();
        let lay = BatchLayout { pos, tables: &tables, slots, cos, sin };
        // Run on a rayon worker: every nested parallel loop then forks from
        // inside the pool instead of paying a cross-thread injection and
        // wake-up each (hundreds per step). `pause` is asked there too, so
        // a step that is not interrupted costs one injection, not one per layer.
        rayon::scope(|_| {
            while *next_layer < end {
                self.blocks[*next_layer].forward(&self.config, *next_layer, x, &lay, kv);
                *next_layer += 1;
                if *next_layer < end && pause() {
                    break;
                }
            }
        });
        *next_layer == self.blocks.len()
    }

    /// Runs what is left of `pass` and returns the logits of its logit rows.
    pub fn finish(&self, mut pass: Pass, kv: &mut KvStore) -> Vec<f32> {
        self.run_layers(&mut pass, kv, usize::MAX, &|| false);
        let c = &self.config;
        let mut h: Vec<f32> =
            pass.logit_rows.iter().flat_map(|&r| pass.x[r * c.dim..(r + 1) * c.dim].iter().copied()).collect();
        rms_norm(&mut h, &self.out_norm, c.rms_eps);
        let mut logits = vec![0f32; pass.logit_rows.len() * c.vocab_size];
        rayon::scope(|_| self.output.matmul(&h, pass.logit_rows.len(), &mut logits));
        logits
    }
}

/// A forward pass in progress (see `Model::begin`): the residual stream
/// after `next_layer` layers and everything needed to run the rest.
#[derive(Debug)]
pub struct Pass {
    pos: Vec<usize>,
    tables: Vec<Vec<u32>>,
    /// Index into `tables` per token.
    table_of: Vec<usize>,
    slots: Vec<usize>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    x: Vec<f32>,
    logit_rows: Vec<usize>,
    next_layer: usize,
}

impl Pass {
    /// Layers already run.
    pub fn layers_done(&self) -> usize {
        self.next_layer
    }
}
