//! `reservoir up`: the whole platform in one process.

use std::net::SocketAddr;

use anyhow::Context;
use reservoir_contracts::ContractsSettings;
use reservoir_domain::{ModelId, Role};
use reservoir_gateway::GatewaySettings;
use reservoir_runtime::{Config, Shutdown, db};
use serde::Serialize;

pub fn contracts_settings(config: &Config) -> ContractsSettings {
    ContractsSettings { listen: config.contracts.listen, default_currency: config.contracts.default_currency }
}

pub fn gateway_settings(config: &Config, contracts_url: &str) -> GatewaySettings {
    GatewaySettings {
        listen: config.gateway.listen,
        contracts_url: contracts_url.to_owned(),
        body_limit_bytes: config.gateway.body_limit_bytes,
        rate_limit: config.gateway.rate_limit,
        auth: config.auth.clone(),
    }
}

/// Where scripts find the services.
#[derive(Serialize)]
struct Endpoints {
    gateway: String,
    contracts: String,
    database: String,
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

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    let database_url = config.database_url()?.to_owned();
    let pool = db::connect(&database_url, config.database_max_connections).await?;
    db::migrate(&pool).await?;
    let default_model = &config.contracts.default_model;
    let model_id: ModelId = default_model.id.parse().context("contracts.default_model.id")?;
    reservoir_contracts::seed_model(&pool, &model_id, default_model.capacity_tokens_per_s, default_model.headroom)
        .await?;

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();

    config.contracts.listen = free_if_taken(config.contracts.listen);
    let contracts = reservoir_contracts::build(&contracts_settings(&config), pool.clone()).await?;
    let contracts_url = format!("http://{}:{}", config.contracts.listen.ip(), contracts.port());
    config.gateway.listen = free_if_taken(config.gateway.listen);
    let gateway = reservoir_gateway::build(&gateway_settings(&config, &contracts_url)).await?;
    let gateway_url = format!("http://{}:{}", config.gateway.listen.ip(), gateway.port());

    let endpoints = Endpoints { gateway: gateway_url.clone(), contracts: contracts_url.clone(), database: redact(&database_url) };
    std::fs::create_dir_all(&config.state_dir)?;
    let endpoints_path = config.state_dir.join("endpoints.json");
    std::fs::write(&endpoints_path, serde_json::to_string_pretty(&endpoints)?)?;

    let tenant_token = reservoir_gateway::auth::mint(&config.auth, "acme", Role::Tenant)?;
    let admin_token = reservoir_gateway::auth::mint(&config.auth, "admin", Role::Admin)?;
    println!(
        "\nReservoir is up.\n\
         \n  gateway    {gateway_url}   (API explorer: {gateway_url}/docs)\
         \n  contracts  {contracts_url}   (gRPC, health and reflection: grpcurl -plaintext {host} list)\
         \n  endpoints  {endpoints}\
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
        model = model_id,
    );

    let contracts_task = tokio::spawn(contracts.run_until_stopped(shutdown.clone()));
    let gateway_task = tokio::spawn(gateway.run_until_stopped(shutdown.clone()));
    let (contracts_result, gateway_result) = tokio::join!(contracts_task, gateway_task);
    pool.close().await;
    contracts_result??;
    gateway_result??;
    println!("Reservoir stopped.");
    Ok(())
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
