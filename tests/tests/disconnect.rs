//! A client that goes away mid-stream is metered for what ran: the prompt
//! the worker processed and the tokens it generated. No free prefill, and
//! no work for a client that has left.

use reservoir_tests::{MIGRATOR, MODEL, Options, Platform};
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_client_that_disconnects_pays_for_its_prompt(pool: PgPool) {
    let p = Platform::start_with(pool.clone(), Options { workers: 1, ..Options::default() }).await;
    let token = p.tenant_token("acme");
    let prompt = "tell me everything you know about the sea and the ships on it";
    let ask = |stream: bool, max_tokens: u32| json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream});
    // The prompt's size as the worker counts it.
    let whole: Value = p
        .http
        .post(p.url("/v1/completions"))
        .bearer_auth(&token)
        .json(&ask(false, 1))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let prompt_tokens = whole["usage"]["prompt_tokens"].as_i64().expect("prompt tokens");
    assert!(prompt_tokens > 20, "{whole}");

    // A long generation; the client reads its first token and goes away.
    let max_tokens = 440;
    let mut response = p
        .http
        .post(p.url("/v1/completions"))
        .bearer_auth(&token)
        .json(&ask(true, max_tokens))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let request_id = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let first = response.chunk().await.expect("a chunk").expect("not the end");
    assert!(String::from_utf8_lossy(&first).contains("data: "), "a token arrived");
    drop(response);

    let row: (String, i32, i32, rust_decimal::Decimal) = reservoir_tests::recorded(
        &pool,
        "SELECT outcome, prompt_tokens, completion_tokens, weighted_tokens FROM metering.usage_records WHERE request_id = $1",
        &request_id,
    )
    .await;
    let (outcome, prompt, completion, weighted) = row;
    assert_eq!(outcome, "client_cancelled");
    assert_eq!(i64::from(prompt), prompt_tokens, "the processed prompt is metered");
    assert!(completion >= 1 && completion < i32::try_from(max_tokens).expect("fits"), "{completion}");
    // Default weights: 0.25 per prompt token, 1 per generated one.
    let expected =
        rust_decimal::Decimal::from(prompt) / rust_decimal::Decimal::from(4) + rust_decimal::Decimal::from(completion);
    assert_eq!(weighted, expected, "charged for what ran");
}

/// A client that leaves after the stream has begun but before the first
/// token (its prompt still being prefilled) ends the generation there: the
/// rest of the prompt is not computed for nobody, and no token is.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_client_that_leaves_before_its_first_token_stops_its_prefill(pool: PgPool) {
    // A model big enough that this prompt's prefill takes a good while
    // (a second or more here), against the milliseconds a cancel takes.
    let worker_model = reservoir_engine::test_support::TinySpec {
        n_layers: 8,
        n_heads: 8,
        n_kv_heads: 2,
        head_dim: 64,
        ffn_dim: 2048,
        ctx_len: 2048,
        ..Default::default()
    };
    let p = Platform::start_with(pool.clone(), Options { workers: 1, worker_model, ..Options::default() }).await;
    let token = p.tenant_token("acme");
    let prompt: String = (0..1500).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let response = p
        .http
        .post(p.url("/v1/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": MODEL, "prompt": prompt, "max_tokens": 8, "temperature": 0, "stream": true}))
        .send()
        .await
        .expect("sent");
    // The headers come once a worker has the request: its prefill runs now.
    assert_eq!(response.status().as_u16(), 200);
    let request_id = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    drop(response);

    let (outcome, prompt_tokens, completion): (String, i32, i32) = reservoir_tests::recorded(
        &pool,
        "SELECT outcome, prompt_tokens, completion_tokens FROM metering.usage_records WHERE request_id = $1",
        &request_id,
    )
    .await;
    assert_eq!(outcome, "client_cancelled");
    assert_eq!(completion, 0, "no token was generated for a client that had left");
    assert!(prompt_tokens < 1500, "the prefill stopped part way: {prompt_tokens} prompt tokens computed");
}
