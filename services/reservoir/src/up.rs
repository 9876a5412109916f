//! `reservoir up`: the whole platform in one process.

use std::net::SocketAddr;

use anyhow::Context;
use reservoir_domain::{ModelId, Role};
use reservoir_platform::{Config, Given, Service};
use reservoir_runtime::{Shutdown, db};
use serde::Serialize;

use crate::workers::{self, WorkerEndpoint};

/// Where scripts find the services.
#[derive(Serialize, Clone)]
struct Endpoints {
    gateway: String,
    contracts: String,
    metering: String,
    scheduler: String,
    scheduler_metrics: String,
    sla: String,
    billing: String,
    database: String,
    workers: Vec<WorkerEndpoint>,
}

/// Written to a temporary file and renamed, so readers never see half a file.
fn write_endpoints(path: &std::path::Path, endpoints: &Endpoints) -> anyhow::Result<()> {
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_string_pretty(endpoints)?)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// A port that is taken is no reason to fail a local run: take a free one
/// and say so (the endpoints file and the banner tell the truth).
fn free_if_taken(addr: SocketAddr) -> SocketAddr {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => addr,
        Err(_) => {
            tracing::warn!(%addr, "address in use; taking a free port instead");
            SocketAddr::new(addr.ip(), 0)
        }
    }
}

pub async fn run(mut config: Config, worker_count: usize) -> anyhow::Result<()> {
    let database_url = config.database_url()?.to_owned();
    let pool = db::connect(&database_url, config.database_max_connections).await?;
    db::migrate(&pool).await?;
    let default_model = &config.contracts.default_model;
    let model_id: ModelId = default_model.id.parse().context("contracts.default_model.id")?;
    reservoir_contracts::seed_model(&pool, &model_id, default_model.capacity_tokens_per_s, default_model.headroom)
        .await?;
    let capacity_note =
        if default_model.calibrate { calibrate_pool(&config, &pool, &model_id).await } else { "configured".to_owned() };

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    // The services (worker children included) authenticate each other with
    // the configured internal token, else with one kept in the state folder
    // (made on first use, readable by this user only, for grpcurl).
    if !config.internal.token().is_set() {
        let path = config.state_dir.join("internal-token");
        config.internal.token = Some(reservoir_gateway::auth::read_or_create_secret(&path)?);
    }

    config.contracts.listen = free_if_taken(config.contracts.listen);
    config.metering.listen = free_if_taken(config.metering.listen);
    config.scheduler.listen = free_if_taken(config.scheduler.listen);
    config.scheduler.metrics_listen = free_if_taken(config.scheduler.metrics_listen);
    config.gateway.listen = free_if_taken(config.gateway.listen);
    config.sla.listen = free_if_taken(config.sla.listen);
    config.billing.listen = free_if_taken(config.billing.listen);
    let planned_workers = workers::plan(worker_count)?;
    // Workers are not listed: each registers itself with the scheduler.
    config.scheduler.workers = Vec::new();
    let services =
        [Service::Contracts, Service::Metering, Service::Scheduler, Service::Sla, Service::Billing, Service::Gateway];
    let platform = reservoir_platform::build(config, &services, Given { pool: Some(pool), ..Given::default() }).await?;
    let config = platform.config.clone();
    let built = platform.endpoints.clone();
    let endpoint = |url: &Option<String>| url.clone().unwrap_or_default();
    let (gateway_url, contracts_url, metering_url, scheduler_url, metrics_url) = (
        endpoint(&built.gateway),
        endpoint(&built.contracts),
        endpoint(&built.metering),
        endpoint(&built.scheduler),
        endpoint(&built.scheduler_metrics),
    );

    let endpoints = Endpoints {
        gateway: gateway_url.clone(),
        contracts: contracts_url.clone(),
        metering: metering_url.clone(),
        scheduler: scheduler_url.clone(),
        scheduler_metrics: metrics_url.clone(),
        sla: endpoint(&built.sla),
        billing: endpoint(&built.billing),
        database: redact(&database_url),
        workers: Vec::new(),
    };
    std::fs::create_dir_all(&config.state_dir)?;
    let endpoints_path = config.state_dir.join("endpoints.json");
    write_endpoints(&endpoints_path, &endpoints)?;
    let (worker_table, worker_tasks) = {
        let (path, base) = (endpoints_path.clone(), endpoints.clone());
        let child_env =
            workers::ChildEnv { scheduler_url: scheduler_url.clone(), internal_token: config.internal.token.clone() };
        workers::spawn_all(planned_workers, &child_env, &shutdown, move |workers| {
            let current = Endpoints { workers: workers.to_vec(), ..base.clone() };
            if let Err(e) = write_endpoints(&path, &current) {
                tracing::warn!(error = %e, "cannot update endpoints.json");
            }
        })?
    };
    let worker_lines: String = worker_table
        .lock()
        .map(|w| w.iter().map(|w| format!("\n  {:<10} {}   (gRPC WorkerService)", w.id, w.addr)).collect())
        .unwrap_or_default();

    let tenant_token = reservoir_gateway::auth::mint(&config.auth, "acme", Role::Tenant)?;
    let admin_token = reservoir_gateway::auth::mint(&config.auth, "admin", Role::Admin)?;
    println!(
        "\nReservoir is up.\n\
         \n  gateway    {gateway_url}   (API explorer: {gateway_url}/docs)\
         \n  contracts  {contracts_url}   (gRPC, health and reflection: grpcurl -plaintext {host} list)\
         \n  metering   {metering_url}   (gRPC usage records and aggregates)\
         \n  scheduler  {scheduler_url}   (gRPC scheduling; Prometheus: {metrics_url}; usage spool: {spool}){worker_lines}\
         \n  sla        {sla_url}   (gRPC SLA; status page: {gateway_url}/status)\
         \n  billing    {billing_url}   (gRPC billing; invoices: {gateway_url}/v1/invoices)\
         \n  endpoints  {endpoints}\
         \n  pool       {model}: capacity {capacity_note}\
         \n\nA tenant token for \"acme\" (more with: reservoir token --tenant NAME):\
         \n\n  export TOKEN={tenant_token}\
         \n\nReserve 50 weighted tokens/s for an hour-by-hour contract:\
         \n\n  curl -s -X POST {gateway_url}/v1/reservations -H \"Authorization: Bearer $TOKEN\" \\\
         \n       -H 'Content-Type: application/json' -H 'Idempotency-Key: first-try' \\\
         \n       -d '{{\"model\": \"{model}\", \"rate\": 50, \"tier\": \"standard\", \"term\": \"hourly\"}}'\
         \n\nAn admin token: export ADMIN_TOKEN={admin_token}\
         \n\nPress Ctrl-C to stop.\n",
        host = contracts_url.trim_start_matches("http://"),
        endpoints = endpoints_path.display(),
        spool = config.scheduler.spool_dir.display(),
        model = model_id,
        sla_url = endpoints.sla,
        billing_url = endpoints.billing,
    );

    let served = platform.run_until_stopped(shutdown.clone()).await;
    for task in worker_tasks {
        task.await?;
    }
    served?;
    println!("Reservoir stopped.");
    Ok(())
}

