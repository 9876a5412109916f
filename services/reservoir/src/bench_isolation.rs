//! `reservoir bench isolation [--quick]`: does a reserved tenant keep its
//! service when spot traffic floods the pool, and how much of the pool does
//! useful work? The real platform in this process (contracts, metering,
//! scheduler, gateway, one worker running the real engine, a PostgreSQL
//! database of its own), driven through the gateway's HTTP API as tenants
//! drive it, with a seeded trace (`reservoir_workload::trace`): distinct
//! prompts of 20 to 1,000 tokens (long-tailed), `max_tokens` 16 to 256,
//! Poisson arrivals. Three reserved tenants, each with 20% of the measured
//! capacity at the premium tier, offer 70% of their rate: first alone, then
//! with spot offered at 5x capacity, then the same load with the scheduler
//! and the worker switched to plain first-come-first-served (no classes).
//! The reserved trace offers that work over the phase (as near as whole
//! requests come), its prompts counted in real tokens
//! (`trace::generate_offering`), and each request goes to the tenant that
//! has offered least so far; drawn by arrival rate alone, a 30 s sample of
//! a long-tailed load offered anywhere from 70% to 96% of the rate in runs
//! here.
//! Each phase sends its trace for a warm-up (5 s) and then the measured
//! window (30 s): the platform is as loaded at the window's start as at
//! its end (`Timing`).
//! Each run ends with the targets it met (`reservoir_workload::targets`);
//! `--runs N` repeats the whole measurement, calibration included, and
//! prints how many runs in a row met every target.
//! Needs DATABASE_URL (`scripts/pg run -- reservoir bench isolation`).

mod client;
mod engine_work;
mod pace;
mod print;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use reservoir_domain::{ModelId, Role, Tier};
use reservoir_engine::tokenizer::{ChatMessage, Tokenizer, chat_prompt};
use reservoir_platform::{Config, Given, Service};
use reservoir_runtime::{Shutdown, db};
use reservoir_workload::report::{self, Observed, PhaseSummary, Weights};
use reservoir_workload::targets::{self, Check};
use reservoir_workload::trace::{self, TraceRequest, TraceSpec};
use serde_json::{Value, json};

const MODEL: &str = "smollm2-135m-instruct";
const RESERVED_TENANTS: usize = 3;
/// Each reserved tenant's share of the measured pool capacity.
const RESERVED_SHARE_EACH: f64 = 0.2;
/// Reserved tenants offer this share of their rate.
const RESERVED_OFFERED: f64 = 0.7;
/// Spot offers this multiple of the pool's capacity.
const SPOT_OFFERED: f64 = 5.0;
const SPOT_TENANTS: usize = 4;
const TIER: Tier = Tier::Premium;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Windows of 8 s after 1 s of warm-up instead of 30 s after 5,
    /// reserved stragglers cut after 6 s more instead of 60, one
    /// calibration run instead of three (finishes within about a minute).
    #[arg(long)]
    quick: bool,
    /// The trace's seed: the same seed sends the same requests (in every run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Whole measurements, one after another, each with its own
    /// calibration and database.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    #[arg(long, default_value = ".reservoir/models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
}

/// What the platform says of the model through `/v1/models`.
struct Served {
    weights: Weights,
    prefill_tokens_per_s: u32,
}

/// A phase's clock: traffic starts `warm_up` before the measured window,
/// so the platform is as loaded at its start as at its end (a window that
/// began on an idle pool would count the prompts prefilled within it whose
/// first token came after its end, and none from before its start).
#[derive(Debug, Clone, Copy)]
struct Timing {
    warm_up: Duration,
    window: Duration,
    /// Reserved requests still running at the end of the window are waited
    /// for this long; what they did not get by then counts as not delivered.
    straggler_wait: Duration,
}

/// A trace request made ready to send: its tenant, body and counts.
struct Planned {
    at: Duration,
    call: client::Call,
}

/// A phase's figures: the report's, what the engine did (its work over
/// capacity, how busy it was), and the machine's pace just before and
/// after it (`pace`; not with --quick).
struct PhaseResult {
    label: &'static str,
    summary: PhaseSummary,
    engine: engine_work::EngineWork,
    pace: Option<(f64, f64)>,
}

