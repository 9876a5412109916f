//! The composition root: `build` makes any set of services from the
//! configuration, wires each to the others built with it (the addresses
//! they really listen on, port 0 included) and runs them together.
//! `reservoir up`, `reservoir serve <service>`, the benches and the
//! end-to-end test harness all start the platform through it.
//!
//! Migrations are not run here: `reservoir migrate` and `reservoir up` run
//! them (tests get migrated databases from `#[sqlx::test]`).

use std::net::SocketAddr;

use reservoir_domain::WorkerId;
use reservoir_runtime::{Shutdown, db};
use reservoir_worker::EngineBackend;
use sqlx::PgPool;

use crate::Config;

/// The services `build` can make (names as in docker-compose.yml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Contracts,
    Metering,
    Scheduler,
    Gateway,
    Worker,
    Sla,
    Billing,
}

/// What `build` is handed instead of making it from the configuration.
#[derive(Default)]
pub struct Given {
    /// The database (tests: one of their own); else connected to `database_url`.
    pub pool: Option<PgPool>,
    /// Workers over these backends run in this process (tests: tiny seeded
    /// models). Without them, `Service::Worker` loads `worker.model_path`.
    pub worker_backends: Vec<EngineBackend>,
}

/// Where the built services listen (URLs other services and clients use).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Endpoints {
    pub contracts: Option<String>,
    pub metering: Option<String>,
    pub scheduler: Option<String>,
    pub scheduler_metrics: Option<String>,
    pub gateway: Option<String>,
    pub sla: Option<String>,
    pub billing: Option<String>,
    pub workers: Vec<String>,
}

enum Server {
    Contracts(reservoir_contracts::Server),
    Metering(reservoir_metering::Server),
    Scheduler(reservoir_scheduler::Server),
    Gateway(reservoir_gateway::Server),
    /// With the id it registers itself under with `worker.scheduler_url`;
    /// `None`: a scheduler built beside it knows it already.
    Worker(reservoir_worker::Server, Option<WorkerId>),
    Sla(Box<reservoir_sla_service::Server>),
    Billing(Box<reservoir_billing_service::Server>),
}

/// Built services, bound to their ports, not yet serving.
pub struct Platform {
    /// The configuration as the services were built with it: listen
    /// addresses and URLs are the real ones.
    pub config: Config,
    pub endpoints: Endpoints,
    pub pool: Option<PgPool>,
    servers: Vec<Server>,
}

/// A URL other processes reach `addr` at (a wildcard address is reached on loopback).
fn url_of(addr: SocketAddr, port: u16) -> String {
    let ip = if addr.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { addr.ip() };
    format!("http://{}", SocketAddr::new(ip, port))
}

/// Internal gRPC services trust whoever presents the internal token; one
/// reachable beyond this machine without a token would trust anyone (a
/// rogue worker could register and receive prompts). The gateway is public
/// by design and authenticates with JWTs.
fn refuse_open_internal_ports(config: &Config, services: &[Service]) -> anyhow::Result<()> {
    if config.internal.token().is_set() {
        return Ok(());
    }
    let listens = [
        (Service::Contracts, "contracts.listen", config.contracts.listen),
        (Service::Metering, "metering.listen", config.metering.listen),
        (Service::Scheduler, "scheduler.listen", config.scheduler.listen),
        (Service::Worker, "worker.listen", config.worker.listen),
        (Service::Sla, "sla.listen", config.sla.listen),
        (Service::Billing, "billing.listen", config.billing.listen),
    ];
    for (service, key, addr) in listens {
        if services.contains(&service) && !addr.ip().is_loopback() {
            anyhow::bail!(
                "{key} is {addr}, beyond this machine, and no internal token is set: set internal.token \
                 (RESERVOIR__INTERNAL__TOKEN) or listen on 127.0.0.1"
            );
        }
    }
    Ok(())
}

