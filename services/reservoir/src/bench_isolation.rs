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
//! Needs DATABASE_URL (`scripts/pg run -- reservoir bench isolation`).

mod client;
mod engine_work;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use reservoir_domain::{ModelId, Role, Tier};
use reservoir_engine::tokenizer::{ChatMessage, Tokenizer, chat_prompt};
use reservoir_platform::{Config, Given, Service};
use reservoir_runtime::{Shutdown, db};
use reservoir_workload::report::{self, Observed, PhaseSummary, Weights};
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
    /// Phases of 8 s instead of 30 s, reserved stragglers cut after 6 s
    /// more instead of 60 (finishes within about a minute).
    #[arg(long)]
    quick: bool,
    /// The trace's seed: the same seed sends the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = ".reservoir/models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
}

/// What the platform says of the model through `/v1/models`.
struct Served {
    weights: Weights,
    prefill_tokens_per_s: u32,
}

/// A trace request made ready to send: its tenant, body and counts.
struct Planned {
    at: Duration,
    call: client::Call,
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
    let phase = Duration::from_secs(if args.quick { 8 } else { 30 });
    // Reserved requests still running at the end of a phase are waited for
    // this long; what they did not get by then counts as not delivered.
    let straggler_wait = Duration::from_secs(if args.quick { 6 } else { 60 });
    let admin_url = config.database_url()?.to_owned();
    let name = format!("bench_isolation_{}", uuid::Uuid::new_v4().simple());
    let admin = db::connect(&admin_url, 2).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await?;
    let url = format!("{}/{name}", admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url));
    let outcome = run_in(config, args, &url, phase, straggler_wait).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await?;
    outcome
}

async fn run_in(
    config: &Config,
    args: &Args,
    url: &str,
    phase: Duration,
    straggler_wait: Duration,
) -> anyhow::Result<()> {
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
    )
    .await?;
    let capacity = f64::from(calibration.tokens_per_s);
    let rate_each = (capacity * RESERVED_SHARE_EACH).floor().max(1.0) as u32;
    pool.close().await;

    let mut config = bench_config(config)?;
    let mut planned: Option<(Vec<Planned>, Vec<Planned>, Served)> = None;
    let mut results = Vec::new();
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
            let (reserved, spot) = plan(&config, args.seed, &served, &loaded.tokenizer, phase, capacity, rate_each)?;
            print_setup(&calibration, &served, rate_each, phase, &reserved, &spot, capacity);
            planned = Some((reserved, spot, served));
        }
        let Some((reserved, spot, served)) = &planned else { anyhow::bail!("no trace") };
        warm_up(&http, &gateway, &config, &loaded.tokenizer).await?;
        let spot: &[Planned] = if p.spot { spot } else { &[] };
        let before = engine_work::read(&worker).await?;
        let at_end = tokio::spawn(engine_work::read_at(worker, Instant::now() + phase));
        let observed = run_phase(&http, &gateway, reserved, spot, phase, straggler_wait).await;
        let after = at_end.await??;
        let secs = phase.as_secs_f64();
        let summary = report::summarize(&observed, served.weights, capacity, secs);
        let engine = engine_work::share_of_capacity(before, after, served.weights, capacity, secs);
        print_misses(p.label, &observed, served.prefill_tokens_per_s);
        shutdown.trigger();
        tokio::time::sleep(Duration::from_millis(300)).await;
        results.push((p.label, summary, engine));
    }
    print_results(&results);
    if args.quick {
        println!(
            "--quick: phases of {} s hold few reserved requests, so their p95 and p99 are the slowest one or two, \
             not a tail; run without --quick for figures to compare.",
            phase.as_secs()
        );
    }
    Ok(())
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
    phase: Duration,
    capacity: f64,
    rate_each: u32,
) -> anyhow::Result<(Vec<Planned>, Vec<Planned>)> {
    let duration_us = u64::try_from(phase.as_micros()).unwrap_or(u64::MAX);
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
    let reserved_work = f64::from(rate_each) * RESERVED_TENANTS as f64 * RESERVED_OFFERED * phase.as_secs_f64();
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

/// Sends every planned request at its time; spot requests still running at
/// the end of the phase are cut (their clients leave), reserved ones are
/// waited for up to `straggler_wait` more.
async fn run_phase(
    http: &reqwest::Client,
    gateway: &str,
    reserved: &[Planned],
    spot: &[Planned],
    phase: Duration,
    straggler_wait: Duration,
) -> Vec<Observed> {
    let url = format!("{gateway}/v1/chat/completions");
    let start = Instant::now();
    let window_end = start + phase;
    let mut all: Vec<&Planned> = reserved.iter().chain(spot).collect();
    all.sort_by_key(|p| p.at);
    let mut tasks = Vec::with_capacity(all.len());
    for p in all {
        tokio::time::sleep_until((start + p.at).into()).await;
        let cut_at = if p.call.reserved { window_end + straggler_wait } else { window_end };
        let call = p.call.clone();
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move { client::run(&http, &url, call, window_end, cut_at).await }));
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
            tokio::spawn(async move { client::run(&http, &url, call, end, end).await })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    Ok(())
}