struct Phase {
    label: &'static str,
    fcfs: bool,
    spot: bool,
}

const PHASES: [Phase; 3] = [
    Phase { label: "reserved alone", fcfs: false, spot: false },
    Phase { label: "with spot flood", fcfs: false, spot: true },
    Phase { label: "plain FCFS, same flood", fcfs: true, spot: true },
];

pub async fn run(config: &Config, args: &Args) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for run in 1..=args.runs {
        if args.runs > 1 {
            println!("\nrun {run} of {}", args.runs);
        }
        all.push(run_once(config, args).await?);
    }
    if args.runs > 1 {
        print::runs(&all);
    }
    Ok(())
}

/// One whole measurement, in a database of its own; answers its targets.
async fn run_once(config: &Config, args: &Args) -> anyhow::Result<Vec<Check>> {
    let timing = Timing {
        warm_up: Duration::from_secs(if args.quick { 1 } else { 5 }),
        window: Duration::from_secs(if args.quick { 8 } else { 30 }),
        straggler_wait: Duration::from_secs(if args.quick { 6 } else { 60 }),
    };
    let admin_url = config.database_url()?.to_owned();
    let name = format!("bench_isolation_{}", uuid::Uuid::new_v4().simple());
    let admin = db::connect(&admin_url, 2).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await?;
    let url = format!("{}/{name}", admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url));
    let outcome = run_in(config, args, &url, timing).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await?;
    outcome
}

async fn run_in(config: &Config, args: &Args, url: &str, timing: Timing) -> anyhow::Result<Vec<Check>> {
    let pool = db::connect(url, 4).await?;
    db::migrate(&pool).await?;
    // As in `reservoir serve worker` (the worker runs in this process here).
    reservoir_worker::lower_compute_priority();
    let path = args.model.clone();
    let loaded = tokio::task::spawn_blocking(move || reservoir_engine::load(&path))
        .await?
        .with_context(|| format!("loading {}", args.model.display()))?;
    let model_id: ModelId = MODEL.parse()?;
    // A placeholder capacity: calibration records the measured one, with
    // the weights, as `reservoir up` does.
    reservoir_contracts::seed_model(&pool, &model_id, 1, rust_decimal::Decimal::new(10, 2)).await?;
    let calibration = reservoir_platform::calibrate::calibrate(
        &pool,
        &model_id,
        loaded.model.clone(),
        loaded.tokenizer.clone(),
        config.worker.step_token_budget,
        // One run with --quick (about half its time here), so figures are rougher.
        if args.quick { 1 } else { reservoir_platform::calibrate::CALIBRATION_RUNS },
    )
    .await?;
    let capacity = f64::from(calibration.tokens_per_s);
    let rate_each = (capacity * RESERVED_SHARE_EACH).floor().max(1.0) as u32;
    pool.close().await;

    let mut config = bench_config(config)?;
    let mut planned: Option<(Vec<Planned>, Vec<Planned>, Served)> = None;
    let mut results = Vec::new();
    // The machine's pace: a short run of calibration's work, first right
    // after calibration, then after each phase (`pace`).
    let pace_at = |w: Weights| pace::measure(loaded.model.clone(), calibration.at, config.worker.step_token_budget, w);
    let mut paces: Option<(f64, f64)> = None;
    for p in &PHASES {
        config.scheduler.fcfs = p.fcfs;
        let shutdown = Shutdown::new();
        let (gateway, worker) = platform(&config, url, &args.model, shutdown.clone()).await.context(p.label)?;
        let http = reqwest::Client::new();
        // Also waits for the phase's worker: a model is listed once one serves it.
        let served = served(&http, &gateway, &mint(&config, "reserved-0")?).await.context(p.label)?;
        for i in 0..RESERVED_TENANTS {
            reserve(&http, &gateway, &mint(&config, &format!("reserved-{i}"))?, rate_each).await?;
        }
        // The trace is made once, from what the first phase's /v1/models
        // shows, and sent again in every phase.
        if planned.is_none() {
            let (reserved, spot) = plan(&config, args.seed, &served, &loaded.tokenizer, timing, capacity, rate_each)?;
            print::setup(&calibration, &served, rate_each, timing, &reserved, &spot, capacity);
            if !args.quick {
                let first = pace_at(served.weights).await?;
                paces = Some((first, first));
            }
            planned = Some((reserved, spot, served));
        }
        let Some((reserved, spot, served)) = &planned else { anyhow::bail!("no trace") };
        warm_up(&http, &gateway, &config, &loaded.tokenizer).await?;
        let spot: &[Planned] = if p.spot { spot } else { &[] };
        let start = Instant::now();
        let window = start + timing.warm_up..start + timing.warm_up + timing.window;
        let at_start = tokio::spawn(engine_work::read_at(worker.clone(), window.start));
        let at_end = tokio::spawn(engine_work::read_at(worker, window.end));
        let observed = run_phase(&http, &gateway, reserved, spot, start, window, timing.straggler_wait).await;
        let (before, after) = (at_start.await??, at_end.await??);
        let secs = timing.window.as_secs_f64();
        let summary = report::summarize(&observed, served.weights, capacity, secs);
        let engine = engine_work::between(before, after, served.weights, capacity, secs);
        print::misses(p.label, &observed, served.prefill_tokens_per_s);
        shutdown.trigger();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut pace = None;
        if let Some((first, last)) = paces {
            let now = pace_at(served.weights).await?;
            pace = Some((last / first, now / first));
            paces = Some((first, now));
        }
        results.push(PhaseResult { label: p.label, summary, engine, pace });
    }
    print::results(&results);
    let [alone, flood, ..] = results.as_slice() else { anyhow::bail!("a run has three phases") };
    let checks = targets::check(&alone.summary, &flood.summary);
    print::targets(&checks);
    if args.quick {
        println!(
            "--quick: windows of {} s hold few reserved requests, so their p95 and p99 are the slowest one or two, \
             not a tail; run without --quick for figures to compare.",
            timing.window.as_secs()
        );
    }
    Ok(checks)
}

