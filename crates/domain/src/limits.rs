//! Bounds on everything a caller sends, in one place: the gateway refuses a
//! request beyond them (400, or 413 for a body over its byte limit) before
//! any other service sees it, and the scheduler and the worker check the
//! same constants again at their own edges, so a caller that reaches them
//! directly cannot ask for more. Each name ends in its unit.

use crate::DomainError;

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
/// larger bodies with 413 and what gets through with 400. Raise it with the
/// largest context served.
pub const PROMPT_BYTES_MAX: usize = 128 * 1024;

/// Most chat messages in one request: a context of 8192 tokens cannot hold
/// more turns than this (each costs a few template tokens), and the bound
/// keeps per-message work fixed.
pub const MESSAGES_COUNT_MAX: usize = 2048;

/// Most stop sequences one request may give (OpenAI's bound).
pub const STOP_SEQUENCES_COUNT_MAX: usize = 4;

/// Longest stop sequence: every generated token is searched for each.
pub const STOP_SEQUENCE_BYTES_MAX: usize = 256;

/// Most choices (`n`) one request may ask for: each is its own sequence in
/// the scheduler and on a worker, so `n` multiplies the work of one request.
pub const CHOICES_COUNT_MAX: u32 = 8;

/// Most `logit_bias` entries (OpenAI's bound): each is applied to every
/// sampled token.
pub const LOGIT_BIAS_ENTRIES_COUNT_MAX: usize = 300;

/// A `logit_bias` value lies in [-this, this] (OpenAI's range; -100 bans a
/// token, 100 forces it).
pub const LOGIT_BIAS_ABS_MAX: f32 = 100.0;

/// `presence_penalty` and `frequency_penalty` lie in [-this, this] (OpenAI's range).
pub const PENALTY_ABS_MAX: f32 = 2.0;

/// Most alternatives reported per generated token (`top_logprobs`, OpenAI's bound).
pub const TOP_LOGPROBS_COUNT_MAX: u32 = 20;

/// Most alternatives per token on the legacy `/v1/completions` route
/// (`logprobs` there is a count; OpenAI's bound).
pub const LEGACY_LOGPROBS_COUNT_MAX: u32 = 5;

/// Longest request id (usage is recorded under it; the column is bounded).
pub const REQUEST_ID_BYTES_MAX: usize = 128;

/// Longest `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 255;

/// One rule for opaque ids that cross the platform (request ids, idempotency
/// keys): 1 to `max_len` printable ASCII characters, no spaces, no control
/// characters (a NUL would be refused by PostgreSQL, a newline would forge log
/// lines).
pub fn is_printable_id(s: &str, max_len: usize) -> bool {
    !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_graphic())
}

fn check_printable(what: &'static str, s: &str, max_len: usize) -> Result<(), DomainError> {
    if is_printable_id(s, max_len) {
        return Ok(());
    }
    let reason = format!("must be 1 to {max_len} visible ASCII characters (no spaces or control characters)");
    Err(DomainError::invalid(what, reason))
}

/// A request id: printable ASCII, at most `REQUEST_ID_BYTES_MAX` bytes.
pub fn check_request_id(id: &str) -> Result<(), DomainError> {
    check_printable("request id", id, REQUEST_ID_BYTES_MAX)
}

/// An `Idempotency-Key`, by the one rule the gateway (at the header) and the
/// contracts service (at its gRPC edge) both apply: printable ASCII, at most
/// `IDEMPOTENCY_KEY_BYTES_MAX` bytes.
pub fn check_idempotency_key(key: &str) -> Result<(), DomainError> {
    check_printable("Idempotency-Key", key, IDEMPOTENCY_KEY_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ids_are_visible_ascii_within_their_length() {
        assert!(check_idempotency_key("first-try").is_ok());
        assert!(check_idempotency_key(&"k".repeat(IDEMPOTENCY_KEY_BYTES_MAX)).is_ok());
        assert!(check_idempotency_key(&"k".repeat(IDEMPOTENCY_KEY_BYTES_MAX + 1)).is_err());
        for bad in ["", "a b", "nul\0", "line\nbreak", "tab\t", "é", "\u{7f}"] {
            assert!(check_idempotency_key(bad).is_err(), "{bad:?}");
            assert!(check_request_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_request_id(&"r".repeat(REQUEST_ID_BYTES_MAX)).is_ok());
        assert!(check_request_id(&"r".repeat(REQUEST_ID_BYTES_MAX + 1)).is_err());
        let message = check_idempotency_key("").expect_err("empty").to_string();
        assert!(message.contains("Idempotency-Key") && message.contains("255"), "{message}");
    }

    proptest! {
        #[test]
        fn a_key_passes_exactly_when_every_byte_is_visible_ascii(key in ".{0,300}") {
            let visible = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
            let expected = visible && !key.is_empty() && key.len() <= IDEMPOTENCY_KEY_BYTES_MAX;
            prop_assert_eq!(check_idempotency_key(&key).is_ok(), expected);
        }
    }
}
