//! Bounds on every input, over real HTTP against the whole platform (a
//! worker on a tiny model behind the scheduler): thousands of generated
//! OpenAI bodies, each a valid request with one field replaced by an
//! awkward or out-of-bounds value, are answered 200 or a 4xx in OpenAI's
//! error shape, never a 5xx; thousands of `Idempotency-Key` headers are
//! accepted exactly when the domain's one rule accepts them, and refused
//! with a 400 JSON error otherwise.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use reservoir_domain::limits::{
    CHOICES_COUNT_MAX, LOGIT_BIAS_ENTRIES_COUNT_MAX, MESSAGES_COUNT_MAX, PROMPT_BYTES_MAX, STOP_SEQUENCE_BYTES_MAX,
    STOP_SEQUENCES_COUNT_MAX,
};
use reservoir_tests::{MIGRATOR, MODEL, Options, Platform, TINY_VOCAB, error_code};
use serde_json::{Map, Value, json};
use sqlx::PgPool;

/// Values at and beyond every bound, and of every JSON type.
fn edge_value() -> impl Strategy<Value = Value> {
    let many = |k: usize, item: Value| Value::Array(vec![item; k]);
    let biases = |k: usize| Value::Object((0..k).map(|i| (i.to_string(), json!(1))).collect::<Map<_, _>>());
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![Just(-1i64), Just(0), Just(1), Just(2), Just(21), Just(i64::from(CHOICES_COUNT_MAX) + 1)]
            .prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![Just(-2.5f64), Just(2.000_1), Just(100.5), Just(-1e300), Just(0.5)].prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
        Just(json!("nul \u{0} byte")),
        Just(json!("s".repeat(STOP_SEQUENCE_BYTES_MAX + 1))),
        Just(many(STOP_SEQUENCES_COUNT_MAX + 1, json!("x"))),
        Just(biases(LOGIT_BIAS_ENTRIES_COUNT_MAX + 1)),
        Just(json!({ TINY_VOCAB.to_string(): 1 })),
        Just(json!({"1": 101})),
        Just(json!({"type": "json_object"})),
        Just(many(MESSAGES_COUNT_MAX + 1, json!({"role": "user", "content": "x"}))),
        Just(json!([{"role": "user", "content": "y".repeat(PROMPT_BYTES_MAX)}])),
        Just(json!([{"role": "tool", "content": "x"}])),
        proptest::collection::btree_map("[a-z0-9]{0,4}", any::<i32>(), 0..4).prop_map(|m| json!(m)),
    ]
}

/// Fields with a bound first, then the rest served, then fields refused.
const CHAT_FIELDS: &[&str] = &[
    "messages",
    "n",
    "stop",
    "logit_bias",
    "top_logprobs",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "temperature",
    "top_p",
    "user",
    "seed",
    "logprobs",
    "service_tier",
    "stream",
    "stream_options",
    "response_format",
    "tools",
    "tool_choice",
    "audio",
    "colour",
];
const TEXT_FIELDS: &[&str] =
    &["prompt", "max_tokens", "n", "stop", "logit_bias", "logprobs", "echo", "suffix", "best_of", "seed", "colour"];

/// A small valid request (one token, so accepted ones cost little) with
/// one field replaced.
fn body() -> impl Strategy<Value = (&'static str, Value)> {
    let chat = (proptest::sample::select(CHAT_FIELDS), edge_value()).prop_map(|(field, value)| {
        let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1});
        body[field] = value;
        ("/v1/chat/completions", body)
    });
    let text = (proptest::sample::select(TEXT_FIELDS), edge_value()).prop_map(|(field, value)| {
        let mut body = json!({"model": MODEL, "prompt": "hi", "max_tokens": 1});
        body[field] = value;
        ("/v1/completions", body)
    });
    prop_oneof![3 => chat, 1 => text]
}

fn generate<T: std::fmt::Debug>(strategy: impl Strategy<Value = T>, cases: usize) -> Vec<T> {
    let mut runner = TestRunner::new(ProptestConfig { cases: cases as u32, ..ProptestConfig::default() });
    (0..cases).map(|_| strategy.new_tree(&mut runner).expect("value").current()).collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn openai_bodies_beyond_any_bound_get_4xx_json_never_5xx(pool: PgPool) {
    let p = Platform::start_with(pool, Options { workers: 1, ..Options::default() }).await;
    let token = p.tenant_token("fuzzer");
    let (mut refused, mut served) = (0, 0);
    for (path, body) in generate(body(), 2000) {
        let response = p.http.post(p.url(path)).bearer_auth(&token).json(&body).send().await.expect("sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert!(status < 500, "{path} {body} -> {status} {text}");
        if status == 200 {
            served += 1;
            continue;
        }
        refused += 1;
        assert!([400, 404, 413].contains(&status), "{path} {body} -> {status} {text}");
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON error: {text}"));
        let error = &answer["error"];
        assert!(error["message"].is_string() && error["type"].is_string(), "{answer}");
        assert!(error.get("param").is_some() && error.get("code").is_some(), "OpenAI's shape: {answer}");
    }
    // Both sides of every bound were reached.
    assert!(refused > 500 && served > 100, "refused {refused}, served {served}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn idempotency_keys_follow_the_one_domain_rule(pool: PgPool) {
    let p = Platform::start(pool).await;
    let token = p.tenant_token("keys");
    let body = json!({"model": MODEL, "rate": 1, "tier": "standard", "term": "hourly"});
    // Header values the HTTP client can send: visible ASCII, spaces, tabs,
    // and bytes beyond ASCII; long and empty ones.
    let keys = generate(
        proptest::collection::vec(
            prop_oneof![8 => 0x21u8..0x7f, 1 => Just(b' '), 1 => Just(b'\t'), 1 => 0x80u8..=0xff],
            0..300,
        ),
        1500,
    );
    for key in keys {
        let Ok(header) = reqwest::header::HeaderValue::from_bytes(&key) else { continue };
        let response = p
            .http
            .post(p.url("/v1/reservations"))
            .bearer_auth(&token)
            .header("Idempotency-Key", header)
            .json(&body)
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        // HTTP drops spaces and tabs around a header value on the way in.
        let seen = key.trim_ascii_start().trim_ascii_end();
        let valid = std::str::from_utf8(seen).is_ok_and(|k| reservoir_domain::check_idempotency_key(k).is_ok());
        if valid {
            // Accepted (or the pool is full: a capacity conflict, still not the key's fault).
            assert!(
                status == 201 || (status == 409 && error_code(&answer) == "conflict"),
                "{key:?} -> {status} {answer}"
            );
        } else {
            assert_eq!((status, error_code(&answer)), (400, "bad_request"), "{key:?}: {answer}");
        }
    }
}
