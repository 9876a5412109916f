//! The SLA as a tenant lives it, on the real platform (`reservoir up`, the
//! real model, a worker process): a premium tenant sends traffic, every
//! worker is paused with SIGSTOP long enough to breach its contract, then
//! resumed. The incident, the bad windows with their reasons, the status
//! page's outage and a signed webhook delivery all appear; closing the month
//! credits that contract to the cent, and a contract on a healthy model gets
//! nothing.
//!
//! SLA windows are 10 s here (300 s in production) and the contract is an
//! hourly one of 90 s, so a 30 s outage is a breach of a whole term. The
//! month is closed by a second SLA instance with a clock set after the
//! month's end (the job takes its time as an argument; two instances may
//! race, which the credits' key makes harmless).

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use hmac::{Hmac, Mac};
use reservoir_domain::{Period, round_half_even};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::Sha256;

mod support;

use support::{Running, endpoints, mint, model_path, reservoir_up, with_database};

const MODEL: &str = "smollm2-135m-instruct";
const HEALTHY_MODEL: &str = "healthy-model";
const TERM_S: i64 = 90;

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let signature = headers.get("reservoir-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
                keep.lock().expect("lock").push((signature.to_owned(), body.to_vec()));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn signed_by(secret: &str, signature: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = signature.strip_prefix("t=").and_then(|r| r.split_once(",v1=")) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::decode(v1).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

struct Api {
    http: reqwest::Client,
    gateway: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.gateway)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn signal(pid: u64, sig: &str) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill").success(), "kill {sig} {pid}");
}

// Several threads: the webhook receiver must keep answering while the test
// waits (blocking) for the platform to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_pool_breaches_a_premium_contract_and_credits_it_to_the_cent() {
    let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run the tests with ./scripts/test");
    let name = format!("sla_outage_{}", uuid::Uuid::new_v4().simple());
    let admin_db = sqlx::PgPool::connect(&admin_url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin_db).await.expect("create db");
    let state = std::env::temp_dir().join(&name);
    assert!(model_path().exists(), "{} not found: run scripts/fetch-model", model_path().display());
    let database_url = with_database(&admin_url, &name);

    let mut up = Running(
        reservoir_up(&database_url, &state, 1, false)
            .env("RESERVOIR__SLA__WINDOW_S", "10")
            .env("RESERVOIR__SLA__JOB_INTERVAL_S", "2")
            // Requests stalled by the pause finish (and are recorded) up to
            // about 30 s after their window; measure windows after that.
            .env("RESERVOIR__SLA__SETTLE_S", "45")
            .env("RESERVOIR__SLA__DELIVERY_INTERVAL_MS", "200")
            .env("RESERVOIR__SLA__WEBHOOKS_ALLOW_PRIVATE", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn reservoir up"),
    );
    // endpoints.json appears once every service listens.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !state.join("endpoints.json").exists() {
        assert!(Instant::now() < deadline, "reservoir up did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let api = Api {
        http: reqwest::Client::new(),
        gateway: endpoints(&state)["gateway"].as_str().expect("gateway").to_owned(),
    };
    let (tenant, other, admin) =
        (mint(&state, "premium-co", "tenant"), mint(&state, "elsewhere-co", "tenant"), mint(&state, "ops", "admin"));
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6});
    // The worker loads the model in a debug build first: slow on 2 busy cores.
    let deadline = Instant::now() + Duration::from_secs(240);
    while api.call(reqwest::Method::POST, "/v1/chat/completions", &tenant, Some(chat.clone())).await.0 != 200 {
        assert!(Instant::now() < deadline, "no completion within 240 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A second model with prices but no worker traffic: healthy all along.
    let (status, body) = api
        .call(reqwest::Method::POST, "/admin/models", &admin, Some(json!({"id": HEALTHY_MODEL, "capacity": 1000})))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, catalog) = api.call(reqwest::Method::GET, "/admin/catalog", &admin, None).await;
    let mut document = catalog["catalog"].clone();
    document["models"][HEALTHY_MODEL] = document["models"][MODEL].clone();
    let (status, body) = api.call(reqwest::Method::PUT, "/admin/catalog", &admin, Some(document)).await;
    assert_eq!(status, 201, "{body}");

    // Hourly contracts of 90 s, starting now.
    let ends_at = Utc::now() + TimeDelta::seconds(TERM_S);
    let order =
        |model: &str| json!({"model": model, "rate": 400, "tier": "premium", "term": "hourly", "ends_at": ends_at});
    let (status, premium) = api.call(reqwest::Method::POST, "/v1/reservations", &tenant, Some(order(MODEL))).await;
    assert_eq!(status, 201, "{premium}");
    let (status, healthy) =
        api.call(reqwest::Method::POST, "/v1/reservations", &other, Some(order(HEALTHY_MODEL))).await;
    assert_eq!(status, 201, "{healthy}");
    let (url, received) = receiver().await;
    let (status, hook) = api.call(reqwest::Method::POST, "/v1/webhooks", &tenant, Some(json!({"url": url}))).await;
    assert_eq!(status, 201, "{hook}");

    // Traffic: a request every 250 ms, each on its own, until the term ends.
    let traffic = {
        let (http, gateway, token, chat) = (api.http.clone(), api.gateway.clone(), tenant.clone(), chat.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            while Utc::now() < ends_at + TimeDelta::seconds(5) {
                let request = http
                    .post(format!("{gateway}/v1/chat/completions"))
                    .bearer_auth(&token)
                    .json(&chat)
                    .timeout(Duration::from_secs(120))
                    .send();
                sent.push(tokio::spawn(async move { request.await.map(|r| r.status().as_u16()).unwrap_or(0) }));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            for s in sent {
                let _ = s.await;
            }
        })
    };

    // Two good windows, then every worker paused for 30 s.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let workers: Vec<u64> =
        endpoints(&state)["workers"].as_array().expect("workers").iter().filter_map(|w| w["pid"].as_u64()).collect();
    assert!(!workers.is_empty());
    for pid in &workers {
        signal(*pid, "-STOP");
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    for pid in &workers {
        signal(*pid, "-CONT");
    }
    traffic.await.expect("traffic");

    // The job measures the term (windows of 10 s, a run every 2 s).
    let period = Period::containing(Utc::now()).expect("month").to_string();
    // Done when two windows past the term are measured (an incident still
    // open at the term's end resolves at the first window after it) and
    // every incident is resolved.
    let deadline = Instant::now() + Duration::from_secs(240);
    let contract = loop {
        let (status, sla) = api.call(reqwest::Method::GET, &format!("/v1/sla?period={period}"), &tenant, None).await;
        assert_eq!(status, 200, "{sla}");
        let c = sla["contracts"][0].clone();
        let measured = c["measured_until"].as_str().and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok());
        let incidents = c["incidents"].as_array().cloned().unwrap_or_default();
        let statuses: Vec<String> =
            incidents.iter().map(|i| format!("{} {} to {}", i["status"], i["started_at"], i["resolved_at"])).collect();
        let done = measured.is_some_and(|m| m >= ends_at + TimeDelta::seconds(20))
            && !incidents.is_empty()
            && incidents.iter().all(|i| i["status"] == "resolved");
        if done {
            break c;
        }
        // The summary comes first: CI logs may cut a long message.
        assert!(
            Instant::now() < deadline,
            "term ended {ends_at}, measured until {measured:?}, incidents {statuses:?}; the whole answer: {sla}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let bad = contract["bad"].as_array().expect("bad windows");
    assert!(!bad.is_empty(), "{contract}");
    assert!(bad.iter().all(|w| !w["reasons"].as_array().expect("reasons").is_empty()), "{contract}");
    // The oldest incident is the pause's.
    let incidents = contract["incidents"].as_array().expect("incidents");
    let incident = incidents.last().expect("an incident");
    assert_eq!(incident["timeline"][0]["kind"], "opened");

    // The status page shows the pool's outage, with no tenant on it.
    let page: Value =
        api.http.get(format!("{}/status.json", api.gateway)).send().await.expect("sent").json().await.expect("json");
    let pool =
        page["models"].as_array().expect("models").iter().find(|m| m["model"] == MODEL).expect("the model").clone();
    assert!(!pool["incidents"].as_array().expect("incidents").is_empty(), "{page}");
    assert!(
        pool["uptime"]["last_24h"].as_str().and_then(|u| u.parse::<Decimal>().ok()).is_some_and(|u| u < Decimal::ONE)
    );
    assert!(!page.to_string().contains("premium-co"));

    // The tenant's endpoint got the incident, signed.
    let secret = hook["secret"].as_str().expect("secret");
    let deadline = Instant::now() + Duration::from_secs(30);
    let opened = loop {
        let got = received.lock().expect("lock").clone();
        let found = got.iter().find_map(|(signature, body)| {
            let event: Value = serde_json::from_slice(body).ok()?;
            (event["type"] == "incident.opened").then(|| (signature.clone(), body.clone(), event))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no incident.opened delivered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(signed_by(secret, &opened.0, &opened.1));
    assert_eq!(opened.2["data"]["incident"]["contract_id"], premium["id"]);

    // Close the month with a second SLA instance whose clock is after its end.
    let e = endpoints(&state);
    let token = std::fs::read_to_string(state.join("internal-token")).expect("internal token");
    let settings = reservoir_sla_service::SlaSettings {
        listen: "127.0.0.1:0".parse().expect("address"),
        contracts_url: e["contracts"].as_str().expect("contracts").into(),
        metering_url: e["metering"].as_str().expect("metering").into(),
        scheduler_url: e["scheduler"].as_str().expect("scheduler").into(),
        window_s: 10,
        settle_s: 45,
        ..Default::default()
    };
    let db = sqlx::PgPool::connect(&database_url).await.expect("connect");
    let closer =
        reservoir_sla_service::build(&settings, db.clone(), reservoir_runtime::InternalToken::new(Some(token.trim())))
            .await
            .expect("sla instance")
            .sla();
    let month: Period = period.parse().expect("period");
    let after = month.end() + TimeDelta::hours(2);
    let mut tries = 0;
    // The platform's own job runs beside it; a run that collides is retried.
    while let Err(e) = closer.tick(after).await {
        tries += 1;
        assert!(tries < 5, "tick: {e}");
    }
    reservoir_sla_service::close::close_period(&closer, month, "e2e", after).await.expect("closed");

    let (_, credits) = api.call(reqwest::Method::GET, &format!("/v1/credits?period={period}"), &tenant, None).await;
    let credit = &credits["credits"][0];
    assert_eq!(credit["contract_id"], premium["id"]);
    // Any bad window of the 9 or 10 leaves at most 90%: below 95%, 100% of the fee.
    assert_eq!(credit["share"], "1");
    let price_per_hour: Decimal =
        premium["price"]["per_hour"]["amount"].as_str().expect("price").parse().expect("decimal");
    let starts = premium["starts_at"].as_str().and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok()).expect("start");
    let ends = premium["ends_at"].as_str().and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok()).expect("end");
    let fee = price_per_hour * Decimal::from((ends - starts).num_seconds()) / Decimal::from(3600);
    assert_eq!(
        credit["amount"].as_str().and_then(|a| a.parse::<Decimal>().ok()),
        Some(round_half_even(fee, 2)),
        "{credit}"
    );
    let (_, none) = api.call(reqwest::Method::GET, &format!("/v1/credits?period={period}"), &other, None).await;
    assert_eq!(none["credits"], json!([]), "the healthy model's contract gets nothing");
    let _ = healthy;

    db.close().await;
    assert!(up.stop(Duration::from_secs(30)).is_some(), "reservoir up did not stop");
    let _ = std::fs::remove_dir_all(&state);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&admin_db)
        .await
        .expect("drop db");
}
