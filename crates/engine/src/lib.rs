//! Reservoir's inference engine: pure compute, no I/O beyond reading the model file.
//!
//! Layers, bottom up: `gguf` (file format) -> `quant` + `kernels` (quantized
//! matmul, SIMD dispatched at run time) -> `attention` (paged K/V storage) ->
//! `model` (Llama blocks) -> `kv` (block pool, prefix cache) -> `engine`
//! (step API mixing prefill chunks and decode tokens) -> `sampler`,
//! `generate` (generation iterator, perplexity). The tokenizer is a crate of
//! its own (`reservoir-tokenizer`), re-exported here; `tokenizer` reads it
//! from the GGUF file.

pub mod attention;
pub mod bench;
pub mod engine;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod kv;
pub mod model;
pub mod quant;
pub mod sampler;
#[doc(hidden)]
pub mod test_support;
pub mod tokenizer;
/// Incremental detokenization (moved to `reservoir-tokenizer`).
pub use reservoir_tokenizer::text;

pub use engine::{
    Engine, EngineConfig, EngineStats, Logits, PendingStep, SeqId, SeqLogits, StepBatch, StepEntry, StepOutput,
};
pub use error::EngineError;
pub use generate::{
    FinishReason, GeneratedToken, Generation, LoadedModel, default_model_path, generate, load, perplexity,
};
pub use kv::CacheSalt;
pub use model::{Config, Model};
pub use sampler::{Sampled, Sampler, SamplingParams};
pub use text::{Piece, TextStream};
pub use tokenizer::{ChatMessage, PreTokenizer, Tokenizer, TokenizerError, TokenizerParts, chat_prompt};
