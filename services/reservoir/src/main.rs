//! The one Reservoir binary.
//!
//! - `reservoir up`: every service in this process against one database, with
//!   the endpoints printed and written to `.reservoir/endpoints.json`;
//! - `reservoir serve <service>`: one service (one container each);
//! - `reservoir token`: a signed JWT for local use;
//! - `reservoir migrate`: apply the database migrations;
//! - `reservoir billing run --period YYYY-MM`: close a month's invoices;
//! - `reservoir generate`, `reservoir perplexity`: the engine on a local model;
//! - `reservoir bench <what>`: measurements (`bench engine`).

mod bench;
mod bench_billing;
mod bench_isolation;
mod bench_metering;
mod bench_portal;
mod bench_sched;
mod billing_cli;
mod engine_cli;
mod healthcheck;
mod up;
mod workers;

use clap::{Parser, Subcommand, ValueEnum};
use reservoir_domain::Role;
use reservoir_platform::{Config, Given, Service};
use reservoir_runtime::{Shutdown, db, telemetry};

#[derive(Parser)]
#[command(name = "reservoir", version, about = "Reserved LLM inference throughput")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform: the control plane in this process, each worker
    /// as a child process (needs DATABASE_URL; `scripts/up` provides one).
    Up {
        /// Inference workers to run, each its own child process.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Run one service (apply the migrations first with `reservoir migrate`).
    Serve {
        #[arg(value_enum)]
        service: Service,
    },
    /// Print a signed token for local use (the token is the last line).
    Token {
        /// The tenant the token speaks for (for admin tokens: the operator's name).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value = "tenant")]
        role: TokenRole,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Exit 0 when a service answers its health check (for container health checks).
    Healthcheck {
        /// `http://host:port/path` of an HTTP service, or `http://host:port` of a gRPC one.
        url: String,
        /// Check this gRPC service with `grpc.health.v1` instead of an HTTP GET.
        #[arg(long)]
        grpc: Option<String>,
    },
    /// Generate a chat reply with the engine, streamed to stdout as it is generated.
    Generate(engine_cli::GenerateArgs),
    /// Perplexity of a text file, computed as llama.cpp's perplexity tool does.
    Perplexity(engine_cli::PerplexityArgs),
    /// Billing: `billing run --period 2026-11` closes a month.
    Billing {
        #[command(subcommand)]
        what: billing_cli::BillingCommand,
    },
    /// Benchmarks (`bench engine`): figures for people, then one JSON line.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TokenRole {
    Tenant,
    Admin,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load()?;
    telemetry::init(&config.log);
    match cli.command {
        Command::Up { workers } => up::run(config, workers).await,
        Command::Serve { service } => serve(config, service).await,
        Command::Token { tenant, role } => token(&config, tenant, role),
        Command::Healthcheck { url, grpc } => healthcheck::run(&url, grpc.as_deref()).await,
        // Blocking CPU work; nothing else runs on the runtime meanwhile.
        Command::Generate(args) => engine_cli::generate(&args),
        Command::Perplexity(args) => engine_cli::perplexity(&args),
        Command::Bench { what } => bench::run(&config, &what).await,
        Command::Billing { what } => billing_cli::run(&config, &what).await,
        Command::Migrate => {
            let pool = db::connect(config.database_url()?, 2).await?;
            db::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
    }
}

fn token(config: &Config, tenant: Option<String>, role: TokenRole) -> anyhow::Result<()> {
    let (subject, role) = match role {
        TokenRole::Tenant => {
            let tenant = tenant.ok_or_else(|| anyhow::anyhow!("--tenant is required for tenant tokens"))?;
            tenant.parse::<reservoir_domain::TenantId>()?;
            (tenant, Role::Tenant)
        }
        TokenRole::Admin => (tenant.unwrap_or_else(|| "admin".into()), Role::Admin),
    };
    let token = reservoir_gateway::auth::mint(&config.auth, &subject, role)?;
    eprintln!("{role} token for {subject:?}, valid {} s:", config.auth.token_ttl_s);
    println!("{token}");
    Ok(())
}

/// One service in this process (one container each in docker-compose.yml).
/// It does not migrate the database: `reservoir migrate` does, once.
async fn serve(config: Config, service: Service) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    if service == Service::Worker {
        reservoir_worker::lower_compute_priority();
        workers::stop_when_orphaned(&shutdown);
    }
    let platform = reservoir_platform::build(config, &[service], Given::default()).await?;
    tracing::info!(service = ?service, endpoints = ?platform.endpoints, "serving");
    platform.run_until_stopped(shutdown).await
}
