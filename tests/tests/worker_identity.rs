//! Workers started as identical replicas (the same configuration, no
//! `worker.id`: what `docker compose up --scale worker=3` starts) register
//! with the real scheduler as distinct workers, and each serves requests
//! through the gateway.

use std::collections::BTreeSet;

use reservoir_tests::{MIGRATOR, MODEL, Platform};
use serde_json::json;
use sqlx::PgPool;

/// Serves one chat completion through the gateway; answers the worker that took it.
async fn served_by(p: &Platform, token: &str, content: &str) -> String {
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 4});
    let response =
        p.http.post(p.url("/v1/chat/completions")).bearer_auth(token).json(&body).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let worker = response.headers()["x-reservoir-worker"].to_str().expect("ascii").to_owned();
    response.bytes().await.expect("the whole answer");
    worker
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn identical_replicas_register_under_distinct_ids_and_each_serves(pool: PgPool) {
    let p = Platform::start(pool).await;
    // Started one after another only to learn which id is whose: the
    // configuration is the same for all three.
    let mut replicas = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for n in 1..=3 {
        let stop = p.start_worker(MODEL).await;
        let workers = p.workers_when(|w| w.len() == n && w.iter().all(|w| w.healthy && w.model_id == MODEL)).await;
        let new = workers.iter().find(|w| !ids.contains(&w.worker_id)).expect("a new worker");
        ids.push(new.worker_id.clone());
        replicas.push(stop);
    }
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 3, "three replicas, three workers: {ids:?}");
    for id in &ids {
        assert!(id.parse::<reservoir_domain::WorkerId>().is_ok(), "{id} is a valid worker id");
    }

    // Each replica is in rotation: whichever served a request is stopped,
    // and the next request is served by one of the others, until each has
    // served one.
    let token = p.tenant_token("acme");
    let mut served = BTreeSet::new();
    for round in 0..3 {
        let worker = served_by(&p, &token, &format!("question {round}")).await;
        assert!(ids.contains(&worker), "{worker} is one of {ids:?}");
        assert!(served.insert(worker.clone()), "{worker} was stopped yet served again");
        let index = ids.iter().position(|id| *id == worker).expect("known worker");
        replicas[index].trigger();
        p.workers_when(|w| w.iter().any(|w| w.worker_id == worker && !w.healthy)).await;
    }
    assert_eq!(served, ids.into_iter().collect(), "every replica served a request");
}
