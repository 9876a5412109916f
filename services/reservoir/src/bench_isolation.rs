//! `reservoir bench isolation [--quick]`: does a reserved tenant keep its
//! service when spot traffic floods the pool? A trace through the real
//! platform (contracts, scheduler, a worker running the real engine, one
//! PostgreSQL database of its own): reserved tenants offer 80% of their
//! reserved rate; first alone (idle), then with spot offered at 5x what the
//! pool serves (overload); then the same overload with the scheduler and the
//! worker switched to plain first-come-first-served as the baseline. Needs
//! DATABASE_URL (`scripts/pg run -- reservoir bench isolation`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use reservoir_platform::{Config, Given, Service};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::scheduler_service_client::SchedulerServiceClient;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_runtime::{Shutdown, db};
use tonic::transport::Channel;

const MODEL: &str = "smollm2-135m-instruct";
const RESERVED_TENANTS: usize = 2;
/// Each reserved tenant's share of the measured pool capacity.
const RESERVED_SHARE_EACH: f64 = 0.2;
/// Reserved tenants offer this share of their rate.
const RESERVED_OFFERED: f64 = 0.8;
/// Spot offers this multiple of the pool's capacity.
const SPOT_OFFERED: f64 = 5.0;
const MAX_TOKENS: u32 = 32;
const QUESTION: &str = "Write two sentences about the sea.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Phases of 6 s instead of 30 s, reserved stragglers cut after 6 s more
    /// (finishes within a minute).
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value = ".reservoir/models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
}

/// Completion tokens received, counted as they arrive (requests cut at the
/// end of a phase still count what they got).
#[derive(Debug, Default)]
struct Counters {
    reserved_tokens: AtomicU64,
    spot_tokens: AtomicU64,
    reserved_sent: AtomicU64,
    /// TTFT of every reserved request that got a token, in ms.
    reserved_ttfts_ms: std::sync::Mutex<Vec<f64>>,
    /// The worker's own count of tokens it processed per second (prompt and
    /// generated), one sample per `RATE_WINDOW` of the phase.
    worker_tps_samples: std::sync::Mutex<Vec<f64>>,
}

/// The window over which a worker reports its tokens/s.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

