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

/// Most bytes of text one request may have tokenized (see the domain's
/// `limits`, where every input bound lives).
pub use reservoir_domain::limits::PROMPT_BYTES_MAX;
