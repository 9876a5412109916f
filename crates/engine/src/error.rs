//! The crate's one error type.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    #[error("i/o error: {0}")]
    Io(String),
    #[error("malformed GGUF: {0}")]
    Gguf(String),
    #[error("unsupported architecture {0:?} (only \"llama\" is supported)")]
    UnsupportedArchitecture(String),
    #[error("tensor {tensor}: unsupported ggml type {ty}")]
    UnsupportedTensorType { tensor: String, ty: u32 },
    #[error("missing metadata key {0}")]
    MissingMetadata(String),
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {tensor}: expected shape {expected:?}, found {found:?}")]
    BadShape { tensor: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("bad model config: {0}")]
    BadConfig(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("token id {0} out of vocabulary")]
    BadToken(u32),
    #[error("out of KV cache blocks: need {needed}, {free} free")]
    OutOfBlocks { needed: usize, free: usize },
    #[error("unknown sequence {0}")]
    UnknownSequence(u64),
    #[error("sequence {0} already exists")]
    DuplicateSequence(u64),
    #[error("sequence {seq}: position {pos} exceeds context length {max}")]
    ContextOverflow { seq: u64, pos: usize, max: usize },
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<reservoir_tokenizer::TokenizerError> for EngineError {
    fn from(e: reservoir_tokenizer::TokenizerError) -> Self {
        EngineError::Tokenizer(e.0)
    }
}