async fn one_request(
    mut client: SchedulerServiceClient<Channel>,
    tenant: String,
    id: String,
    reserved: bool,
    counters: Arc<Counters>,
) {
    let request = pb::CompleteRequest {
        request_id: id,
        tenant_id: tenant,
        model: MODEL.into(),
        input: Some(pb::complete_request::Input::Messages(pb::ChatInput {
            messages: vec![pb::ChatTurn { role: "user".into(), content: QUESTION.into() }],
        })),
        params: Some(pb::GenerationParams { max_tokens: MAX_TOKENS, ..Default::default() }),
        wants_spot: !reserved,
    };
    let sent = Instant::now();
    let Ok(response) = client.complete(request).await else { return };
    let mut stream = response.into_inner();
    let mut first = true;
    while let Ok(Some(event)) = stream.message().await {
        if let Some(pb::complete_event::Event::Token(_)) = event.event {
            if first {
                first = false;
                let ttft = sent.elapsed().as_secs_f64() * 1e3;
                if reserved && let Ok(mut v) = counters.reserved_ttfts_ms.lock() {
                    v.push(ttft);
                }
            }
            let counter = if reserved { &counters.reserved_tokens } else { &counters.spot_tokens };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Offers the load for `phase`; spot requests still running at the end are
/// cut (their clients leave), reserved ones are waited for.
async fn run_phase(
    client: &SchedulerServiceClient<Channel>,
    phase: Duration,
    reserved_per_s: f64,
    spot_per_s: f64,
    tag: &str,
    straggler_wait: Duration,
    worker_url: String,
) -> (Duration, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    // How busy the pool is, as the worker counts it, while the load is offered.
    let sampler = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let Ok(mut worker) = WorkerServiceClient::connect(worker_url).await else { return };
            let mut at = RATE_WINDOW;
            while at <= phase {
                tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
                if let Ok(s) = worker.stats(pb::WorkerStatsRequest {}).await
                    && let Ok(mut v) = counters.worker_tps_samples.lock()
                {
                    v.push(s.into_inner().tokens_per_s);
                }
                at += RATE_WINDOW;
            }
        })
    };
    let mut reserved_tasks = Vec::new();
    let mut spot_tasks = Vec::new();
    let mut next_reserved = 0.0f64;
    let mut next_spot = 0.0f64;
    let mut n = 0u64;
    while started.elapsed() < phase {
        let now = started.elapsed().as_secs_f64();
        while reserved_per_s > 0.0 && next_reserved <= now {
            let tenant = format!("reserved-{}", n as usize % RESERVED_TENANTS);
            let (c, k) = (client.clone(), counters.clone());
            let id = format!("{tag}-{n}");
            counters.reserved_sent.fetch_add(1, Ordering::Relaxed);
            reserved_tasks.push(tokio::spawn(one_request(c, tenant, id, true, k)));
            next_reserved += 1.0 / reserved_per_s;
            n += 1;
        }
        while spot_per_s > 0.0 && next_spot <= now {
            let (c, k) = (client.clone(), counters.clone());
            let id = format!("{tag}-{n}");
            spot_tasks.push(tokio::spawn(one_request(c, format!("spot-{}", n % 4), id, false, k)));
            next_spot += 1.0 / spot_per_s;
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = sampler.await;
    let deadline = Instant::now() + straggler_wait;
    for t in reserved_tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, t).await.is_err() {
            // Cut: its tokens so far are in the counters.
        }
    }
    let elapsed = started.elapsed();
    for t in spot_tasks {
        t.abort();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    (elapsed, counters)
}

async fn platform(
    config: &Config,
    url: &str,
    model: &std::path::Path,
    fcfs: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<(SchedulerServiceClient<Channel>, String, String)> {
    let pool = db::connect(url, 16).await?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = config.clone();
    // The services listen on the loopback of this process: no internal token.
    config.internal.token = None;
    for listen in [
        &mut config.contracts.listen,
        &mut config.metering.listen,
        &mut config.worker.listen,
        &mut config.scheduler.listen,
        &mut config.scheduler.metrics_listen,
    ] {
        *listen = loopback;
    }
    config.worker.model_id = MODEL.into();
    config.scheduler.fcfs = fcfs;
    config.scheduler.workers = Vec::new();
    let spool = tempfile_dir("bench-isolation-spool")?;
    config.scheduler.spool_dir = spool;
    let backend = reservoir_worker::EngineBackend::load(model, config.worker.kv_budget_bytes)?;
    let services = [Service::Contracts, Service::Metering, Service::Worker, Service::Scheduler];
    let given = Given { pool: Some(pool), worker_backends: vec![backend] };
    let platform = reservoir_platform::build(config, &services, given).await?;
    let endpoints = platform.endpoints.clone();
    tokio::spawn(platform.run_until_stopped(shutdown.clone()));
    let scheduler = endpoints.scheduler.ok_or_else(|| anyhow::anyhow!("no scheduler built"))?;
    let contracts = endpoints.contracts.ok_or_else(|| anyhow::anyhow!("no contracts service built"))?;
    let worker = endpoints.workers.first().cloned().ok_or_else(|| anyhow::anyhow!("no worker built"))?;
    Ok((SchedulerServiceClient::connect(scheduler).await?, contracts, worker))
}

/// A fresh folder under the system's temporary directory.
fn tempfile_dir(prefix: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub async fn run(config: &Config, args: &Args) -> anyhow::Result<()> {
    let phase = Duration::from_secs(if args.quick { 6 } else { 30 });
    // How long reserved requests still running at the end of a phase are
    // waited for; what they did not get by then counts as not delivered.
    let straggler_wait = Duration::from_secs(if args.quick { 6 } else { 60 });
    let admin_url = config.database_url()?.to_owned();
    let name = format!("bench_isolation_{}", uuid::Uuid::new_v4().simple());
    let admin = db::connect(&admin_url, 2).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await?;
    let url = format!("{}/{name}", admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url));
    let pool = db::connect(&url, 4).await?;
    db::migrate(&pool).await?;

    // As in `reservoir serve worker` (the worker runs in this process here).
    reservoir_worker::lower_compute_priority();
    let model = args.model.clone();
    let capacity =
        tokio::task::spawn_blocking(move || reservoir_platform::calibrate::measure(&model)).await??.tokens_per_s;
    reservoir_contracts::seed_model(&pool, &MODEL.parse()?, capacity * 2, rust_decimal::Decimal::new(10, 2)).await?;
    // Each request costs about MAX_TOKENS weighted tokens plus a quarter of its prompt (~40 tokens).
    let cost = f64::from(MAX_TOKENS) + 10.0;
    let rate_each = (f64::from(capacity) * RESERVED_SHARE_EACH).floor().max(1.0) as u32;
    let reserved_per_s = f64::from(rate_each) * RESERVED_TENANTS as f64 * RESERVED_OFFERED / cost;
    let spot_per_s = f64::from(capacity) * SPOT_OFFERED / cost;
    println!(
        "pool capacity {capacity} weighted tokens/s (measured); {RESERVED_TENANTS} reserved tenants at {rate_each} tokens/s each"
    );
    println!(
        "offered: reserved {reserved_per_s:.2} req/s (80% of their rate), spot {spot_per_s:.1} req/s (5x capacity); phases of {} s",
        phase.as_secs()
    );

    let mut results = Vec::new();
    for (label, fcfs, spot) in [("idle", false, 0.0), ("overload", false, spot_per_s), ("fcfs", true, spot_per_s)] {
        let shutdown = Shutdown::new();
        let (client, contracts_url, worker_url) =
            platform(config, &url, &args.model, fcfs, &shutdown).await.context(label)?;
        // The same key each phase: the reservations are made once.
        reserve(&contracts_url, rate_each).await.context("reserving")?;
        warm_up(&client).await;
        let (elapsed, counters) =
            run_phase(&client, phase, reserved_per_s, spot, label, straggler_wait, worker_url).await;
        shutdown.trigger();
        tokio::time::sleep(Duration::from_millis(300)).await;
        results.push((label, elapsed, counters));
    }

    println!(
        "\n{:<10} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "phase", "reserved", "ttft p50 ms", "ttft p99 ms", "delivered", "spot tok/s", "util", "goodput"
    );
    let mut json = serde_json::Map::new();
    for (label, elapsed, counters) in &results {
        let sent = counters.reserved_sent.load(Ordering::Relaxed);
        let ttfts = counters.reserved_ttfts_ms.lock().map(|v| v.clone()).unwrap_or_default();
        let starved = sent.saturating_sub(ttfts.len() as u64);
        let (ttft, ttft_p50) = (quantile(&ttfts, 0.99), quantile(&ttfts, 0.5));
        let delivered = counters.reserved_tokens.load(Ordering::Relaxed) as f64;
        let demanded = sent as f64 * f64::from(MAX_TOKENS);
        let ratio = if demanded > 0.0 { delivered / demanded } else { f64::NAN };
        let spot_tokens = counters.spot_tokens.load(Ordering::Relaxed) as f64;
        let all_tokens = spot_tokens + counters.reserved_tokens.load(Ordering::Relaxed) as f64;
        let secs = elapsed.as_secs_f64();
        let spot_tps = spot_tokens / secs;
        // Utilization: how busy the pool was while the load was offered, as
        // the worker counts it (prompt and generated tokens processed, over
        // the measured capacity). Goodput: completion tokens clients received.
        let samples = counters.worker_tps_samples.lock().map(|v| v.clone()).unwrap_or_default();
        let busy = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
        let util = busy / f64::from(capacity);
        let goodput = all_tokens / secs / f64::from(capacity);
        let reserved_col = if starved > 0 { format!("{sent} ({starved} no token)") } else { sent.to_string() };
        println!(
            "{label:<10} {reserved_col:>10} {ttft_p50:>12.1} {ttft:>12.1} {:>11.1}% {spot_tps:>12.1} {:>11.1}% {:>11.1}%",
            ratio * 100.0,
            util * 100.0,
            goodput * 100.0
        );
        match *label {
            "idle" => {
                json.insert("reserved_ttft_p99_ms_idle".into(), serde_json::json!(round1(ttft)));
            }
            "overload" => {
                json.insert("reserved_ttft_p99_ms_overload".into(), serde_json::json!(round1(ttft)));
                json.insert("reserved_delivered_ratio".into(), serde_json::json!((ratio * 1000.0).round() / 1000.0));
                json.insert("spot_goodput_tps".into(), serde_json::json!(round1(spot_tps)));
                json.insert("utilization".into(), serde_json::json!((util * 1000.0).round() / 1000.0));
                json.insert("goodput_utilization".into(), serde_json::json!((goodput * 1000.0).round() / 1000.0));
            }
            _ => {
                json.insert("fcfs_reserved_ttft_p99_ms".into(), serde_json::json!(round1(ttft)));
            }
        }
    }
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await?;
    println!("{}", serde_json::Value::Object(json));
    Ok(())
}

/// One reserved request per tenant before the clock starts, not counted:
/// connections, the contract cache and the prompt's prefix cache are warm,
/// as on a platform that has been serving for a while.
async fn warm_up(client: &SchedulerServiceClient<Channel>) {
    let counters = Arc::new(Counters::default());
    for i in 0..RESERVED_TENANTS {
        let id = format!("warm-up-{}", uuid::Uuid::new_v4().simple());
        one_request(client.clone(), format!("reserved-{i}"), id, true, counters.clone()).await;
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Hourly contracts for the reserved tenants, through the contracts service
/// so they are priced and checked like any other.
async fn reserve(contracts_url: &str, rate: u32) -> anyhow::Result<()> {
    let mut client =
        reservoir_proto::v1::contract_service_client::ContractServiceClient::connect(contracts_url.to_owned()).await?;
    for i in 0..RESERVED_TENANTS {
        let tenant = format!("reserved-{i}");
        client.ensure_tenant(pb::EnsureTenantRequest { id: tenant.clone() }).await?;
        client
            .create_reservation(pb::CreateReservationRequest {
                order: Some(pb::QuoteRequest {
                    tenant_id: tenant.clone(),
                    model: MODEL.into(),
                    rate_tokens_per_s: rate,
                    tier: pb::Tier::Premium.into(),
                    term: pb::Term::Hourly.into(),
                    starts_at: None,
                    ends_at: None,
                }),
                idempotency_key: format!("bench-{tenant}"),
                allow_burst: Some(true),
            })
            .await?;
    }
    Ok(())
}