/// The configuration every phase's platform starts from: loopback ports, a
/// signing secret of this run's own, no rate limit in the way.
fn bench_config(config: &Config) -> anyhow::Result<Config> {
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
        &mut config.gateway.listen,
    ] {
        *listen = loopback;
    }
    config.auth.hs256_secret = Some(uuid::Uuid::new_v4().simple().to_string().repeat(2));
    config.auth.rs256_public_key_pem_file = None;
    config.auth.rs256_private_key_pem_file = None;
    config.gateway.rate_limit = reservoir_gateway::RateLimit { requests_per_s: 100_000, burst: 100_000 };
    config.worker.model_id = MODEL.into();
    config.scheduler.workers = Vec::new();
    Ok(config)
}

fn mint(config: &Config, tenant: &str) -> anyhow::Result<String> {
    reservoir_gateway::auth::mint(&config.auth, tenant, Role::Tenant)
}

/// Starts the services, with a usage spool of their own (the last phase's
/// scheduler may still be shipping its own), and answers the gateway's and
/// the worker's URLs.
async fn platform(
    config: &Config,
    url: &str,
    model: &std::path::Path,
    shutdown: Shutdown,
) -> anyhow::Result<(String, String)> {
    let pool = db::connect(url, 16).await?;
    let backend = reservoir_worker::EngineBackend::load(model, config.worker.kv_budget_bytes)?;
    let mut config = config.clone();
    let spool = std::env::temp_dir().join(format!("bench-isolation-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&spool)?;
    config.scheduler.spool_dir = spool.clone();
    let services = [Service::Contracts, Service::Metering, Service::Worker, Service::Scheduler, Service::Gateway];
    let given = Given { pool: Some(pool), worker_backends: vec![backend] };
    let platform = reservoir_platform::build(config, &services, given).await?;
    let gateway = platform.endpoints.gateway.clone().ok_or_else(|| anyhow::anyhow!("no gateway built"))?;
    let worker = platform.endpoints.workers.first().cloned().ok_or_else(|| anyhow::anyhow!("no worker built"))?;
    tokio::spawn(async move {
        if let Err(e) = platform.run_until_stopped(shutdown).await {
            tracing::error!(error = %e, "the platform stopped with an error");
        }
        let _ = std::fs::remove_dir_all(&spool);
    });
    Ok((gateway, worker))
}

/// The model's weights and prefill rate as `/v1/models` shows them to a
/// tenant, once its worker is up (listed only then).
async fn served(http: &reqwest::Client, gateway: &str, token: &str) -> anyhow::Result<Served> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: Value = http.get(format!("{gateway}/v1/models")).bearer_auth(token).send().await?.json().await?;
        let model = list["data"].as_array().and_then(|d| d.iter().find(|m| m["id"] == MODEL));
        if let Some(m) = model {
            let weight = |k: &str| m[k].as_str().and_then(|s| s.parse::<f64>().ok()).context(format!("{k} in {m}"));
            return Ok(Served {
                weights: Weights { prompt: weight("prompt_weight")?, completion: weight("completion_weight")? },
                prefill_tokens_per_s: m["prefill_tokens_per_s"]
                    .as_u64()
                    .and_then(|r| u32::try_from(r).ok())
                    .context("prefill_tokens_per_s")?,
            });
        }
        anyhow::ensure!(Instant::now() < deadline, "{MODEL} never appeared in /v1/models: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An hourly premium contract, reserved as a tenant does (the same key each
/// phase: made once).
async fn reserve(http: &reqwest::Client, gateway: &str, token: &str, rate: u32) -> anyhow::Result<()> {
    let response = http
        .post(format!("{gateway}/v1/reservations"))
        .bearer_auth(token)
        .header("Idempotency-Key", "bench-isolation")
        .json(&json!({"model": MODEL, "rate": rate, "tier": TIER.as_str(), "term": "hourly"}))
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "reserving: {status} {}", response.text().await.unwrap_or_default());
    Ok(())
}

/// The reserved and spot traces of this run, each request with its body,
/// its prompt counted as the platform counts it, and its TTFT target.
fn plan(
    config: &Config,
    seed: u64,
    served: &Served,
    tokenizer: &Tokenizer,
    timing: Timing,
    capacity: f64,
    rate_each: u32,
) -> anyhow::Result<(Vec<Planned>, Vec<Planned>)> {
    // Over the warm-up and the window alike.
    let traffic = timing.warm_up + timing.window;
    let duration_us = u64::try_from(traffic.as_micros()).unwrap_or(u64::MAX);
    let spec = |tag: &str, seed: u64, requests_per_s: f64| TraceSpec::chat(seed, tag, duration_us, requests_per_s);
    let w = served.weights;
    let system = |index: usize, tenant: &str| format!("Request {index} of {tenant}. Answer at length.");
    let prompt_tokens = |system: &str, prompt: &str| {
        let messages = [ChatMessage::new("system", system), ChatMessage::new("user", prompt)];
        chat_prompt(tokenizer, &messages).len()
    };
    // In real tokens, chat template included ("reserved-0": every tenant's
    // name has as many tokens).
    let cost = |r: &TraceRequest| {
        prompt_tokens(&system(r.index, "reserved-0"), &r.prompt) as f64 * w.prompt
            + f64::from(r.max_tokens) * w.completion
    };
    let reserved_work = f64::from(rate_each) * RESERVED_TENANTS as f64 * RESERVED_OFFERED * traffic.as_secs_f64();
    let reserved = trace::generate_offering(&spec("reserved", seed, 1.0), reserved_work, cost)?;
    let mean_cost = trace::mean_cost(&spec("size", seed, 1.0), w.prompt, w.completion, 20_000);
    let spot = trace::generate(&spec("spot", seed.wrapping_add(1), capacity * SPOT_OFFERED / mean_cost))?;
    // Each reserved request goes to the tenant that has offered least so
    // far, so each offers its share of the rate, not one more than another.
    let mut offered = [0.0f64; RESERVED_TENANTS];
    let reserved_tenant: Vec<usize> = reserved
        .iter()
        .map(|r| {
            let least = (0..RESERVED_TENANTS).min_by(|&a, &b| offered[a].total_cmp(&offered[b])).unwrap_or(0);
            offered[least] += cost(r);
            least
        })
        .collect();
    let banned: Vec<u32> = tokenizer.eos_id.into_iter().collect();
    let policy = reservoir_sla::TierPolicy::of(TIER);
    let make = |r: &TraceRequest, reserved: bool| -> anyhow::Result<Planned> {
        let tenant = if reserved {
            format!("reserved-{}", reserved_tenant.get(r.index).copied().unwrap_or(0))
        } else {
            format!("spot-{}", r.index % SPOT_TENANTS)
        };
        let system = system(r.index, &tenant);
        let prompt_tokens = u32::try_from(prompt_tokens(&system, &r.prompt))?;
        let target = policy.ttft_target_ms(u64::from(prompt_tokens), served.prefill_tokens_per_s);
        Ok(Planned {
            at: Duration::from_micros(r.at_us),
            call: client::Call {
                reserved,
                token: mint(config, &tenant)?,
                body: client::body(MODEL, &system, &r.prompt, r.max_tokens, &banned, !reserved),
                prompt_tokens,
                max_tokens: r.max_tokens,
                ttft_target_ms: target as f64,
            },
        })
    };
    let reserved = reserved.iter().map(|r| make(r, true)).collect::<anyhow::Result<_>>()?;
    let spot = spot.iter().map(|r| make(r, false)).collect::<anyhow::Result<_>>()?;
    Ok((reserved, spot))
}

/// Sends every planned request at its time from `start`; spot requests
/// still running at the end of the window are cut (their clients leave),
/// reserved ones are waited for up to `straggler_wait` more.
async fn run_phase(
    http: &reqwest::Client,
    gateway: &str,
    reserved: &[Planned],
    spot: &[Planned],
    start: Instant,
    window: std::ops::Range<Instant>,
    straggler_wait: Duration,
) -> Vec<Observed> {
    let url = format!("{gateway}/v1/chat/completions");
    let window_end = window.end;
    let mut all: Vec<&Planned> = reserved.iter().chain(spot).collect();
    all.sort_by_key(|p| p.at);
    let mut tasks = Vec::with_capacity(all.len());
    for p in all {
        tokio::time::sleep_until((start + p.at).into()).await;
        let cut_at = if p.call.reserved { window_end + straggler_wait } else { window_end };
        let call = p.call.clone();
        let (http, url) = (http.clone(), url.clone());
        let window = window.clone();
        tasks.push(tokio::spawn(async move { client::run(&http, &url, call, window, cut_at).await }));
    }
    let mut observed = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(o) = t.await {
            observed.push(o);
        }
    }
    observed
}

/// One request per reserved tenant before the clock starts, not counted:
/// connections and the contract cache are warm, as on a platform that has
/// been serving for a while (their prompts share nothing with the trace's).
async fn warm_up(http: &reqwest::Client, gateway: &str, config: &Config, tokenizer: &Tokenizer) -> anyhow::Result<()> {
    let url = format!("{gateway}/v1/chat/completions");
    let banned: Vec<u32> = tokenizer.eos_id.into_iter().collect();
    let end = Instant::now() + Duration::from_secs(30);
    let mut calls = Vec::with_capacity(RESERVED_TENANTS);
    for i in 0..RESERVED_TENANTS {
        let system = format!("Warm-up {} of reserved-{i}.", uuid::Uuid::new_v4().simple());
        calls.push(client::Call {
            reserved: true,
            token: mint(config, &format!("reserved-{i}"))?,
            body: client::body(MODEL, &system, "Say hello.", 4, &banned, false),
            prompt_tokens: 0,
            max_tokens: 4,
            ttft_target_ms: 0.0,
        });
    }
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|call| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move { client::run(&http, &url, call, Instant::now()..end, end).await })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    Ok(())
}
