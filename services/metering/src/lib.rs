//! The metering service: one usage record per request, stored idempotently
//! by request id in schema `metering`, and the typed aggregates the SLA
//! (`UsageWindows`) and billing (`UsageTotals`) services read.
//!
//! Records reach it from the scheduler through a durable local spool
//! (`spool`, `forwarder`): the request path waits for the spool's group
//! commit, never for PostgreSQL, and a record survives a crash of the
//! scheduler or an outage of the database.

pub mod convert;
pub mod error;
pub mod service;
pub mod spool;
pub mod store;
pub mod usage_log;

use std::net::SocketAddr;

use reservoir_proto::v1::metering_service_server::{MeteringServiceServer, SERVICE_NAME};
use reservoir_runtime::{InternalToken, Shutdown};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use error::MeteringError;

/// The `[metering]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeteringSettings {
    pub listen: SocketAddr,
}

impl Default for MeteringSettings {
    fn default() -> Self {
        MeteringSettings { listen: SocketAddr::from(([127, 0, 0, 1], 50081)) }
    }
}

pub struct Server {
    listener: TcpListener,
    pool: PgPool,
    internal_token: InternalToken,
}

/// Binds the service's port; call `run_until_stopped` to serve.
pub async fn build(settings: &MeteringSettings, pool: PgPool, internal_token: InternalToken) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(settings.listen).await?;
    Ok(Server { listener, pool, internal_token })
}

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let routes = Routes::new(MeteringServiceServer::new(service::Metering { pool: self.pool }));
        reservoir_runtime::grpc::serve(self.listener, routes, &[SERVICE_NAME], &self.internal_token, shutdown).await
    }
}
