//! Reservoir's tokenizer: GPT-2 style byte-level BPE built from a model's
//! vocabulary and merges, the chat template, and incremental detokenization.
//!
//! A crate of its own so that the control plane (the scheduler counts prompt
//! tokens at admission) links the tokenizer without the engine's SIMD
//! kernels. Pure: no I/O, no async; the engine reads the GGUF file and hands
//! the vocabulary over as plain vectors (`Tokenizer::new`, `TokenizerParts`).
//!
//! Hostile input is the normal case here, so every path is bounded:
//! - Merging a piece costs O(n log n) in its length (`bpe`: a heap of
//!   candidate merges over a linked list of symbols), whatever the text; a
//!   long run of letters without spaces is one piece and costs no more.
//! - Control tokens are found in one pass over the text (Aho-Corasick).
//! - Chat content and role names are encoded as plain text: only the
//!   template's own markers become control tokens (`chat`), and plain text
//!   can never encode to a control token.
//! - Callers cap the text before tokenizing (`PROMPT_BYTES_MAX`).

mod bpe;
pub mod chat;
pub mod error;
pub mod text;
pub mod tokenizer;

pub use chat::{ChatMessage, DEFAULT_SYSTEM_PROMPT, ROLES, chat_prompt};
pub use error::TokenizerError;
pub use text::{Piece, TextStream, find_stop};
pub use tokenizer::{PreTokenizer, Tokenizer, TokenizerParts};

/// Most bytes of text one request may have tokenized: a raw prompt, or its
/// chat messages' roles and contents together. The scheduler and the worker
/// refuse longer input before tokenizing it.
///
/// Why 128 KiB: the largest context served (SmolLM2, 8192 tokens) holds about
/// 41 KiB of English at ~5.1 bytes a token (the engine's `english.txt`), so
/// the bound refuses only text three times what a context holds (runs of
/// spaces, which merge 64 to a token, are the rare exception) while keeping
/// the work one request can ask of the tokenizer small and fixed. It is
/// below the gateway's default body limit (256 KiB): the gateway refuses
/// larger bodies with 413, the scheduler what gets through. Raise it with the
/// largest context served.
pub const PROMPT_BYTES_MAX: usize = 128 * 1024;
