//! The process that holds unsent usage records (`reservoir up`: the
//! scheduler and its spool) is killed with SIGKILL during traffic and
//! started again: every request whose answer reached its client has exactly
//! one usage record; requests cut off in flight are recorded as interrupted.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;

use support::{Running, endpoints, model_path, spawn_up, with_database};

/// Starts `reservoir up`; answers it with the tenant token and gateway URL once it serves completions.
async fn start(database_url: &str, state: &std::path::Path) -> (Running, String, String) {
    let (up, token) = spawn_up(database_url, state, 1);
    let gateway = endpoints(state)["gateway"].as_str().expect("gateway").to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    while complete(&reqwest::Client::new(), &gateway, &token, 0).await.is_none() {
        assert!(Instant::now() < deadline, "no completion within 90 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (up, token, gateway)
}

/// One small chat completion; its request id when the whole answer arrived.
async fn complete(http: &reqwest::Client, gateway: &str, token: &str, i: u32) -> Option<String> {
    let body = json!({"model": "smollm2-135m-instruct", "max_tokens": 6, "temperature": 0,
                      "messages": [{"role": "user", "content": format!("Count to {i}.")}]});
    let response =
        http.post(format!("{gateway}/v1/chat/completions")).bearer_auth(token).json(&body).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let id = response.headers().get("x-request-id")?.to_str().ok()?.to_owned();
    let answer: Value = response.json().await.ok()?;
    answer["choices"][0]["message"]["content"].is_string().then_some(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_scheduler_loses_no_record_of_an_answered_request() {
    let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run the tests with ./scripts/test");
    let name = format!("crash_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create db");
    let database_url = with_database(&admin_url, &name);
    let state = std::env::temp_dir().join(&name);
    assert!(model_path().exists(), "{} not found: run scripts/fetch-model", model_path().display());

    let (mut up, token, gateway) = start(&database_url, &state).await;
    let answered = Arc::new(Mutex::new(BTreeSet::new()));
    let clients: Vec<_> = (0..4u32)
        .map(|c| {
            let (answered, gateway, token) = (answered.clone(), gateway.clone(), token.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0.. {
                    match complete(&http, &gateway, &token, c * 10_000 + i).await {
                        Some(id) => answered.lock().expect("lock").insert(id),
                        None => return, // the platform is gone
                    };
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.lock().expect("lock").len() < 30 {
        assert!(Instant::now() < deadline, "traffic too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = up.pid().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().expect("kill").success());
    let _ = up.0.wait();
    for c in clients {
        let _ = c.await;
    }
    let answered = answered.lock().expect("lock").clone();

    // Started again over the same spool and database.
    let (mut again, _, _) = start(&database_url, &state).await;
    let db = sqlx::PgPool::connect(&database_url).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows: Vec<(String, String)> = loop {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT request_id, outcome FROM metering.usage_records")
            .fetch_all(&db)
            .await
            .expect("query");
        let stored: BTreeSet<&String> = rows.iter().map(|(id, _)| id).collect();
        if answered.iter().all(|id| stored.contains(id)) || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let outcome = |id: &String| rows.iter().find(|(r, _)| r == id).map(|(_, o)| o.as_str());
    let missing: Vec<&String> = answered.iter().filter(|id| outcome(id).is_none()).collect();
    assert!(missing.is_empty(), "{} of {} answered requests have no record", missing.len(), answered.len());
    assert!(answered.iter().all(|id| outcome(id) == Some("ok")), "each answered request is recorded as served");
    let others: Vec<&str> = rows.iter().filter(|(id, _)| !answered.contains(id)).map(|(_, o)| o.as_str()).collect();
    assert!(
        others.iter().all(|o| ["interrupted", "ok", "client_cancelled"].contains(o)),
        "requests cut off by the kill are recorded for what they were: {others:?}"
    );
    db.close().await;

    assert!(again.stop(Duration::from_secs(30)).is_some(), "reservoir up did not stop");
    let _ = std::fs::remove_dir_all(&state);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&admin)
        .await
        .expect("drop db");
}
