//! `reservoir bench metering [--quick]`: usage records per second from the
//! request path, through the durable spool (fsync'd group commits), the
//! forwarder and the metering service, into PostgreSQL; and the process's
//! memory while a backlog waits on disk. Needs DATABASE_URL.
//!
//! Each producer task stands for one request in flight and does what the
//! scheduler does per request: a `Begin` at dispatch (not waited for), then
//! the record (waited for until fsync'd). Records are distinct (request ids,
//! tenants, token counts of varied size), so nothing is deduplicated away.
//!
//! First (backlog): metering is unreachable while producers spool a backlog
//! of records on disk; then it comes back and the backlog drains. Then
//! (steady): producers run for the phase while metering is up; the figure is
//! records stored / time from the first append until the last is in
//! PostgreSQL. Peak resident memory of this process (spool, forwarder,
//! metering service and its database pool; PostgreSQL itself is another
//! process) is sampled in each.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use reservoir_domain::{Outcome, PriorityClass, UsageRecord};
use reservoir_platform::Config;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_runtime::{Shutdown, db};

use crate::bench::rss_kib;
use rust_decimal::Decimal;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Shorter phases (finishes within a minute).
    #[arg(long)]
    quick: bool,
    /// Requests in flight at once, each appending its own records.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
}

/// Samples resident memory until stopped; answers the peak in KiB.
fn sample_peak(stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_kib());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak.max(rss_kib())
    })
}

/// A distinct, realistic record: request `n` of producer `p`.
fn record(p: usize, n: u64) -> UsageRecord {
    let now = Utc::now();
    // Long-tailed prompt lengths and varied completions, 100 tenants.
    let prompt = 20 + ((n.wrapping_mul(2_654_435_761) >> 7) % 1000) as u32 * ((n % 7) as u32 + 1) / 7;
    let completion = 16 + (n % 240) as u32;
    let class = match n % 10 {
        0..=5 => PriorityClass::Reserved,
        6 => PriorityClass::Burst,
        _ => PriorityClass::Spot,
    };
    let contract = (class != PriorityClass::Spot).then(|| uuid::Uuid::from_u128(0xC0 + (p % 100) as u128));
    let weighted = Decimal::from(prompt) / Decimal::from(4) + Decimal::from(completion);
    UsageRecord {
        request_id: format!("bench-{p}-{n}-{}", uuid::Uuid::new_v4().simple()),
        tenant: format!("tenant-{}", p % 100).parse().unwrap_or_else(|_| unreachable!("a valid slug")),
        contract,
        model: "smollm2-135m-instruct".parse().unwrap_or_else(|_| unreachable!("a valid slug")),
        class,
        outcome: Outcome::Ok,
        prompt_tokens: prompt,
        cached_prompt_tokens: 0,
        completion_tokens: completion,
        weighted_tokens: weighted,
        demand_weighted_tokens: weighted,
        queue_ms: (n % 13) as u32,
        ttft_ms: Some(40 + (n % 300) as u32),
        total_ms: 400 + (n % 5000) as u32,
        worker_id: format!("worker-{}", p % 4),
        started_at: now,
        finished_at: now,
        catalog_version: 1,
    }
}

/// Producers append records as requests would, until `until` or `total` records.
async fn produce(
    log: &reservoir_metering::usage_log::UsageLog,
    concurrency: usize,
    until: Instant,
    total: u64,
) -> anyhow::Result<(u64, Vec<u128>)> {
    let appended = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|p| {
            let (log, appended) = (log.clone(), appended.clone());
            tokio::spawn(async move {
                let mut waits_us = Vec::new();
                for n in 0.. {
                    if Instant::now() >= until || appended.fetch_add(1, Ordering::Relaxed) >= total {
                        break;
                    }
                    let r = record(p, n);
                    log.begin(&r).await?;
                    let t = Instant::now();
                    log.record(&r).await?;
                    waits_us.push(t.elapsed().as_micros());
                }
                anyhow::Ok(waits_us)
            })
        })
        .collect();
    let mut waits = Vec::new();
    for t in tasks {
        waits.extend(t.await??);
    }
    Ok((waits.len() as u64, waits))
}

/// Records metering answered as stored, from the forwarder's own counter
/// (polling `count(*)` would load the database being measured).
fn stored(registry: &prometheus::Registry) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == "usage_records_forwarded_total")
        .flat_map(|family| family.get_metric())
        .filter(|m| m.get_label().iter().any(|l| l.name() == "status" && l.value() == "stored"))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Waits until `target` records are stored; answers when.