/// Builds `services` (in dependency order, whatever order they are named in).
pub async fn build(mut config: Config, services: &[Service], given: Given) -> anyhow::Result<Platform> {
    let wants = |s: Service| services.contains(&s);
    let token = config.internal.token();
    refuse_open_internal_ports(&config, services)?;
    let needs_db =
        wants(Service::Contracts) || wants(Service::Metering) || wants(Service::Sla) || wants(Service::Billing);
    let pool = match given.pool {
        Some(pool) => Some(pool),
        None if needs_db => Some(db::connect(config.database_url()?, config.database_max_connections).await?),
        None => None,
    };
    let mut servers = Vec::new();
    let mut endpoints = Endpoints::default();
    if let (true, Some(pool)) = (wants(Service::Contracts), &pool) {
        let server = reservoir_contracts::build(&config.contracts, pool.clone(), token.clone()).await?;
        let url = url_of(config.contracts.listen, server.port());
        config.contracts.listen.set_port(server.port());
        config.scheduler.contracts_url = url.clone();
        config.sla.contracts_url = url.clone();
        config.billing.contracts_url = url.clone();
        config.gateway.contracts_url = url.clone();
        endpoints.contracts = Some(url);
        servers.push(Server::Contracts(server));
    }
    if let (true, Some(pool)) = (wants(Service::Metering), &pool) {
        let server = reservoir_metering::build(&config.metering, pool.clone(), token.clone()).await?;
        let url = url_of(config.metering.listen, server.port());
        config.metering.listen.set_port(server.port());
        config.scheduler.metering_url = url.clone();
        config.sla.metering_url = url.clone();
        config.billing.metering_url = url.clone();
        config.gateway.metering_url = url.clone();
        endpoints.metering = Some(url);
        servers.push(Server::Metering(server));
    }
    if wants(Service::Worker) {
        let backends = if given.worker_backends.is_empty() {
            let settings = config.worker.clone();
            vec![tokio::task::spawn_blocking(move || reservoir_worker::load_backend(&settings)).await??]
        } else {
            given.worker_backends
        };
        if backends.len() > 1 && config.worker.listen.port() != 0 {
            anyhow::bail!("several in-process workers need worker.listen on port 0");
        }
        // Workers register themselves when the scheduler is elsewhere, each
        // under an id of its own (several in-process workers cannot share a
        // configured one).
        let registers = !wants(Service::Scheduler);
        if registers && backends.len() > 1 && config.worker.id.is_some() {
            anyhow::bail!("several in-process workers cannot share worker.id; leave it unset");
        }
        for backend in backends {
            let server = reservoir_worker::build(&config.worker, backend, token.clone()).await?;
            let url = url_of(config.worker.listen, server.port());
            if wants(Service::Scheduler) {
                config.scheduler.workers.push(url.clone());
            }
            endpoints.workers.push(url);
            let id = if registers { Some(reservoir_worker::own_id(config.worker.id.as_deref())?) } else { None };
            servers.push(Server::Worker(server, id));
        }
    }
    if wants(Service::Scheduler) {
        let server = reservoir_scheduler::build(&config.scheduler, token.clone()).await?;
        let url = url_of(config.scheduler.listen, server.port());
        config.scheduler.listen.set_port(server.port());
        config.scheduler.metrics_listen.set_port(server.metrics_port());
        endpoints.scheduler_metrics =
            Some(format!("{}/metrics", url_of(config.scheduler.metrics_listen, server.metrics_port())));
        config.gateway.scheduler_url = url.clone();
        config.sla.scheduler_url = url.clone();
        endpoints.scheduler = Some(url);
        servers.push(Server::Scheduler(server));
    }
    if let (true, Some(pool)) = (wants(Service::Sla), &pool) {
        let server = reservoir_sla_service::build(&config.sla, pool.clone(), token.clone()).await?;
        let url = url_of(config.sla.listen, server.port());
        config.sla.listen.set_port(server.port());
        config.gateway.sla_url = url.clone();
        config.billing.sla_url = url.clone();
        endpoints.sla = Some(url);
        servers.push(Server::Sla(Box::new(server)));
    }
    if let (true, Some(pool)) = (wants(Service::Billing), &pool) {
        let server = reservoir_billing_service::build(&config.billing, pool.clone(), token.clone()).await?;
        let url = url_of(config.billing.listen, server.port());
        config.billing.listen.set_port(server.port());
        config.gateway.billing_url = url.clone();
        endpoints.billing = Some(url);
        servers.push(Server::Billing(Box::new(server)));
    }
    if wants(Service::Gateway) {
        let server = reservoir_gateway::build(&config.gateway, &config.auth, token.clone()).await?;
        let url = url_of(config.gateway.listen, server.port());
        config.gateway.listen.set_port(server.port());
        endpoints.gateway = Some(url);
        servers.push(Server::Gateway(server));
    }
    Ok(Platform { config, endpoints, pool, servers })
}

