//! Tenants attacking the platform through the gateway's OpenAI API.
//!
//! Prompts built to cost CPU are answered at once with 413 (over the body
//! limit) or 400 (over the scheduler's cap on tokenized bytes), and a small
//! request sent beside them streams as usual. The prefix cache does not tell
//! one tenant what another sent.

use reservoir_tests::{MIGRATOR, MODEL, Options, Platform};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The scheduler's cap (`reservoir_tokenizer::PROMPT_BYTES_MAX`), below the
/// gateway's default body limit of 256 KiB.
const PROMPT_BYTES_MAX: usize = 128 * 1024;

async fn post(p: &Platform, path: &str, token: &str, body: Value) -> (u16, String) {
    let response = p.http.post(p.url(path)).bearer_auth(token).json(&body).send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn long_prompts_without_spaces_are_refused_and_do_not_hold_up_others(pool: PgPool) {
    let p = Platform::start_with(pool, Options { workers: 1, ..Options::default() }).await;
    let token = p.tenant_token("acme");
    let letters = |n: usize| "a".repeat(n);
    let huge = json!({"model": MODEL, "prompt": letters(256 * 1024), "max_tokens": 4});
    // Through the gateway's body limit, but over the prompt cap (which the
    // gateway checks first, and the scheduler again behind it).
    let over_cap = json!({"model": MODEL, "prompt": letters(PROMPT_BYTES_MAX + 1), "max_tokens": 4});
    let over_cap_chat = json!({
        "model": MODEL, "max_tokens": 4,
        "messages": [{"role": "system", "content": letters(PROMPT_BYTES_MAX / 2)}, {"role": "user", "content": letters(PROMPT_BYTES_MAX / 2)}],
    });
    let small = json!({
        "model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "stream": true,
    });
    let (huge, over_cap, over_cap_chat, small) = tokio::join!(
        post(&p, "/v1/completions", &token, huge),
        post(&p, "/v1/completions", &token, over_cap),
        post(&p, "/v1/chat/completions", &token, over_cap_chat),
        post(&p, "/v1/chat/completions", &token, small),
    );
    assert_eq!(huge.0, 413, "{}", huge.1);
    assert_eq!(over_cap.0, 400, "{}", over_cap.1);
    assert!(over_cap.1.contains(&format!("the prompt has {} bytes", PROMPT_BYTES_MAX + 1)), "{}", over_cap.1);
    assert_eq!(over_cap_chat.0, 400, "{}", over_cap_chat.1);
    assert!(over_cap_chat.1.contains("at most 131072 are accepted"), "{}", over_cap_chat.1);

    assert_eq!(small.0, 200, "{}", small.1);
    let chunks: Vec<Value> = small
        .1
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect();
    assert!(chunks.iter().any(|c| c["choices"][0]["delta"]["content"].is_string()), "a first token: {}", small.1);
    assert_eq!(chunks.last().map(|c| c["choices"][0]["finish_reason"].clone()), Some(json!("length")), "{}", small.1);
}

/// `cached_tokens` of a chat completion of `content` for `tenant`.
async fn cached_tokens(p: &Platform, tenant: &str, content: &str) -> u64 {
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 2});
    let (status, answer) = post(p, "/v1/chat/completions", &p.tenant_token(tenant), body).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).expect("json");
    answer["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().expect("cached_tokens")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_tenant_gets_no_cached_tokens_from_another_tenants_prompt(pool: PgPool) {
    let p = Platform::start_with(pool, Options { workers: 1, ..Options::default() }).await;
    let secret = "the merger with globex closes on friday at noon";
    assert_eq!(cached_tokens(&p, "acme", secret).await, 0);
    assert_eq!(cached_tokens(&p, "initech", secret).await, 0, "initech learns nothing of acme's prompt");
    assert!(cached_tokens(&p, "acme", secret).await > 0, "acme's own prompt again is cached");
}
