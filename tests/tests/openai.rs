//! The OpenAI-compatible API over real HTTP, the real scheduler and real
//! workers (tiny seeded models); and OpenAI's own Python client against it.

use reservoir_tests::{MIGRATOR, MODEL, Options, Platform};
use serde_json::{Value, json};
use sqlx::PgPool;

async fn platform(pool: PgPool) -> Platform {
    Platform::start_with(pool, Options { workers: 1, ..Options::default() }).await
}

async fn post(p: &Platform, path: &str, token: &str, body: Value) -> reqwest::Response {
    p.http.post(p.url(path)).bearer_auth(token).json(&body).send().await.expect("sent")
}

fn openai_error(body: &Value) -> (&str, &str) {
    let e = &body["error"];
    assert!(e["message"].is_string(), "{body}");
    (e["type"].as_str().unwrap_or(""), e["code"].as_str().unwrap_or(""))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn chat_completions_answer_in_openais_shape(pool: PgPool) {
    let p = platform(pool).await;
    let token = p.tenant_token("acme");
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0, "logprobs": true});
    let response = post(&p, "/v1/chat/completions", &token, body.clone()).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-reservoir-class"], "spot");
    assert_eq!(response.headers()["x-reservoir-worker"], "worker-0");
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["service_tier"], "spot");
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 8);
    assert_eq!(answer["choices"][0]["logprobs"]["content"].as_array().map(Vec::len), Some(8));
    let text = answer["choices"][0]["message"]["content"].as_str().expect("content").to_owned();

    // Streamed: the same text in chunks, the usage chunk, then [DONE].
    let streamed = post(
        &p,
        "/v1/chat/completions",
        &token,
        json!({
        "model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0,
        "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(streamed.status().as_u16(), 200);
    assert!(streamed.headers()["content-type"].to_str().unwrap_or("").starts_with("text/event-stream"));
    let sse = streamed.text().await.expect("body");
    let data: Vec<&str> = sse.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{sse}");
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).expect("chunk json")).collect();
    let joined: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(joined, text, "streamed and whole answers agree (greedy)");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 8);

    let completion =
        post(&p, "/v1/completions", &token, json!({"model": MODEL, "prompt": "abc", "max_tokens": 4})).await;
    assert_eq!(completion.status().as_u16(), 200);
    let completion: Value = completion.json().await.expect("json");
    assert_eq!(completion["object"], "text_completion");
    assert!(completion["choices"][0]["text"].is_string());

    let models: Value =
        p.http.get(p.url("/v1/models")).bearer_auth(&token).send().await.expect("sent").json().await.expect("json");
    assert_eq!(models["data"][0]["id"], MODEL);

    let metrics = p.http.get(p.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(
        metrics.contains(r#"reservoir_gateway_requests_total{route="/v1/chat/completions",status="200"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"reservoir_gateway_inference_requests_total{class="spot"} 3"#), "{metrics}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_requests_get_openai_style_errors(pool: PgPool) {
    let p = platform(pool).await;
    let token = p.tenant_token("acme");
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"model": "no-such-model", "messages": user}), 404, "model_not_found"),
        (json!({"model": MODEL, "messages": []}), 400, ""),
        (json!({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}), 400, ""),
        (json!({"model": MODEL, "messages": user, "max_tokens": 1_000_000}), 400, ""),
        (json!({"model": MODEL, "messages": user, "temperature": 7}), 400, ""),
        (json!({"model": MODEL, "messages": user, "n": 9}), 400, ""),
        (json!({"model": MODEL, "messages": user, "tools": []}), 400, "unsupported_parameter"),
        (json!({"model": MODEL, "messages": user, "colour": "red"}), 400, "unknown_parameter"),
        (json!({"model": MODEL, "messages": user, "service_tier": "gold"}), 400, ""),
        (json!({"model": MODEL, "messages": "hi"}), 400, ""),
        (json!({"messages": user}), 400, ""),
    ];
    for (body, status, code) in cases {
        let response = post(&p, "/v1/chat/completions", &token, body.clone()).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let answer: Value = response.json().await.expect("json");
        let (kind, got_code) = openai_error(&answer);
        assert!(!kind.is_empty(), "{answer}");
        if !code.is_empty() {
            assert_eq!(got_code, code, "{answer}");
        }
    }
    let malformed = p
        .http
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("sent");
    assert_eq!(malformed.status().as_u16(), 400);
    let huge = "x".repeat(300 * 1024);
    let oversized = post(
        &p,
        "/v1/chat/completions",
        &token,
        json!({"model": MODEL, "messages": [{"role": "user", "content": huge}]}),
    )
    .await;
    assert_eq!(oversized.status().as_u16(), 413);
    let no_key = p
        .http
        .post(p.url("/v1/chat/completions"))
        .json(&json!({"model": MODEL, "messages": user}))
        .send()
        .await
        .expect("sent");
    assert_eq!(no_key.status().as_u16(), 401);
    let answer: Value = no_key.json().await.expect("json");
    assert_eq!(openai_error(&answer), ("authentication_error", "invalid_api_key"));
}

/// Runs one of the Python scripts beside this crate with OpenAI's official
/// client, unchanged, against the gateway (`scripts/test` installs the
/// `openai` package).
async fn python_client(p: &Platform, script: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .env("OPENAI_BASE_URL", format!("{}/v1", p.gateway))
        .env("OPENAI_API_KEY", p.tenant_token("py-client"))
        .env("RESERVOIR_MODEL", MODEL)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{} failed:\n{stdout}\n{stderr}", script.display());
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_official_openai_python_client_works(pool: PgPool) {
    python_client(&platform(pool).await, "openai_client.py").await;
}

/// logit_bias, penalties, logprobs and top_logprobs, n, and the refused
/// fields, each through the official client (`openai_fields.py`).
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_official_client_drives_every_sampling_field(pool: PgPool) {
    python_client(&platform(pool).await, "openai_fields.py").await;
}
