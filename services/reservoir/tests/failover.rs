//! Failover without loss, as a user sees it: `reservoir up --workers 2` with
//! the real model; a worker process is killed with SIGKILL in the middle of
//! a streamed greedy chat completion; the client's stream equals an
//! undisturbed run and the request's usage is recorded once.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const MAX_TOKENS: u32 = 120;
const QUESTION: &str = "Tell me a long story about a brave dragon who learns to fly.";

mod support;

use support::{endpoints, model_path, spawn_up, with_database};

fn body(stream: bool) -> Value {
    json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": QUESTION}],
           "max_tokens": MAX_TOKENS, "temperature": 0, "stream": stream})
}

#[tokio::test]
async fn a_killed_worker_loses_no_token_and_usage_counts_once() {
    let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run the tests with ./scripts/test");
    let name = format!("failover_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create db");
    let state = std::env::temp_dir().join(&name);
    let model = model_path();
    assert!(model.exists(), "{} not found: run scripts/fetch-model (scripts/test does)", model.display());

    let (mut up, token) = spawn_up(&with_database(&admin_url, &name), &state, 2);
    let read_endpoints = || endpoints(&state);
    let gateway = read_endpoints()["gateway"].as_str().expect("gateway").to_owned();
    let http = reqwest::Client::new();

    // Workers load the model: wait until a completion goes through.
    let deadline = Instant::now() + Duration::from_secs(60);
    let undisturbed: Value = loop {
        let r = http
            .post(format!("{gateway}/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&body(false))
            .send()
            .await
            .expect("sent");
        if r.status().is_success() {
            break r.json().await.expect("json");
        }
        assert!(Instant::now() < deadline, "no completion within 60 s: {}", r.status());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let expected = undisturbed["choices"][0]["message"]["content"].as_str().expect("text").to_owned();
    assert_eq!(undisturbed["usage"]["completion_tokens"], MAX_TOKENS, "a long reply, so the kill lands mid-stream");

    let mut response = http
        .post(format!("{gateway}/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&body(true))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let worker = response.headers()["x-reservoir-worker"].to_str().expect("ascii").to_owned();
    let request_id = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let (mut buffer, mut streamed, mut pieces, mut killed) = (String::new(), String::new(), 0, false);
    while let Some(chunk) = response.chunk().await.expect("stream continues across the failover") {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                continue;
            }
            let chunk: Value = serde_json::from_str(data).expect("chunk json");
            assert!(chunk.get("error").is_none(), "{chunk}");
            if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
                streamed.push_str(piece);
                pieces += 1;
            }
        }
        if !killed && pieces >= 5 {
            let endpoints = read_endpoints();
            let pid = endpoints["workers"]
                .as_array()
                .expect("workers")
                .iter()
                .find(|w| w["id"] == worker.as_str())
                .and_then(|w| w["pid"].as_u64())
                .expect("the serving worker's pid");
            assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill").success());
            killed = true;
        }
    }
    assert!(killed, "the worker was killed mid-stream");
    assert_eq!(streamed, expected, "one uninterrupted stream: no token lost or repeated");

    // Usage: one record for the request, every completion token once.
    let db = sqlx::PgPool::connect(&with_database(&admin_url, &name)).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows: Vec<(i32, String)> = loop {
        let rows: Vec<(i32, String)> =
            sqlx::query_as("SELECT completion_tokens, outcome FROM metering.usage_records WHERE request_id = $1")
                .bind(&request_id)
                .fetch_all(&db)
                .await
                .expect("query");
        if !rows.is_empty() || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows, vec![(i32::try_from(MAX_TOKENS).expect("fits"), "ok".to_owned())]);
    db.close().await;

    assert!(up.stop(Duration::from_secs(20)).is_some(), "reservoir up did not stop");
    let _ = std::fs::remove_dir_all(&state);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&admin)
        .await
        .expect("drop db");
}
