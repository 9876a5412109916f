//! PostgreSQL goes down for more than 30 seconds under steady reserved and
//! spot traffic through the gateway: serving goes on, no reserved request
//! fails, and once the database is back every request the clients saw has
//! exactly one usage record, none more.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use reservoir_tests::cluster::Cluster;
use reservoir_tests::{MIGRATOR, MODEL, Options, Platform};
use serde_json::json;

/// What one client saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    request_id: Option<String>,
    class: Option<String>,
    status: u16,
}

/// Sends small completions one after another until `stop`, keeping what it saw.
async fn client(p: Arc<Platform>, tenant: &'static str, stop: Arc<Mutex<bool>>, seen: Arc<Mutex<Vec<Seen>>>) {
    let token = p.tenant_token(tenant);
    let mut i = 0u32;
    while !*stop.lock().expect("lock") {
        i += 1;
        let body = json!({"model": MODEL, "prompt": format!("{tenant} asks question number {i}"), "max_tokens": 4, "temperature": 0});
        let response = p.http.post(p.url("/v1/completions")).bearer_auth(&token).json(&body).send().await;
        let record = match response {
            Ok(r) => {
                let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let (request_id, class) = (header("x-request-id"), header("x-reservoir-class"));
                let status = r.status().as_u16();
                // A request counts as seen once its whole body came.
                let complete = r.bytes().await.is_ok();
                Seen { request_id: request_id.filter(|_| complete), class, status }
            }
            Err(_) => Seen { request_id: None, class: None, status: 0 },
        };
        seen.lock().expect("lock").push(record);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_stops_no_reserved_request_and_loses_no_record() {
    let cluster = Cluster::start();
    let pool = sqlx::PgPool::connect(&cluster.url()).await.expect("connect to the private cluster");
    MIGRATOR.run(&pool).await.expect("migrate");
    let p = Arc::new(Platform::start_with(pool.clone(), Options { workers: 1, ..Options::default() }).await);
    let reserve = json!({"model": MODEL, "rate": 300, "tier": "standard", "term": "hourly"});
    let (status, body) = p.call(Method::POST, "/v1/reservations", &p.tenant_token("acme"), Some(reserve)).await;
    assert_eq!(status, 201, "{body}");

    let stop = Arc::new(Mutex::new(false));
    let (reserved, spot) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let clients = [
        tokio::spawn(client(p.clone(), "acme", stop.clone(), reserved.clone())),
        tokio::spawn(client(p.clone(), "walk-in", stop.clone(), spot.clone())),
    ];
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_outage = reserved.lock().expect("lock").len();
    cluster.stop();
    // A tenant never seen cannot be provisioned now: a clear 503, not a hang.
    let asked = Instant::now();
    let body = json!({"model": MODEL, "prompt": "hello", "max_tokens": 2});
    let newcomer =
        p.http.post(p.url("/v1/completions")).bearer_auth(p.tenant_token("newcomer")).json(&body).send().await;
    let newcomer = newcomer.expect("answered");
    let status = newcomer.status().as_u16();
    let waited = asked.elapsed();
    assert_eq!(
        status,
        503,
        "an unknown tenant during the outage ({waited:?}): {}",
        newcomer.text().await.unwrap_or_default()
    );
    assert!(waited < Duration::from_secs(15), "answered within the call deadlines, not hung: {waited:?}");
    let remaining = Duration::from_secs(32).saturating_sub(asked.elapsed());
    tokio::time::sleep(remaining).await;
    let during_outage = reserved.lock().expect("lock").len() - before_outage;
    cluster.resume();
    tokio::time::sleep(Duration::from_secs(4)).await;
    *stop.lock().expect("lock") = true;
    for c in clients {
        c.await.expect("client");
    }

    let reserved = reserved.lock().expect("lock").clone();
    let spot = spot.lock().expect("lock").clone();
    assert!(during_outage >= 20, "reserved traffic went on during the outage: {during_outage} requests");
    let failed: Vec<&Seen> = reserved.iter().filter(|s| s.status != 200 || s.request_id.is_none()).collect();
    assert!(failed.is_empty(), "no reserved request fails: {failed:?}");
    assert!(reserved.iter().all(|s| s.class.as_deref() == Some("reserved")), "served as reserved throughout");
    assert!(spot.iter().any(|s| s.status == 200), "spot was served too");

    // Every request the clients saw completed has its record, one for one.
    let expected: BTreeSet<String> = reserved.iter().chain(&spot).filter_map(|s| s.request_id.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let stored: BTreeSet<String> = loop {
        let ids: Vec<String> = sqlx::query_scalar("SELECT request_id FROM metering.usage_records")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
        let ids: BTreeSet<String> = ids.into_iter().collect();
        if expected.is_subset(&ids) || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let missing: Vec<&String> = expected.difference(&stored).collect();
    assert!(missing.is_empty(), "{} of {} requests have no record: {missing:?}", missing.len(), expected.len());
    let shed_spot = spot.iter().filter(|s| s.status == 429).count() as i64;
    let extra: Vec<&String> = stored.difference(&expected).collect();
    assert!(
        extra.len() as i64 <= shed_spot,
        "records only for requests the clients saw (shed ones carry no id header): {extra:?}"
    );
}
