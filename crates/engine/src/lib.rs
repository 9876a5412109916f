//! Reservoir's inference engine: pure compute, no I/O beyond reading the model file.
//!
//! Layers, bottom up: `gguf` (file format) -> `quant` + `kernels` (quantized
//! matmul, SIMD dispatched at run time) -> `attention` (paged K/V storage) ->
//! `model` (Llama blocks) -> `kv` (block pool, prefix cache) -> `engine`
//! (step API mixing prefill chunks and decode tokens) -> `sampler`,
//! `generate` (generation iterator, perplexity). `tokenizer` stands aside.

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
pub mod text;
pub mod tokenizer;

pub use engine::{
    Engine, EngineConfig, EngineStats, Logits, PendingStep, SeqId, SeqLogits, StepBatch, StepEntry, StepOutput,
};
pub use error::EngineError;
pub use generate::{
    FinishReason, GeneratedToken, Generation, LoadedModel, chat_prompt, default_model_path, generate, load, perplexity,
};
pub use model::{Config, Model};
pub use sampler::{Sampled, Sampler, SamplingParams};
pub use text::{Piece, TextStream};
pub use tokenizer::{ChatMessage, PreTokenizer, Tokenizer, TokenizerParts};