impl Platform {
    /// The SLA job's handle, when the SLA service is part of this platform
    /// (tests run it with a clock of their own).
    pub fn sla(&self) -> Option<reservoir_sla_service::Sla> {
        self.servers.iter().find_map(|s| match s {
            Server::Sla(server) => Some(server.sla()),
            _ => None,
        })
    }

    /// The billing service's handle, when it is part of this platform
    /// (tests run periods and finalize with a clock of their own).
    pub fn billing(&self) -> Option<reservoir_billing_service::Billing> {
        self.servers.iter().find_map(|s| match s {
            Server::Billing(server) => Some(server.billing()),
            _ => None,
        })
    }

    /// Serves every built service until `shutdown`, then waits for each to
    /// stop (the scheduler ships what its usage spool holds, within a bound).
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Platform { config, pool, servers, .. } = self;
        let mut tasks = Vec::with_capacity(servers.len());
        for server in servers {
            let stop = shutdown.clone();
            tasks.push(match server {
                Server::Contracts(s) => tokio::spawn(s.run_until_stopped(stop)),
                Server::Metering(s) => tokio::spawn(s.run_until_stopped(stop)),
                Server::Scheduler(s) => tokio::spawn(s.run_until_stopped(stop)),
                Server::Gateway(s) => tokio::spawn(s.run_until_stopped(stop)),
                Server::Sla(s) => tokio::spawn(s.run_until_stopped(stop)),
                Server::Billing(s) => tokio::spawn(s.run_until_stopped(stop)),
                Server::Worker(s, registers_as) => {
                    if let Some(id) = registers_as {
                        register(&config, &s, id, &shutdown);
                    }
                    tokio::spawn(s.run_until_stopped(stop))
                }
            });
        }
        let mut first_error = None;
        for task in tasks {
            let result = task.await.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = result {
                tracing::error!(error = %e, "a service stopped with an error");
                first_error.get_or_insert(e);
            }
        }
        if let Some(pool) = pool {
            pool.close().await;
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A worker with `worker.scheduler_url` registers itself there, under its
/// own id (and again every few seconds, so a restarted scheduler learns it back).
fn register(config: &Config, worker: &reservoir_worker::Server, id: WorkerId, shutdown: &Shutdown) {
    let Some(scheduler_url) = config.worker.scheduler_url.clone() else { return };
    let bound = SocketAddr::new(config.worker.listen.ip(), worker.port());
    tokio::spawn(reservoir_worker::register_with_scheduler(
        scheduler_url,
        id,
        reservoir_worker::Advertise::new(config.worker.advertise_url.clone(), bound),
        config.internal.token(),
        shutdown.clone(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_service_beyond_the_loopback_needs_the_internal_token() {
        let mut config = Config::default();
        config.scheduler.listen = "0.0.0.0:50071".parse().expect("address");
        config.gateway.listen = "0.0.0.0:8080".parse().expect("address");
        let refused = refuse_open_internal_ports(&config, &[Service::Scheduler]).expect_err("refused");
        assert!(refused.to_string().contains("scheduler.listen"), "{refused}");
        assert!(refuse_open_internal_ports(&config, &[Service::Gateway]).is_ok(), "the gateway is public by design");
        assert!(refuse_open_internal_ports(&Config::default(), &[Service::Scheduler]).is_ok(), "loopback");
        config.internal.token = Some("a-shared-secret".into());
        assert!(refuse_open_internal_ports(&config, &[Service::Scheduler]).is_ok());
    }
}
