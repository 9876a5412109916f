//! Two models on one platform (a second catalog name for the same weights):
//! each model's requests reach only its own workers, each model has its own
//! tokenizer in the scheduler, `/v1/models` lists the models that have
//! workers, and a reserved request whose model has no worker left is
//! answered 503 with Retry-After after its queue deadline, never served by
//! the other model's idle workers and never left waiting.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use reservoir_tests::{MIGRATOR, MODEL, Platform};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The same tiny weights under another name in the catalog.
const ALIAS: &str = "smollm2-alias";
/// In the catalog, but no worker serves it.
const UNSERVED: &str = "unserved-model";

async fn chat(p: &Platform, token: &str, model: &str, content: &str) -> reqwest::Response {
    let body = json!({"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4});
    p.http.post(p.url("/v1/chat/completions")).bearer_auth(token).json(&body).send().await.expect("sent")
}

/// Usage records are written in batches: waits (bounded) for `n` of them.
async fn records(p: &Platform, n: usize) -> Vec<(String, String, String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT request_id, model_id, worker_id, class, outcome FROM metering.usage_records ORDER BY request_id",
        )
        .fetch_all(&p.pool)
        .await
        .expect("query");
        if rows.len() >= n {
            return rows;
        }
        assert!(Instant::now() < deadline, "only {} of {n} records: {rows:?}", rows.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metric_seen(p: &Platform, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = p.http.get(&p.scheduler_metrics).send().await.expect("sent").text().await.expect("text");
        if page.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {line}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn each_models_requests_reach_only_its_own_workers(pool: PgPool) {
    let p = Platform::start(pool).await;
    for model in [ALIAS, UNSERVED] {
        let id = model.parse().expect("model id");
        reservoir_contracts::seed_model(&p.pool, &id, 1000, rust_decimal::Decimal::new(10, 2)).await.expect("seed");
    }
    // The alias is sold at the model's prices.
    let admin = p.admin_token();
    let (_, current) = p.call(reqwest::Method::GET, "/admin/catalog", &admin, None).await;
    let mut catalog = current["catalog"].clone();
    catalog["models"][ALIAS] = catalog["models"][MODEL].clone();
    let (status, body) = p.call(reqwest::Method::PUT, "/admin/catalog", &admin, Some(catalog)).await;
    assert_eq!(status, 201, "{body}");
    let _main = [p.start_worker(MODEL).await, p.start_worker(MODEL).await];
    let alias_worker = p.start_worker(ALIAS).await;
    let workers = p.workers_when(|w| w.len() == 3 && w.iter().all(|w| w.healthy && !w.model_id.is_empty())).await;
    let model_of: HashMap<String, String> = workers.iter().map(|w| (w.worker_id.clone(), w.model_id.clone())).collect();
    assert_eq!(model_of.values().filter(|m| *m == ALIAS).count(), 1, "{workers:?}");

    // Each model's tokenizer is learned from a worker of that model.
    for model in [MODEL, ALIAS] {
        metric_seen(&p, &format!(r#"reservoir_scheduler_tokenizer_known{{model="{model}"}} 1"#)).await;
    }

    // Only models with a worker are listed.
    let token = p.tenant_token("acme");
    let listed: Value =
        p.http.get(p.url("/v1/models")).bearer_auth(&token).send().await.expect("sent").json().await.expect("json");
    let ids: BTreeSet<&str> =
        listed["data"].as_array().expect("data").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from([MODEL, ALIAS]), "{listed}");

    // Both models at once, several requests each: each is served by a
    // worker of its own model, by the header and by its usage record.
    let mut calls = Vec::new();
    for i in 0..6 {
        for model in [MODEL, ALIAS] {
            let (p, token) = (&p, &token);
            calls.push(async move { (model, chat(p, token, model, &format!("question {i} for {model}")).await) });
        }
    }
    for (model, response) in futures_util::future::join_all(calls).await {
        assert_eq!(response.status().as_u16(), 200);
        let worker = response.headers()["x-reservoir-worker"].to_str().expect("ascii").to_owned();
        assert_eq!(model_of.get(&worker).map(String::as_str), Some(model), "{model} was served by {worker}");
        response.bytes().await.expect("the whole answer");
    }
    let rows = records(&p, 12).await;
    for (request, model, worker, _, outcome) in &rows {
        assert_eq!(outcome, "ok", "{request}");
        assert_eq!(model_of.get(worker), Some(model), "{request} of {model} ran on {worker}");
    }
    let alias_rows = rows.iter().filter(|r| r.1 == ALIAS).count();
    assert_eq!(alias_rows, 6);

    // The alias's only worker goes away. A reserved request for the alias
    // waits for a worker of its model, not for the idle workers of the
    // other, and past its deadline (enterprise: 4 x 500 ms) it is answered
    // 503 with Retry-After and counted as a platform error.
    alias_worker.trigger();
    p.workers_when(|w| w.iter().any(|w| w.model_id == ALIAS && !w.healthy)).await;
    let gold = p.tenant_token("gold");
    let order = json!({"model": ALIAS, "rate": 50, "tier": "enterprise", "term": "hourly"});
    let (status, reservation) = p.call(reqwest::Method::POST, "/v1/reservations", &gold, Some(order)).await;
    assert_eq!(status, 201, "{reservation}");
    let late = chat(&p, &gold, ALIAS, "anyone there?").await;
    assert_eq!(late.status().as_u16(), 503);
    let retry_after: u64 = late.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!(retry_after >= 1);
    let body: Value = late.json().await.expect("json");
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    let rows = records(&p, 13).await;
    let row = rows.iter().find(|r| r.3 == "reserved").expect("the late request's record");
    assert_eq!((row.1.as_str(), row.4.as_str()), (ALIAS, "platform_error"), "{row:?}");
    assert_eq!(rows.iter().filter(|r| r.1 == ALIAS && r.4 == "ok").count(), 6, "nothing more ran for the alias");
    // With its last worker gone the alias is no longer listed.
    let listed: Value =
        p.http.get(p.url("/v1/models")).bearer_auth(&token).send().await.expect("sent").json().await.expect("json");
    let ids: BTreeSet<&str> =
        listed["data"].as_array().expect("data").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from([MODEL]), "{listed}");
}
