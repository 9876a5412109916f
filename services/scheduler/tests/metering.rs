//! Metering against a real PostgreSQL and a real gRPC server on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_runtime::Shutdown;
use reservoir_runtime::db::MIGRATOR;
use reservoir_scheduler::metering::record::UsageRecord;
use reservoir_scheduler::metering::recorder::{self, RecorderConfig};
use sqlx::PgPool;
use tonic::transport::Channel;

const CONTRACT: &str = "0193a3c4-0000-7000-8000-000000000001";

fn at(minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 3, 1, 10, minute, second).single().expect("valid instant")
}

fn record(id: &str, class: &str, outcome: &str, start: DateTime<Utc>, ttft_ms: Option<u32>) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: id.into(),
        tenant_id: "acme".into(),
        contract_id: if class == "spot" { String::new() } else { CONTRACT.into() },
        model: "smollm2-135m-instruct".into(),
        class: class.into(),
        outcome: outcome.into(),
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
    }
}

async fn start(pool: PgPool) -> (MeteringServiceClient<Channel>, Shutdown) {
    let shutdown = Shutdown::new();
    let settings = reservoir_scheduler::SchedulerSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        contracts_url: "http://127.0.0.1:9".into(),
        workers: Vec::new(),
        per_worker_in_flight: 1,
        queue_limits: Default::default(),
        fcfs: false,
        internal_token: Default::default(),
    };
    let server = reservoir_scheduler::build(&settings, pool).await.expect("build");
    let url = format!("http://127.0.0.1:{}", server.port());
    tokio::spawn(server.run_until_stopped(shutdown.clone()));
    (MeteringServiceClient::connect(url).await.expect("connect"), shutdown)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn records_are_stored_once_and_totalled_exactly(pool: PgPool) {
    let (mut client, _shutdown) = start(pool).await;
    let batch = vec![
        record("r1", "reserved", "ok", at(0, 0), Some(50)),
        record("r2", "burst", "ok", at(0, 1), Some(60)),
        record("r3", "spot", "ok", at(0, 2), Some(70)),
    ];
    let first = client.record_usage(pb::RecordUsageRequest { records: batch.clone() }).await.expect("record");
    assert_eq!(first.into_inner().inserted, 3);
    let retry = client.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("retry");
    assert_eq!(retry.into_inner().inserted, 0, "a retried write never counts twice");

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
    let by_class: Vec<(&str, u64, &str)> =
        totals.iter().map(|t| (t.class.as_str(), t.requests, t.weighted_tokens.as_str())).collect();
    assert_eq!(by_class, vec![("burst", 1, "45"), ("reserved", 1, "45"), ("spot", 1, "45")]);
    assert_eq!(totals[0].cached_prompt_tokens, 32);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn windows_give_the_sla_its_measures(pool: PgPool) {
    let (mut client, _shutdown) = start(pool).await;
    let mut batch: Vec<pb::UsageRecord> =
        (0..20).map(|i| record(&format!("a{i}"), "reserved", "ok", at(1, i), Some(100 + 10 * i))).collect();
    batch.push(record("err", "reserved", "platform_error", at(2, 0), None));
    batch.push(record("gone", "reserved", "client_cancelled", at(2, 1), Some(5)));
    batch.push(record("not-sla", "burst", "ok", at(2, 2), Some(9_999)));
    batch.push(record("next", "reserved", "ok", at(6, 0), Some(42)));
    client.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("record");

    let windows = client
        .usage_windows(pb::UsageWindowsRequest {
            contract_id: CONTRACT.into(),
            from: Some(timestamp(at(0, 0))),
            to: Some(timestamp(at(10, 0))),
        })
        .await
        .expect("windows")
        .into_inner()
        .windows;
    assert_eq!(windows.len(), 2);
    let first = &windows[0];
    assert_eq!(first.window_start, Some(timestamp(at(0, 0))));
    assert_eq!(first.eligible_requests, 21, "20 ok + 1 platform error; the cancellation is not eligible");
    assert_eq!(first.platform_errors, 1);
    // TTFTs 100..290 and 5 (the cancelled one still produced a token): nearest-rank p95 of 21 values is the 20th, 280.
    assert_eq!(first.ttft_ms_p95, Some(280));
    assert_eq!(first.delivered_weighted_tokens, "990", "22 reserved records x 45");
    assert_eq!(windows[1].window_start, Some(timestamp(at(5, 0))));
    assert_eq!(windows[1].ttft_ms_p95, Some(42));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_records_are_refused_and_nothing_is_written(pool: PgPool) {
    let (mut client, _shutdown) = start(pool.clone()).await;
    let mut cases = Vec::new();
    let mut no_contract = record("x1", "reserved", "ok", at(0, 0), None);
    no_contract.contract_id.clear();
    cases.push(no_contract);
    cases.push(record("x2", "gold", "ok", at(0, 0), None));
    cases.push(record("x3", "spot", "maybe", at(0, 0), None));
    let mut negative = record("x4", "spot", "ok", at(0, 0), None);
    negative.weighted_tokens = "-1".into();
    cases.push(negative);
    let mut backwards = record("x5", "spot", "ok", at(0, 10), None);
    backwards.finished_at = Some(timestamp(at(0, 0)));
    cases.push(backwards);
    let mut cached = record("x6", "spot", "ok", at(0, 0), None);
    cached.cached_prompt_tokens = 101;
    cases.push(cached);
    cases.push(record("", "spot", "ok", at(0, 0), None));
    for bad in cases {
        let good = record("fine", "spot", "ok", at(0, 0), None);
        let status = client
            .record_usage(pb::RecordUsageRequest { records: vec![good, bad.clone()] })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}: {status:?}");
    }
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM metering.usage_records").fetch_one(&pool).await.expect("count");
    assert_eq!(rows, 0, "a batch with one bad record writes nothing");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_recorder_batches_and_flushes_everything_on_shutdown(pool: PgPool) {
    let shutdown = Shutdown::new();
    let config = RecorderConfig { buffer_capacity: 64, batch_max: 50, flush_every: Duration::from_secs(3600) };
    let (sink, writer) = recorder::spawn(pool.clone(), config, shutdown.clone());
    for i in 0..1000u32 {
        let wire = record(&format!("q{}", i % 900), "spot", "ok", at(0, 0), Some(i));
        sink.record(UsageRecord::try_from(&wire).expect("valid")).await.expect("recorder running");
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), writer).await.expect("writer stops").expect("writer ok");
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM metering.usage_records").fetch_one(&pool).await.expect("count");
    assert_eq!(rows, 900, "every distinct request stored once, the last batch flushed at shutdown");
    assert!(
        sink.record(UsageRecord::try_from(&record("late", "spot", "ok", at(0, 0), None)).expect("valid"))
            .await
            .is_err()
    );
}
