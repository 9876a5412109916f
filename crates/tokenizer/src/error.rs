//! The crate's one error: a vocabulary that cannot make a tokenizer.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("tokenizer: {0}")]
pub struct TokenizerError(pub String);

impl TokenizerError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        TokenizerError(message.into())
    }
}