/// Measures one worker's throughput and token costs on this machine and
/// records them as the model's capacity, prefill rate and weights; says what
/// happened, for the banner. A failure keeps the configured capacity and
/// weights: the platform still starts.
async fn calibrate_pool(config: &Config, pool: &sqlx::PgPool, model: &ModelId) -> String {
    let path = config.worker.model_path.clone();
    if !path.exists() {
        tracing::warn!(path = %path.display(), "model file missing; keeping the configured capacity (run scripts/fetch-model)");
        return "configured (model file missing)".into();
    }
    let loaded = match tokio::task::spawn_blocking(move || reservoir_engine::load(&path)).await {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "calibration failed; keeping the configured capacity");
            return "configured (calibration failed)".into();
        }
        Err(e) => {
            tracing::warn!(error = %e, "calibration panicked; keeping the configured capacity");
            return "configured (calibration failed)".into();
        }
    };
    match reservoir_platform::calibrate::calibrate(
        pool,
        model,
        loaded.model,
        loaded.tokenizer,
        config.worker.step_token_budget,
        reservoir_platform::calibrate::CALIBRATION_RUNS,
    )
    .await
    {
        Ok(c) => format!(
            "{} weighted tokens/s (prefill {} tokens/s; a prompt token weighs {}, a generated one {}), measured on start",
            c.tokens_per_s, c.prefill_tokens_per_s, c.prompt_weight, c.completion_weight
        ),
        Err(e) => {
            tracing::warn!(error = %e, "calibration not recorded; keeping the configured capacity and weights");
            format!("configured (calibration not recorded: {e})")
        }
    }
}

/// The database URL without its password, for the endpoints file.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