async fn until_stored(registry: &prometheus::Registry, target: u64) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while stored(registry) < target {
        anyhow::ensure!(Instant::now() < deadline, "records not stored within 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Instant::now())
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

pub async fn run(config: &Config, args: &Args) -> anyhow::Result<()> {
    let (phase, backlog) =
        if args.quick { (Duration::from_secs(5), 50_000) } else { (Duration::from_secs(20), 300_000) };
    let admin_url = config.database_url()?.to_owned();
    let name = format!("bench_metering_{}", uuid::Uuid::new_v4().simple());
    let admin = db::connect(&admin_url, 2).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await?;
    let url = format!("{}/{name}", admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url));
    let pool = db::connect(&url, 8).await?;
    db::migrate(&pool).await?;
    let result = measure(config, &pool, args, phase, backlog).await;
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await?;
    result
}

async fn measure(
    config: &Config,
    pool: &sqlx::PgPool,
    args: &Args,
    phase: Duration,
    backlog: u64,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = config.clone();
    config.metering.listen = loopback;
    config.internal.token = None;
    let given = reservoir_platform::Given { pool: Some(pool.clone()), ..Default::default() };
    let metering = reservoir_platform::build(config, &[reservoir_platform::Service::Metering], given).await?;
    let metering_url = metering.endpoints.metering.clone().unwrap_or_default();
    // Bound but not serving yet: the forwarder cannot get an answer (phase 2).
    let spool = std::env::temp_dir().join(format!("bench-metering-spool-{}", uuid::Uuid::new_v4().simple()));
    let channel = reservoir_runtime::grpc::client_channel(&metering_url, Duration::from_secs(5))?;
    let client = MeteringServiceClient::new(reservoir_runtime::InternalToken::default().attach(channel));
    let registry = prometheus::Registry::new();
    let (log, forwarder) =
        reservoir_metering::usage_log::open(spool.clone(), client, &registry, shutdown.clone()).await?;
    println!(
        "{} producers (requests in flight), each: Begin (not waited for), then its record (waited for until fsync'd)",
        args.concurrency
    );

    // Metering down: a backlog on disk.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(stop.clone());
    let start = Instant::now();
    let (spooled, _) = produce(&log, args.concurrency, start + Duration::from_secs(600), backlog).await?;
    let spool_s = start.elapsed().as_secs_f64();
    let rss_backlog_kib = rss_kib();
    let served = tokio::spawn(metering.run_until_stopped(shutdown.clone()));
    let drain_start = Instant::now();
    let drained_at = until_stored(&registry, spooled).await?;
    stop.store(true, Ordering::Relaxed);
    let backlog_peak_kib = sampler.await?;
    let drain_s = drained_at.duration_since(drain_start).as_secs_f64();
    println!(
        "backlog: {spooled} records spooled in {spool_s:.1} s with metering unreachable ({:.0}/s; resident {} MiB after), \
         drained into PostgreSQL in {drain_s:.1} s ({:.0} records/s); peak resident memory {} MiB",
        spooled as f64 / spool_s,
        rss_backlog_kib / 1024,
        spooled as f64 / drain_s,
        backlog_peak_kib / 1024
    );

    // Steady state, metering up.
    let before = stored(&registry);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(stop.clone());
    let start = Instant::now();
    let (appended, mut waits) = produce(&log, args.concurrency, start + phase, u64::MAX).await?;
    let appended_s = start.elapsed().as_secs_f64();
    let done = until_stored(&registry, before + appended).await?;
    stop.store(true, Ordering::Relaxed);
    let steady_peak_kib = sampler.await?;
    let total_s = done.duration_since(start).as_secs_f64();
    waits.sort_unstable();
    let (p50, p99) = (percentile(&waits, 0.5), percentile(&waits, 0.99));
    let sustained = appended as f64 / total_s;
    println!(
        "steady: {appended} records in {total_s:.1} s from first append to last stored: {sustained:.0} records/s \
         sustained (request path alone: {:.0}/s; wait for the group commit p50 {p50:.2} ms, p99 {p99:.2} ms); \
         peak resident memory {} MiB (target: 20000 records/s)",
        appended as f64 / appended_s,
        steady_peak_kib / 1024
    );
    // Counted while the services still run: stopping them closes the pool.
    let in_db: i64 = sqlx::query_scalar("SELECT count(*) FROM metering.usage_records").fetch_one(pool).await?;
    let rolled_up: i64 = sqlx::query_scalar("SELECT COALESCE(sum(requests), 0)::int8 FROM metering.usage_hourly")
        .fetch_one(pool)
        .await?;
    shutdown.trigger();
    drop(log);
    let _ = forwarder.await;
    let _ = served.await;
    let _ = std::fs::remove_dir_all(&spool);
    anyhow::ensure!(
        u64::try_from(in_db).unwrap_or(0) == spooled + appended,
        "stored {in_db} of {} records",
        spooled + appended
    );
    anyhow::ensure!(rolled_up == in_db, "the hourly rollup counts {rolled_up} of {in_db} records");
    println!(
        "{}",
        serde_json::json!({
            "bench": "metering",
            "concurrency": args.concurrency,
            "steady_records": appended,
            "steady_records_per_s": sustained.round(),
            "request_path_records_per_s": (appended as f64 / appended_s).round(),
            "group_commit_wait_ms_p50": p50,
            "group_commit_wait_ms_p99": p99,
            "steady_peak_rss_mib": steady_peak_kib / 1024,
            "backlog_records": spooled,
            "backlog_drain_records_per_s": (spooled as f64 / drain_s).round(),
            "backlog_peak_rss_mib": backlog_peak_kib / 1024,
        })
    );
    Ok(())
}
