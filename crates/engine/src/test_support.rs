//! Tiny Llama models with seeded random weights, built in memory (no file).
//!
//! The model is written as GGUF bytes and loaded through the real loader, so
//! tests cover the loading path too. Public so that crates using the engine
//! (the worker) can test against a model that loads in milliseconds.

use std::sync::Arc;

use rand::{Rng, SeedableRng};

use crate::error::EngineError;
use crate::gguf::{Bytes, GgufFile, GgufWriter, Value};
use crate::model::Model;
use crate::quant::{GgmlType, quantize};

#[derive(Debug, Clone)]
pub struct TinySpec {
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab: usize,
    pub ctx_len: usize,
    /// Type of the big matrices (Q4_1 like SmolLM2, or Q8_0/Q4_0/F32).
    pub weight_type: GgmlType,
    pub seed: u64,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            ffn_dim: 128,
            vocab: 96,
            ctx_len: 512,
            weight_type: GgmlType::Q4_1,
            seed: 1,
        }
    }
}

/// GGUF bytes of a random tiny model (tied embeddings, Q8_0 embedding as in SmolLM2).
pub fn tiny_gguf(spec: &TinySpec) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
    let dim = spec.n_heads * spec.head_dim;
    let kv_dim = spec.n_kv_heads * spec.head_dim;
    let mut rand_mat = |rows: usize, cols: usize, scale: f32| -> Vec<f32> {
        (0..rows * cols).map(|_| rng.random_range(-scale..scale)).collect()
    };
    let mut w = GgufWriter::default();
    w.kv("general.architecture", Value::Str("llama".into()))
        .kv("llama.block_count", Value::U32(spec.n_layers as u32))
        .kv("llama.context_length", Value::U32(spec.ctx_len as u32))
        .kv("llama.embedding_length", Value::U32(dim as u32))
        .kv("llama.feed_forward_length", Value::U32(spec.ffn_dim as u32))
        .kv("llama.attention.head_count", Value::U32(spec.n_heads as u32))
        .kv("llama.attention.head_count_kv", Value::U32(spec.n_kv_heads as u32))
        .kv("llama.rope.freq_base", Value::F32(10000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .kv("llama.vocab_size", Value::U32(spec.vocab as u32));
    // Embedding scale ~1 and projections ~1/sqrt(fan_in) keep activations O(1)
    // so greedy choices are well separated (no near-ties between batchings).
    let emb = rand_mat(spec.vocab, dim, 1.0);
    w.tensor("token_embd.weight", vec![dim as u64, spec.vocab as u64], GgmlType::Q8_0, quantize(GgmlType::Q8_0, &emb));
    let ones = |n: usize| quantize(GgmlType::F32, &vec![1.0; n]);
    w.tensor("output_norm.weight", vec![dim as u64], GgmlType::F32, ones(dim));
    let ty = spec.weight_type;
    for i in 0..spec.n_layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let mut mat = |w: &mut GgufWriter, name: &str, rows: usize, cols: usize| {
            let s = 1.5 / (cols as f32).sqrt();
            w.tensor(&n(name), vec![cols as u64, rows as u64], ty, quantize(ty, &rand_mat(rows, cols, s)));
        };
        mat(&mut w, "attn_q", dim, dim);
        mat(&mut w, "attn_k", kv_dim, dim);
        mat(&mut w, "attn_v", kv_dim, dim);
        mat(&mut w, "attn_output", dim, dim);
        mat(&mut w, "ffn_gate", spec.ffn_dim, dim);
        mat(&mut w, "ffn_up", spec.ffn_dim, dim);
        mat(&mut w, "ffn_down", dim, spec.ffn_dim);
        w.tensor(&n("attn_norm"), vec![dim as u64], GgmlType::F32, ones(dim));
        w.tensor(&n("ffn_norm"), vec![dim as u64], GgmlType::F32, ones(dim));
    }
    w.to_bytes()
}

/// A random tiny model, loaded through the GGUF loader from memory.
pub fn tiny_model(spec: &TinySpec) -> Result<Arc<Model>, EngineError> {
    let f = GgufFile::parse(Bytes::from_vec(tiny_gguf(spec)))?;
    Ok(Arc::new(Model::load(&f)?))
}

/// A tokenizer for tiny models: token i is the letter `a + i % 26` followed
/// by `i / 26` underscores; no merges and no end-of-sequence token, so
/// generation runs to max_tokens.
pub fn letter_tokenizer(vocab: usize) -> Result<Arc<crate::tokenizer::Tokenizer>, EngineError> {
    let tokens: Vec<String> =
        (0..vocab).map(|i| ((b'a' + (i % 26) as u8) as char).to_string() + &"_".repeat(i / 26)).collect();
    let types = vec![1; vocab];
    Ok(Arc::new(crate::tokenizer::Tokenizer::new(tokens, &[], &types, None, None, false)?))
}
