//! The OpenAI request bounds, one by one and as a property: a body that
//! breaks any bound is a 400 in OpenAI's shape naming the field, never a
//! panic and never a request sent on.

#![allow(clippy::unwrap_used)]

use axum::response::IntoResponse;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::openai::fields::SAMPLING;
use crate::openai::types::{ChatCompletionRequest, CompletionRequest};
use crate::openai::{OpenAiBody, read_body};

fn tenant() -> TenantId {
    "acme".parse().unwrap()
}

fn chat_body(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn read<T: OpenAiBody>(
    body: Value,
    convert: fn(&TenantId, &str, &T) -> Result<Call, OpenAiError>,
) -> Result<Call, OpenAiError> {
    convert(&tenant(), "req-1", &read_body::<T>(body)?)
}

fn chat_of(body: Value) -> Result<Call, OpenAiError> {
    read::<ChatCompletionRequest>(body, chat)
}

fn completion_of(body: Value) -> Result<Call, OpenAiError> {
    read::<CompletionRequest>(body, completion)
}

/// The refusal's status and its JSON body, checked to be OpenAI's shape.
fn refusal(result: Result<Call, OpenAiError>) -> (u16, Value) {
    let e = result.expect_err("refused");
    let status = e.status.as_u16();
    let response = e.into_response();
    let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(response.into_body(), 1 << 20))
        .expect("a ready body")
        .expect("bytes");
    let body: Value = serde_json::from_slice(&body).expect("a JSON error body");
    let error = &body["error"];
    assert!(error["message"].is_string() && error["type"].is_string(), "{body}");
    assert!(error.get("param").is_some() && error.get("code").is_some(), "{body}");
    (status, body)
}

fn param(body: &Value) -> &str {
    body["error"]["param"].as_str().unwrap_or("")
}

#[test]
fn the_new_sampling_fields_reach_the_scheduler() {
    let call = chat_of(chat_body(json!({
        "logit_bias": {"5": -100, "17": 3.5}, "presence_penalty": 0.5, "frequency_penalty": -1.0,
        "logprobs": true, "top_logprobs": 3, "n": 3, "seed": 7,
    })))
    .unwrap();
    let p = call.request.params.clone().unwrap();
    assert_eq!(
        p.logit_bias,
        vec![pb::TokenBias { token_id: 17, bias: 3.5 }, pb::TokenBias { token_id: 5, bias: -100.0 }]
    );
    assert_eq!((p.presence_penalty, p.frequency_penalty, p.logprobs, p.top_logprobs), (0.5, -1.0, true, 3));
    assert_eq!(call.choices, 3);
    // Each choice is its own request, with its own id and seed; choice 0 keeps the seed as sent.
    let choices: Vec<pb::CompleteRequest> = (0..3).map(|i| call.choice(i)).collect();
    assert_eq!(choices.iter().map(|c| c.request_id.as_str()).collect::<Vec<_>>(), ["req-1-0", "req-1-1", "req-1-2"]);
    let seeds: Vec<u64> = choices.iter().map(|c| c.params.as_ref().unwrap().seed).collect();
    assert_eq!(seeds[0], 7);
    assert!(seeds[1] != seeds[0] && seeds[2] != seeds[1]);
    assert_eq!(
        call.choice(1).params,
        chat_of(chat_body(json!({"seed": 7, "n": 3, "logit_bias": {"5": -100, "17": 3.5},
        "presence_penalty": 0.5, "frequency_penalty": -1.0, "logprobs": true, "top_logprobs": 3})))
        .unwrap()
        .choice(1)
        .params,
        "derived seeds are reproducible"
    );
    // One choice keeps the request id as it is.
    assert_eq!(chat_of(chat_body(json!({}))).unwrap().choice(0).request_id, "req-1");
    // Legacy logprobs is a count of alternatives.
    let call = completion_of(json!({"model": "m", "prompt": "p", "logprobs": 2})).unwrap();
    let p = call.request.params.unwrap();
    assert_eq!((p.logprobs, p.top_logprobs), (true, 2));
}

#[test]
fn each_bound_names_its_field() {
    let long_stop = "s".repeat(STOP_SEQUENCE_BYTES_MAX + 1);
    let many_biases: serde_json::Map<String, Value> =
        (0..=LOGIT_BIAS_ENTRIES_COUNT_MAX).map(|i| (i.to_string(), json!(1))).collect();
    let messages: Vec<Value> = (0..=MESSAGES_COUNT_MAX).map(|_| json!({"role": "user", "content": "x"})).collect();
    let big = "x".repeat(PROMPT_BYTES_MAX);
    let cases = [
        (json!({"n": 0}), "n"),
        (json!({"n": CHOICES_COUNT_MAX + 1}), "n"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"stop": long_stop}), "stop"),
        (json!({"stop": [""]}), "stop"),
        (json!({"logit_bias": many_biases}), "logit_bias"),
        (json!({"logit_bias": {"abc": 1}}), "logit_bias"),
        (json!({"logit_bias": {"-1": 1}}), "logit_bias"),
        (json!({"logit_bias": {"007": 1}}), "logit_bias"),
        (json!({"logit_bias": {"1": 100.5}}), "logit_bias"),
        (json!({"presence_penalty": 2.01}), "presence_penalty"),
        (json!({"frequency_penalty": -3}), "frequency_penalty"),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (json!({"logprobs": true, "top_logprobs": 21}), "top_logprobs"),
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"stream_options": {"include_usage": true}}), "stream_options"),
        (json!({"messages": messages}), "messages"),
        (json!({"messages": [{"role": "user", "content": big}]}), "messages"),
        (json!({"tools": [{"type": "function", "function": {"name": "f"}}]}), "tools"),
        (json!({"response_format": {"type": "json_schema"}}), "response_format"),
        (json!({"bogus": 1}), "bogus"),
    ];
    for (extra, field) in cases {
        let (status, body) = refusal(chat_of(chat_body(extra.clone())));
        assert_eq!((status, param(&body)), (400, field), "{extra}: {body}");
    }
    let (status, body) = refusal(completion_of(json!({"model": "m", "prompt": "p", "logprobs": 6})));
    assert_eq!((status, param(&body)), (400, "logprobs"));
    let (_, body) = refusal(completion_of(json!({"model": "m", "prompt": "x".repeat(PROMPT_BYTES_MAX + 1)})));
    assert_eq!((param(&body), body["error"]["code"].as_str()), ("prompt", Some("string_above_max_length")));
    let (_, body) = refusal(completion_of(json!({"model": "m", "prompt": "p", "echo": true})));
    assert_eq!((param(&body), body["error"]["code"].as_str()), ("echo", Some("unsupported_parameter")));
}