fn print_setup(
    calibration: &reservoir_platform::calibrate::Calibration,
    served: &Served,
    rate_each: u32,
    phase: Duration,
    reserved: &[Planned],
    spot: &[Planned],
    capacity: f64,
) {
    let w = served.weights;
    let demand = |p: &[Planned]| -> f64 {
        p.iter().map(|p| f64::from(p.call.prompt_tokens) * w.prompt + f64::from(p.call.max_tokens) * w.completion).sum()
    };
    let secs = phase.as_secs_f64();
    let prompts: Vec<f64> = reserved.iter().chain(spot).map(|p| f64::from(p.call.prompt_tokens)).collect();
    let q = |x: f64| report::quantile(&prompts, x).unwrap_or(f64::NAN);
    println!(
        "calibrated where chat traffic's work sits: capacity {} weighted tokens/s (decode at batch {} from {} tokens \
         of context), a prompt token weighs {} (prefill of a {}-token prompt), a generated one {} (as /v1/models \
         shows them); TTFT allowance: prefill {} tokens/s (a {}-token prompt)",
        calibration.tokens_per_s,
        reservoir_platform::calibrate::CALIBRATION_BATCH,
        calibration.at.decode_context,
        w.prompt,
        calibration.at.prompt_tokens,
        w.completion,
        served.prefill_tokens_per_s,
        reservoir_platform::calibrate::ALLOWANCE_PROMPT_TOKENS,
    );
    println!(
        "trace: {} reserved requests ({RESERVED_TENANTS} tenants at {rate_each} weighted tokens/s each, {TIER}), \
         offering {:.0}% of their rate; {} spot requests offering {:.1}x capacity; phases of {secs} s",
        reserved.len(),
        demand(reserved) / secs / (f64::from(rate_each) * RESERVED_TENANTS as f64) * 100.0,
        spot.len(),
        demand(spot) / secs / capacity,
    );
    println!(
        "prompt tokens (chat template included) p50 {:.0}, p90 {:.0}, p99 {:.0}, max {:.0}; max_tokens 16 to 256 \
         (EOS banned: each request generates all of them)",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}

/// The reserved tenants' requests of a phase that missed their TTFT target,
/// so a miss can be traced to its prompt's length, to the reserved prompts
/// ahead of it (sent before, due no later, still without a first token:
/// any order that met their targets ran them first), or to the class it was
/// served in (beyond the contract's rate, a request is burst or spot). When
/// those prompts and its own need longer than its target at the measured
/// prefill rate, no order of that work could have met every target.
fn print_misses(label: &str, observed: &[Observed], prefill_tokens_per_s: u32) {
    let missed: Vec<&Observed> =
        observed.iter().filter(|o| o.reserved && o.ttft_ms.is_none_or(|t| t > o.ttft_target_ms)).collect();
    for o in missed {
        let ttft = o.ttft_ms.map_or("no token".to_owned(), |t| format!("TTFT {t:.0} ms"));
        let class = o.served_as.as_deref().unwrap_or("unknown");
        let (ahead, ahead_tokens) = o.reserved_prompts_ahead(observed);
        let need_ms = (ahead_tokens + u64::from(o.prompt_tokens)) as f64 * 1e3 / f64::from(prefill_tokens_per_s.max(1));
        let verdict = if need_ms > o.ttft_target_ms { "more than its target" } else { "within its target" };
        println!(
            "{label}: missed: {} prompt tokens, max_tokens {}, {ttft} against a target of {:.0} ms, served as {class}; \
             {ahead} reserved prompts ahead ({ahead_tokens} tokens): with its own, {need_ms:.0} ms at the measured \
             prefill rate, {verdict}",
            o.prompt_tokens, o.max_tokens, o.ttft_target_ms
        );
    }
}

fn print_results(results: &[(&str, PhaseSummary, f64)]) {
    let pct = |x: f64| if x.is_nan() { "-".to_owned() } else { format!("{:.1}%", x * 100.0) };
    let ms = |s: &PhaseSummary, f: fn(&report::Quantiles) -> f64| {
        s.reserved_ttft_ms.as_ref().map_or("-".to_owned(), |q| format!("{:.0}", f(q)))
    };
    println!(
        "\n{:<24} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>10} {:>6} {:>11} {:>10} {:>8} {:>8}",
        "phase",
        "reserved",
        "TTFT p50",
        "p95",
        "p99 ms",
        "in target",
        "decode",
        "delivered",
        "shed",
        "spot tok/s",
        "of left",
        "util",
        "engine"
    );
    for (label, s, engine) in results {
        let spot = |x: String| if s.spot_requests == 0 { "-".to_owned() } else { x };
        println!(
            "{label:<24} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>10} {:>6} {:>11} {:>10} {:>8} {:>8}",
            s.reserved_requests,
            ms(s, |q| q.p50),
            ms(s, |q| q.p95),
            ms(s, |q| q.p99),
            pct(s.reserved_within_target),
            s.reserved_decode_tokens_per_s_p50.map_or("-".to_owned(), |t| format!("{t:.1}")),
            pct(s.reserved_delivered_over_demanded),
            s.reserved_shed,
            spot(format!("{:.1}", s.spot_goodput_per_s)),
            spot(pct(s.spot_share_of_left)),
            pct(s.utilization),
            pct(*engine),
        );
    }
    let p99 = |i: usize| results.get(i).and_then(|(_, s, _)| s.reserved_ttft_ms.map(|q| q.p99)).unwrap_or(f64::NAN);
    println!(
        "\nreserved TTFT p99 under the flood / alone: {:.2}x; plain FCFS / alone: {:.2}x",
        p99(1) / p99(0),
        p99(2) / p99(0)
    );
    println!(
        "TTFT: client-side, sending to first token, reserved requests that got one. In target: first token within \
         the premium tier's 1 s + prompt tokens / measured prefill rate (none: a miss). Decode: median of the \
         reserved requests' tokens/s after their first (the premium floor is 6). Delivered: weighted tokens \
         received over demanded (a request not served in full demanded its prompt and max_tokens). Shed: refused \
         or failed by the platform. Spot tok/s: useful spot work, weighted tokens/s; of left: over the capacity \
         reserved work left. Util: useful work (prompt tokens once, prefix-cache hits and failover recomputation \
         not counted, plus generated tokens) over capacity, within the phase. Engine: every token the engine \
         computed during the phase (its own counters: work past the phase's edges and recomputation included, \
         prefix-cache hits not), weighted, over capacity: how much of the calibrated capacity a busy engine \
         computes on this traffic."
    );
    let mut json = serde_json::Map::new();
    for (label, s, engine) in results {
        json.insert(label.replace([' ', ','], "_"), summary_json(s, *engine));
    }
    println!("{}", Value::Object(json));
}

fn summary_json(s: &PhaseSummary, engine: f64) -> Value {
    let r3 = |x: f64| if x.is_nan() { Value::Null } else { json!((x * 1000.0).round() / 1000.0) };
    json!({
        "reserved_requests": s.reserved_requests,
        "reserved_ttft_ms_p50": s.reserved_ttft_ms.map(|q| q.p50.round()),
        "reserved_ttft_ms_p95": s.reserved_ttft_ms.map(|q| q.p95.round()),
        "reserved_ttft_ms_p99": s.reserved_ttft_ms.map(|q| q.p99.round()),
        "reserved_within_target": r3(s.reserved_within_target),
        "reserved_decode_tokens_per_s_p50": s.reserved_decode_tokens_per_s_p50.map(r3),
        "reserved_delivered_ratio": r3(s.reserved_delivered_over_demanded),
        "reserved_shed": s.reserved_shed,
        "reserved_without_token": s.reserved_without_token,
        "spot_requests": s.spot_requests,
        "spot_shed": s.spot_shed,
        "spot_goodput_tokens_per_s": r3(s.spot_goodput_per_s),
        "spot_share_of_left": r3(s.spot_share_of_left),
        "utilization": r3(s.utilization),
        "cached_prompt_share": r3(s.cached_prompt_share),
        "engine_work_over_capacity": r3(engine),
    })
}
