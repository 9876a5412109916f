//! The tokenizer lives in `reservoir-tokenizer` (the control plane needs it,
//! not the kernels); the engine reads its vocabulary from the GGUF file and
//! re-exports it here under the names it always had.

pub use reservoir_tokenizer::tokenizer::TOKEN_TYPE_CONTROL;
pub use reservoir_tokenizer::{
    ChatMessage, DEFAULT_SYSTEM_PROMPT, PROMPT_BYTES_MAX, PreTokenizer, ROLES, Tokenizer, TokenizerError,
    TokenizerParts, chat_prompt,
};

use crate::error::EngineError;
use crate::gguf::{GgufFile, Value};

fn str_array(f: &GgufFile, key: &str) -> Result<Vec<String>, EngineError> {
    let arr = f.get(key).and_then(Value::as_array).ok_or_else(|| EngineError::MissingMetadata(key.to_string()))?;
    arr.iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| EngineError::Tokenizer(format!("{key} is not a string array")))
}

/// The model's tokenizer from its GGUF metadata (`tokenizer.ggml.*`).
pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, EngineError> {
    let model = f.get("tokenizer.ggml.model").and_then(Value::as_str).unwrap_or("");
    if model != "gpt2" {
        return Err(EngineError::Tokenizer(format!("unsupported tokenizer model {model:?}")));
    }
    let tokens = str_array(f, "tokenizer.ggml.tokens")?;
    let merges = str_array(f, "tokenizer.ggml.merges")?;
    let types: Vec<i64> = match f.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(a) => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    let id = |k: &str| f.get(k).and_then(Value::as_u64).map(|v| v as u32);
    let add_bos = f.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(false);
    let pre = PreTokenizer::from_gguf_name(f.get("tokenizer.ggml.pre").and_then(Value::as_str))?;
    Ok(Tokenizer::new(
        tokens,
        &merges,
        &types,
        id("tokenizer.ggml.bos_token_id"),
        id("tokenizer.ggml.eos_token_id"),
        add_bos,
    )?
    .with_pre_tokenizer(pre))
}