/// One body that breaks exactly one bound, and the field it names.
fn violation() -> impl Strategy<Value = (Value, String)> {
    let n = prop_oneof![Just(0u32), (CHOICES_COUNT_MAX + 1)..u32::MAX].prop_map(|n| (json!({"n": n}), "n".to_string()));
    let stops = (STOP_SEQUENCES_COUNT_MAX + 1..12).prop_map(|k| (json!({"stop": vec!["s"; k]}), "stop".to_string()));
    let stop_len =
        (STOP_SEQUENCE_BYTES_MAX + 1..1024).prop_map(|k| (json!({"stop": "s".repeat(k)}), "stop".to_string()));
    let bias_value = (any::<u32>(), prop_oneof![100.001f32..1e30, -1e30f32..-100.001])
        .prop_map(|(t, b)| (json!({"logit_bias": {t.to_string(): b}}), "logit_bias".to_string()));
    let bias_key = "[a-z -]{1,8}".prop_map(|k| (json!({"logit_bias": {k: 1}}), "logit_bias".to_string()));
    let bias_count = (LOGIT_BIAS_ENTRIES_COUNT_MAX + 1..600).prop_map(|k| {
        let map: serde_json::Map<String, Value> = (0..k).map(|i| (i.to_string(), json!(0))).collect();
        (json!({"logit_bias": map}), "logit_bias".to_string())
    });
    let penalty =
        (prop_oneof![Just("presence_penalty"), Just("frequency_penalty")], prop_oneof![2.001f32..1e9, -1e9f32..-2.001])
            .prop_map(|(field, v)| (json!({field: v}), field.to_string()));
    let top = (TOP_LOGPROBS_COUNT_MAX + 1..1000)
        .prop_map(|k| (json!({"logprobs": true, "top_logprobs": k}), "top_logprobs".to_string()));
    let top_alone = (1..=TOP_LOGPROBS_COUNT_MAX).prop_map(|k| (json!({"top_logprobs": k}), "top_logprobs".to_string()));
    let unsupported = prop_oneof![
        Just("tools"),
        Just("tool_choice"),
        Just("functions"),
        Just("function_call"),
        Just("audio"),
        Just("modalities"),
        Just("prediction"),
        Just("parallel_tool_calls"),
        Just("response_format"),
    ]
    .prop_map(|f| (json!({f: {"type": "json_object"}}), f.to_string()));
    let unknown = "[a-z_]{3,12}"
        .prop_filter("not a field", |k| {
            !["model", "messages"].contains(&k.as_str())
                && read_body::<ChatCompletionRequest>(chat_body(json!({k.clone(): null}))).is_err()
        })
        .prop_map(|k| (json!({k.clone(): 1}), k));
    let messages = (MESSAGES_COUNT_MAX + 1..MESSAGES_COUNT_MAX + 50)
        .prop_map(|k| (json!({"messages": vec![json!({"role": "user", "content": "x"}); k]}), "messages".to_string()));
    let prompt_bytes = (PROMPT_BYTES_MAX + 1 - 4..PROMPT_BYTES_MAX + 4096)
        .prop_map(|k| (json!({"messages": [{"role": "user", "content": "y".repeat(k)}]}), "messages".to_string()));
    prop_oneof![
        n,
        stops,
        stop_len,
        bias_value,
        bias_key,
        bias_count,
        penalty,
        top,
        top_alone,
        unsupported,
        unknown,
        messages,
        prompt_bytes
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn any_violation_is_a_400_naming_its_field((extra, field) in violation()) {
        let (status, body) = refusal(chat_of(chat_body(extra)));
        prop_assert_eq!(status, 400);
        prop_assert_eq!(param(&body), field.as_str());
    }
}

/// Values of every JSON type, flat or one level deep.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        proptest::collection::vec(".{0,6}", 0..5).prop_map(|v| json!(v)),
        proptest::collection::btree_map("[0-9]{1,3}|[a-z]{1,3}", -200f64..200.0, 0..5).prop_map(|m| json!(m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Any value in any field: accepted, or refused with a 400 in OpenAI's
    /// shape; never a panic.
    #[test]
    fn any_field_value_is_accepted_or_a_400(
        field in proptest::sample::select(SAMPLING.iter().chain(["messages", "prompt", "top_logprobs"].iter()).copied().collect::<Vec<_>>()),
        value in json_value(),
        legacy in any::<bool>(),
    ) {
        let result = if legacy {
            completion_of(json!({"model": "m", "prompt": "p", field: value}))
        } else {
            chat_of(chat_body(json!({field: value})))
        };
        if result.is_err() {
            let (status, _) = refusal(result);
            prop_assert_eq!(status, 400);
        }
    }
}
