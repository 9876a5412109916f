//! Token logprobs in OpenAI's two shapes: chat completions' `content` list
//! of `{token, logprob, bytes, top_logprobs}`, and legacy completions'
//! parallel lists (`tokens`, `token_logprobs`, `top_logprobs` as maps,
//! `text_offset`). A token's text is its own bytes (sent by the worker),
//! read as UTF-8 with replacement: a token may hold part of a character,
//! which `bytes` keeps exactly.

use std::collections::BTreeMap;

use reservoir_proto::v1 as pb;
use serde_json::Value;

use super::respond::Kind;
use super::types::{LegacyLogprobs, Logprobs, TokenLogprob, TopLogprob};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One choice's logprobs, gathered token by token; `take` hands over what
/// was gathered since the last `take` (a chunk's worth when streaming, the
/// whole when not).
pub struct Collector {
    kind: Kind,
    chat: Logprobs,
    legacy: LegacyLogprobs,
    /// Characters of the choice's text before the next token (legacy `text_offset`).
    offset_chars: u32,
}

impl Collector {
    pub fn new(kind: Kind) -> Self {
        Collector { kind, chat: Logprobs::default(), legacy: LegacyLogprobs::default(), offset_chars: 0 }
    }

    /// Adds a generated token; one without a logprob (none was asked for) adds nothing.
    pub fn push(&mut self, t: &pb::TokenEvent) {
        let Some(logprob) = t.logprob else { return };
        let token = text(&t.token_bytes);
        match self.kind {
            Kind::Chat => {
                let top_logprobs = t
                    .top_logprobs
                    .iter()
                    .map(|a| TopLogprob {
                        token: text(&a.token_bytes),
                        logprob: a.logprob,
                        bytes: a.token_bytes.clone(),
                    })
                    .collect();
                self.chat.content.push(TokenLogprob { token, logprob, bytes: t.token_bytes.clone(), top_logprobs });
            }
            Kind::Text => {
                let top: BTreeMap<String, f32> =
                    t.top_logprobs.iter().map(|a| (text(&a.token_bytes), a.logprob)).collect();
                self.legacy.text_offset.push(self.offset_chars);
                let chars = u32::try_from(token.chars().count()).unwrap_or(u32::MAX);
                self.offset_chars = self.offset_chars.saturating_add(chars);
                self.legacy.tokens.push(token);
                self.legacy.token_logprobs.push(logprob);
                self.legacy.top_logprobs.push(top);
            }
        }
    }

    /// What was gathered since the last call, in the route's shape.
    pub fn take(&mut self) -> Value {
        let value = match self.kind {
            Kind::Chat => serde_json::to_value(std::mem::take(&mut self.chat)),
            Kind::Text => serde_json::to_value(std::mem::take(&mut self.legacy)),
        };
        // These types always serialize (their floats are the model's finite
        // logprobs; a non-finite one would be written as null).
        value.unwrap_or(Value::Null)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn token(bytes: &[u8], logprob: f32, top: &[(&[u8], f32)]) -> pb::TokenEvent {
        pb::TokenEvent {
            token_id: 1,
            text: String::new(),
            logprob: Some(logprob),
            token_bytes: bytes.to_vec(),
            top_logprobs: top
                .iter()
                .map(|(b, lp)| pb::TopLogprob { token_id: 2, token_bytes: b.to_vec(), logprob: *lp })
                .collect(),
        }
    }

    #[test]
    fn chat_entries_carry_bytes_and_alternatives() {
        let mut c = Collector::new(Kind::Chat);
        c.push(&token(b"Hi", -0.5, &[(b"Hi", -0.5), (b"Yo", -1.5)]));
        c.push(&pb::TokenEvent::default()); // no logprob asked: nothing
        let v = c.take();
        assert_eq!(
            v,
            json!({"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": [
                {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]},
                {"token": "Yo", "logprob": -1.5, "bytes": [89, 111]}]}]})
        );
        assert_eq!(c.take(), json!({"content": []}), "taken once");
    }

    #[test]
    fn legacy_lists_keep_offsets_across_takes() {
        let mut c = Collector::new(Kind::Text);
        c.push(&token("hé".as_bytes(), -0.25, &[("hé".as_bytes(), -0.25)]));
        let first = c.take();
        assert_eq!(first["text_offset"], json!([0]));
        assert_eq!(first["top_logprobs"], json!([{"hé": -0.25}]));
        // Half a character reads as the replacement character.
        c.push(&token(&[0xe2, 0x82], -1.0, &[]));
        c.push(&token(b"x", -2.0, &[]));
        let second = c.take();
        assert_eq!(second["tokens"], json!(["\u{fffd}", "x"]));
        assert_eq!(second["text_offset"], json!([2, 3]));
        assert_eq!(second["token_logprobs"], json!([-1.0, -2.0]));
    }
}
