//! Metering against a real PostgreSQL and a real gRPC server on loopback:
//! storage, aggregates, refused records, and the usage log (spool and
//! forwarder) in front of it.

use std::net::SocketAddr;

use chrono::{DateTime, TimeZone, Utc};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_runtime::Shutdown;
use reservoir_runtime::db::MIGRATOR;
use sqlx::PgPool;
use tonic::transport::Channel;

const CONTRACT: &str = "0193a3c4-0000-7000-8000-000000000001";

fn at(minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 3, 1, 10, minute, second).single().expect("valid instant")
}

fn class(name: &str) -> i32 {
    match name {
        "reserved" => pb::PriorityClass::Reserved,
        "burst" => pb::PriorityClass::Burst,
        "spot" => pb::PriorityClass::Spot,
        _ => pb::PriorityClass::Unspecified,
    }
    .into()
}

fn outcome(name: &str) -> i32 {
    match name {
        "ok" => pb::Outcome::Ok,
        "shed" => pb::Outcome::Shed,
        "client_cancelled" => pb::Outcome::ClientCancelled,
        "platform_error" => pb::Outcome::PlatformError,
        "interrupted" => pb::Outcome::Interrupted,
        _ => pb::Outcome::Unspecified,
    }
    .into()
}

fn record(
    id: &str,
    class_name: &str,
    outcome_name: &str,
    start: DateTime<Utc>,
    ttft_ms: Option<u32>,
) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: id.into(),
        tenant_id: "acme".into(),
        contract_id: if class_name == "spot" { String::new() } else { CONTRACT.into() },
        model: "smollm2-135m-instruct".into(),
        class: class(class_name),
        outcome: outcome(outcome_name),
        prompt_tokens: 100,
        cached_prompt_tokens: 32,
        completion_tokens: 20,
        // 100 x 0.25 + 20 x 1
        weighted_tokens: "45".into(),
        demand_weighted_tokens: "89.25".into(),
        queue_ms: 3,
        ttft_ms,
        total_ms: 400,
        worker_id: "w1".into(),
        started_at: Some(timestamp(start)),
        finished_at: Some(timestamp(start + chrono::Duration::milliseconds(400))),
        catalog_version: 1,
    }
}

async fn start(pool: PgPool) -> (MeteringServiceClient<Channel>, String, Shutdown) {
    let shutdown = Shutdown::new();
    let settings = reservoir_metering::MeteringSettings { listen: SocketAddr::from(([127, 0, 0, 1], 0)) };
    let server = reservoir_metering::build(&settings, pool, Default::default()).await.expect("build");
    let url = format!("http://127.0.0.1:{}", server.port());
    tokio::spawn(server.run_until_stopped(shutdown.clone()));
    (MeteringServiceClient::connect(url.clone()).await.expect("connect"), url, shutdown)
}

