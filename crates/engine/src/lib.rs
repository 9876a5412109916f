//! Reservoir's inference engine: pure compute, no I/O beyond reading the model file.
//!
//! Layers: `gguf` (file format) -> `quant`/`kernels` (numeric kernels) ->
//! `tokenizer` -> `model` (Llama blocks) -> `kv` (paged KV pool) -> `engine`
//! (step API mixing prefill chunks and decode tokens) -> `sampler`, `generate`.

pub mod error;
pub mod gguf;
pub mod kernels;
pub mod quant;

pub use error::EngineError;
