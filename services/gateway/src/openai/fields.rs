//! Which fields an OpenAI request body may hold, checked before the body is
//! read into its type, so that nothing a client asks for is silently
//! ignored:
//! - the fields each route serves (`CHAT`, `COMPLETION`);
//! - `user`, `safety_identifier` and `prompt_cache_key`: hints to OpenAI's
//!   own operations (abuse monitoring, cache routing) that change no output,
//!   accepted and ignored when they are strings of at most
//!   `HINT_BYTES_MAX` bytes;
//! - OpenAI fields this platform does not serve (`UNSUPPORTED`): 400 with
//!   `code: "unsupported_parameter"` and `param` naming the field, unless
//!   the value asks for nothing (null, or the field's no-op value such as
//!   `response_format: {"type": "text"}` or `echo: false`);
//! - any other field: 400 with `code: "unknown_parameter"`, as OpenAI
//!   answers a field it does not know ("Unrecognized request argument").

use serde_json::{Map, Value, json};

use super::error::OpenAiError;

/// Fields both routes serve.
pub(super) const SAMPLING: &[&str] = &[
    "model",
    "logprobs",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "n",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "stream",
    "stream_options",
    "service_tier",
    "user",
];

/// Fields only `/v1/chat/completions` serves.
const CHAT: &[&str] = &["messages", "top_logprobs", "max_completion_tokens"];

/// Fields only `/v1/completions` serves (its `logprobs` is a count).
const COMPLETION: &[&str] = &["prompt"];

/// Hints that change no output; `user` is in both route lists for its type.
const HINTS: &[&str] = &["safety_identifier", "prompt_cache_key"];

/// Longest hint (`user` included) accepted.
pub const HINT_BYTES_MAX: usize = 256;

/// OpenAI fields not served here, with the value that asks for nothing
/// (`None`: only null does).
fn unsupported(field: &str) -> Option<Option<Value>> {
    Some(match field {
        "response_format" => Some(json!({"type": "text"})),
        "echo" => Some(json!(false)),
        "best_of" => Some(json!(1)),
        "suffix" => Some(json!("")),
        "store" => Some(json!(false)),
        "tools"
        | "tool_choice"
        | "parallel_tool_calls"
        | "functions"
        | "function_call"
        | "audio"
        | "modalities"
        | "prediction"
        | "reasoning_effort"
        | "web_search_options"
        | "metadata"
        | "verbosity" => None,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Chat,
    Completion,
}

/// Refuses a body with a field the route does not serve (see the module
/// comment); a body that is not an object is left to the type's own error.
pub fn check(route: Route, body: &Map<String, Value>) -> Result<(), OpenAiError> {
    let own = match route {
        Route::Chat => CHAT,
        Route::Completion => COMPLETION,
    };
    for (name, value) in body {
        if SAMPLING.contains(&name.as_str()) || own.contains(&name.as_str()) {
            if name == "user" {
                hint(name, value)?;
            }
            continue;
        }
        if HINTS.contains(&name.as_str()) {
            hint(name, value)?;
            continue;
        }
        match unsupported(name) {
            Some(no_op) => {
                if !value.is_null() && no_op.as_ref() != Some(value) {
                    return Err(OpenAiError::unsupported(name));
                }
            }
            None => return Err(OpenAiError::unknown(name)),
        }
    }
    Ok(())
}

fn hint(name: &str, value: &Value) -> Result<(), OpenAiError> {
    match value {
        Value::Null => Ok(()),
        Value::String(s) if s.len() <= HINT_BYTES_MAX => Ok(()),
        _ => {
            Err(OpenAiError::invalid_param(name, format!("{name} must be a string of at most {HINT_BYTES_MAX} bytes")))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn refusal(route: Route, v: Value) -> (Option<&'static str>, Option<String>) {
        let e = check(route, &body(v)).expect_err("refused");
        assert_eq!(e.status.as_u16(), 400);
        (e.code, e.param)
    }

    #[test]
    fn served_fields_and_no_op_values_pass() {
        let ok = json!({"model": "m", "messages": [], "logit_bias": {"1": 2}, "n": 2, "user": "u-1",
            "response_format": {"type": "text"}, "tools": null, "store": false, "safety_identifier": "x"});
        assert!(check(Route::Chat, &body(ok)).is_ok());
        let ok = json!({"model": "m", "prompt": "p", "logprobs": 2, "echo": false, "best_of": 1, "suffix": ""});
        assert!(check(Route::Completion, &body(ok)).is_ok());
    }

    #[test]
    fn unsupported_fields_are_named() {
        for (field, value) in [
            ("response_format", json!({"type": "json_object"})),
            ("tools", json!([{"type": "function"}])),
            ("tool_choice", json!("auto")),
            ("functions", json!([])),
            ("function_call", json!("auto")),
            ("audio", json!({"voice": "alloy"})),
            ("modalities", json!(["text"])),
            ("prediction", json!({"type": "content"})),
            ("echo", json!(true)),
            ("store", json!(true)),
        ] {
            let (code, param) = refusal(Route::Chat, json!({"model": "m", field: value}));
            assert_eq!((code, param.as_deref()), (Some("unsupported_parameter"), Some(field)));
        }
    }

    #[test]
    fn unknown_fields_and_route_mismatches_are_refused() {
        let (code, param) = refusal(Route::Chat, json!({"model": "m", "colour": "red"}));
        assert_eq!((code, param.as_deref()), (Some("unknown_parameter"), Some("colour")));
        // A field of the other route is unknown here.
        let (code, param) = refusal(Route::Chat, json!({"model": "m", "prompt": "p"}));
        assert_eq!((code, param.as_deref()), (Some("unknown_parameter"), Some("prompt")));
        let (code, param) = refusal(Route::Completion, json!({"model": "m", "top_logprobs": 2}));
        assert_eq!((code, param.as_deref()), (Some("unknown_parameter"), Some("top_logprobs")));
        let (_, param) = refusal(Route::Chat, json!({"model": "m", "user": "u".repeat(257)}));
        assert_eq!(param.as_deref(), Some("user"));
        let (_, param) = refusal(Route::Chat, json!({"model": "m", "prompt_cache_key": 5}));
        assert_eq!(param.as_deref(), Some("prompt_cache_key"));
    }
}