fn statuses(answer: &pb::RecordUsageResponse) -> Vec<(String, pb::RecordStatus)> {
    answer
        .results
        .iter()
        .map(|r| (r.request_id.clone(), pb::RecordStatus::try_from(r.status).unwrap_or(pb::RecordStatus::Unspecified)))
        .collect()
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.expect("count");
    n
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn records_are_stored_once_and_totalled_exactly(pool: PgPool) {
    let (mut client, _, _shutdown) = start(pool).await;
    let mut later = record("r4", "spot", "shed", at(0, 3), None);
    later.catalog_version = 2;
    let batch = vec![
        record("r1", "reserved", "ok", at(0, 0), Some(50)),
        record("r2", "burst", "ok", at(0, 1), Some(60)),
        record("r3", "spot", "ok", at(0, 2), Some(70)),
        later,
    ];
    let first = client.record_usage(pb::RecordUsageRequest { records: batch.clone() }).await.expect("record");
    assert!(statuses(first.get_ref()).iter().all(|(_, s)| *s == pb::RecordStatus::Stored));
    let retry = client.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("retry");
    assert!(
        statuses(retry.get_ref()).iter().all(|(_, s)| *s == pb::RecordStatus::Duplicate),
        "a retried write never counts twice"
    );

    let totals = client
        .usage_totals(pb::UsageTotalsRequest {
            tenant_id: "acme".into(),
            from: Some(timestamp(at(0, 0))),
            to: Some(timestamp(at(59, 0))),
            by_day: false,
        })
        .await
        .expect("totals")
        .into_inner()
        .totals;
    let rows: Vec<(i32, u32, u64, u64, &str)> = totals
        .iter()
        .map(|t| (t.class, t.catalog_version, t.requests, t.shed_requests, t.weighted_tokens.as_str()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (class("burst"), 1, 1, 0, "45"),
            (class("reserved"), 1, 1, 0, "45"),
            (class("spot"), 1, 1, 0, "45"),
            (class("spot"), 2, 1, 1, "45"),
        ],
        "grouped by class and by the catalog version each request was priced under"
    );
    assert_eq!(totals[0].cached_prompt_tokens, 32);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn windows_give_the_sla_its_measures(pool: PgPool) {
    let (mut client, _, _shutdown) = start(pool.clone()).await;
    let mut batch: Vec<pb::UsageRecord> =
        (0..20).map(|i| record(&format!("a{i}"), "reserved", "ok", at(1, i), Some(100 + 10 * i))).collect();
    // A long prompt may take longer: 4,000 tokens at 2,000 tokens/s earn 2 s more.
    let mut long = record("long", "reserved", "ok", at(1, 30), Some(2_100));
    long.prompt_tokens = 4_000;
    batch.push(long);
    batch.push(record("err", "reserved", "platform_error", at(2, 0), None));
    batch.push(record("gone", "reserved", "client_cancelled", at(2, 1), Some(5)));
    batch.push(record("not-sla", "burst", "ok", at(2, 2), Some(9_999)));
    batch.push(record("next", "reserved", "ok", at(6, 0), Some(42)));
    batch.push(record("lost", "reserved", "interrupted", at(6, 1), None));
    client.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("record");

    let ask = |window_s: u32| pb::UsageWindowsRequest {
        contract_id: CONTRACT.into(),
        from: Some(timestamp(at(0, 0))),
        to: Some(timestamp(at(10, 0))),
        window_s,
        // The premium base: 1 s, plus the prompt at 2,000 tokens/s.
        ttft_target: Some(pb::TtftTarget { base_ms: 1_000, prefill_tokens_per_s: 2_000 }),
        recorded_since: None,
    };
    let windows = client.usage_windows(ask(300)).await.expect("windows").into_inner().windows;
    assert_eq!(windows.len(), 2);
    let first = &windows[0];
    assert_eq!(first.window_start, Some(timestamp(at(0, 0))));
    assert_eq!(
        first.eligible_requests, 22,
        "20 ok + the long one + 1 platform error; the cancellation is not eligible"
    );
    assert_eq!(first.platform_errors, 1);
    // TTFTs 100..290 and 2100: nearest-rank p95 of 21 values is the 20th, 290; p50 the 11th, 200.
    assert_eq!(first.ttft_ms_p95, Some(290));
    assert_eq!(first.ttft_ms_p50, Some(200));
    assert_eq!(first.ttft_missed, 1, "only the failed request missed: the long prompt had 3,000 ms");
    // Each ok request decodes 19 tokens after its first in (400 - ttft) ms
    // (the long one's record has no time left for it: not counted); the
    // median of the 20 speeds is the mean of 19000/210 and 19000/200.
    assert_eq!(first.decode_tokens_per_s_median, "92.738");
    assert_eq!(first.delivered_weighted_tokens, "990", "22 eligible records x 45");
    assert_eq!(windows[1].window_start, Some(timestamp(at(5, 0))));
    assert_eq!(windows[1].ttft_ms_p95, Some(42));
    assert_eq!((windows[1].platform_errors, windows[1].ttft_missed), (1, 1), "an interruption is the platform's");

    let minutes = client.usage_windows(ask(60)).await.expect("windows").into_inner().windows;
    let starts: Vec<_> = minutes.iter().map(|w| (w.window_start, w.eligible_requests)).collect();
    assert_eq!(
        starts,
        vec![(Some(timestamp(at(1, 0))), 21), (Some(timestamp(at(2, 0))), 1), (Some(timestamp(at(6, 0))), 2)],
        "any window length, aligned to UTC"
    );
    let too_long = client.usage_windows(ask(86_401)).await.expect_err("refused");
    assert_eq!(too_long.code(), tonic::Code::InvalidArgument);

    // A late record: only the window it lands in is answered, with the
    // figures of all its records.
    let since: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&pool).await.expect("database clock");
    let late = vec![record("late", "reserved", "platform_error", at(7, 0), None)];
    client.record_usage(pb::RecordUsageRequest { records: late }).await.expect("record");
    let changed = pb::UsageWindowsRequest { recorded_since: Some(timestamp(since)), ..ask(300) };
    let changed = client.usage_windows(changed).await.expect("windows").into_inner().windows;
    assert_eq!(changed.len(), 1, "the first window got nothing new");
    assert_eq!(changed[0].window_start, Some(timestamp(at(5, 0))));
    assert_eq!((changed[0].eligible_requests, changed[0].platform_errors), (3, 2));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_records_are_set_aside_and_never_block_the_others(pool: PgPool) {
    let (mut client, _, _shutdown) = start(pool.clone()).await;
    let mut batch = vec![record("good-1", "spot", "ok", at(0, 0), None)];
    let mut no_contract = record("x1", "reserved", "ok", at(0, 0), None);
    no_contract.contract_id.clear();
    batch.push(no_contract);
    batch.push(record("x2", "gold", "ok", at(0, 0), None));
    batch.push(record("x3", "spot", "maybe", at(0, 0), None));
    let mut negative = record("x4", "spot", "ok", at(0, 0), None);
    negative.weighted_tokens = "-1".into();
    batch.push(negative);
    let mut backwards = record("x5", "spot", "ok", at(0, 10), None);
    backwards.finished_at = Some(timestamp(at(0, 0)));
    batch.push(backwards);
    let mut cached = record("x6", "spot", "ok", at(0, 0), None);
    cached.cached_prompt_tokens = 101;
    batch.push(cached);
    batch.push(record("bad\0id", "spot", "ok", at(0, 0), None));
    // Valid here, refused by PostgreSQL (its timestamps begin in 4713 BC).
    let far = Utc.with_ymd_and_hms(-5_000, 1, 1, 0, 0, 0).single().expect("instant");
    batch.push(record("x8", "spot", "ok", far, None));
    batch.push(record("good-2", "spot", "ok", at(0, 1), None));
    let answer = client.record_usage(pb::RecordUsageRequest { records: batch.clone() }).await.expect("answered");
    let got = statuses(answer.get_ref());
    assert_eq!(got.len(), batch.len(), "one answer per record, in order");
    for (id, status) in &got {
        let expected = if id.starts_with("good") { pb::RecordStatus::Stored } else { pb::RecordStatus::Rejected };
        assert_eq!(*status, expected, "{id}");
    }
    assert!(
        answer
            .get_ref()
            .results
            .iter()
            .filter(|r| r.status == pb::RecordStatus::Rejected as i32)
            .all(|r| !r.reason.is_empty())
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM metering.usage_records").await, 2);
    assert_eq!(count(&pool, "SELECT count(*) FROM metering.rejected_records").await, 8, "each kept with its reason");
    // Sent again (a retried call): answered the same, kept once.
    client.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("answered");
    assert_eq!(count(&pool, "SELECT count(*) FROM metering.rejected_records").await, 8);
}

/// A usage log (spool and forwarder) in `dir`, shipping to `url`.
async fn usage_log(
    dir: &std::path::Path,
    url: &str,
    shutdown: &Shutdown,
) -> (reservoir_metering::usage_log::UsageLog, tokio::task::JoinHandle<()>) {
    let channel = reservoir_runtime::grpc::client_channel(url, std::time::Duration::from_secs(5)).expect("channel");
    let client = MeteringServiceClient::new(reservoir_runtime::InternalToken::default().attach(channel));
    let registry = prometheus::Registry::new();
    reservoir_metering::usage_log::open(dir.to_path_buf(), client, &registry, shutdown.clone()).await.expect("open")
}

async fn outcome_of(pool: &PgPool, id: &str) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let row: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM metering.usage_records WHERE request_id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .expect("query");
        if row.is_some() || std::time::Instant::now() > deadline {
            return row;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_request_left_running_by_a_stopped_scheduler_is_recorded_as_interrupted(pool: PgPool) {
    let (_, url, _metering) = start(pool.clone()).await;
    let dir = tempfile::tempdir().expect("spool folder");
    let record = |id: &str| {
        reservoir_metering::convert::record_from_pb(&record(id, "reserved", "ok", at(0, 0), Some(50))).expect("valid")
    };
    {
        // One request finishes, one is still running when the scheduler stops.
        let shutdown = Shutdown::new();
        let (log, forwarder) = usage_log(dir.path(), &url, &shutdown).await;
        log.begin(&record("done")).await.expect("begin");
        log.record(&record("done")).await.expect("record");
        log.begin(&record("running")).await.expect("begin");
        assert_eq!(outcome_of(&pool, "done").await.as_deref(), Some("ok"));
        shutdown.trigger();
        drop(log);
        forwarder.await.expect("forwarder stops");
    }
    assert_eq!(outcome_of(&pool, "running").await, None, "still running: no record yet");
    // The next start finds its Begin without a record.
    let shutdown = Shutdown::new();
    let (_log, _forwarder) = usage_log(dir.path(), &url, &shutdown).await;
    assert_eq!(outcome_of(&pool, "running").await.as_deref(), Some("interrupted"));
    let (weighted,): (rust_decimal::Decimal,) =
        sqlx::query_as("SELECT weighted_tokens FROM metering.usage_records WHERE request_id = 'running'")
            .fetch_one(&pool)
            .await
            .expect("row");
    assert!(weighted.is_zero(), "nothing of an interrupted request is billed");
    shutdown.trigger();
}
