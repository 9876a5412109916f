//! The scheduler service's crate. For now it serves `MeteringService`: one
//! usage record per request, written in batches behind a bounded buffer, and
//! the queries the SLA and billing services run. Admission, queues and
//! routing (policy in `crates/sched`) join it here.

pub mod error;
pub mod metering;

use std::net::SocketAddr;

use reservoir_proto::v1::metering_service_server::{MeteringServiceServer, SERVICE_NAME};
use reservoir_runtime::Shutdown;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use error::MeteringError;

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub listen: SocketAddr,
}

pub struct Server {
    listener: TcpListener,
    metering: metering::service::Metering,
}

/// Binds the service's port; call `run_until_stopped` to serve.
pub async fn build(settings: &SchedulerSettings, pool: PgPool) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(settings.listen).await?;
    Ok(Server { listener, metering: metering::service::Metering { pool } })
}

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let routes = Routes::new(MeteringServiceServer::new(self.metering));
        reservoir_runtime::grpc::serve(self.listener, routes, &[SERVICE_NAME], shutdown).await
    }
}
