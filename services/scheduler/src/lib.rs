//! The scheduler service: `SchedulerService` admits each completion in its
//! class, queues it, runs it on a worker with room and moves it to another
//! worker when its worker dies (`scheduling`, policy in `crates/sched`);
//! `MeteringService` stores one usage record per request and answers the
//! queries the SLA and billing services run (`metering`).

pub mod error;
pub mod metering;
pub mod scheduling;

use std::net::SocketAddr;

use metering::recorder::RecorderConfig;
use reservoir_proto::v1::metering_service_server::{MeteringServiceServer, SERVICE_NAME as METERING};
use reservoir_proto::v1::scheduler_service_server::{SERVICE_NAME as SCHEDULER, SchedulerServiceServer};
use reservoir_runtime::{InternalToken, Shutdown};
pub use reservoir_sched::queues::QueueLimits;
use scheduling::SchedulingConfig;
pub use scheduling::WorkerEndpoint;
use scheduling::directory::Directory;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use error::MeteringError;

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub listen: SocketAddr,
    /// Where Prometheus scrapes `/metrics` (plain HTTP).
    pub metrics_listen: SocketAddr,
    /// Where the scheduler reads contracts and model weights.
    pub contracts_url: String,
    pub workers: Vec<WorkerEndpoint>,
    /// Requests one worker runs at once.
    pub per_worker_in_flight: usize,
    pub queue_limits: QueueLimits,
    /// First-come-first-served baseline (benchmarks only).
    pub fcfs: bool,
    /// Required of every caller, and sent to the contracts service and the
    /// workers, when set (see `reservoir_runtime::internal_auth`).
    pub internal_token: InternalToken,
}

pub struct Server {
    listener: TcpListener,
    metrics_listener: TcpListener,
    pool: PgPool,
    settings: SchedulerSettings,
}

/// Binds the service's port; call `run_until_stopped` to serve.
pub async fn build(settings: &SchedulerSettings, pool: PgPool) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(settings.listen).await?;
    let metrics_listener = TcpListener::bind(settings.metrics_listen).await?;
    Ok(Server { listener, metrics_listener, pool, settings: settings.clone() })
}

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown`; then stores every buffered usage record.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let (usage, recorder) =
            metering::recorder::spawn(self.pool.clone(), RecorderConfig::default(), shutdown.clone());
        let token = self.settings.internal_token.clone();
        let contracts =
            token.attach(tonic::transport::Endpoint::from_shared(self.settings.contracts_url.clone())?.connect_lazy());
        let config = SchedulingConfig {
            workers: self.settings.workers.clone(),
            per_worker_in_flight: self.settings.per_worker_in_flight,
            queue_limits: self.settings.queue_limits,
            fcfs: self.settings.fcfs,
            internal_token: token.clone(),
        };
        let shared = scheduling::Shared::start(&config, Directory::new(contracts), usage, shutdown.clone())?;
        let dispatcher = tokio::spawn(scheduling::dispatch_loop(shared.clone(), shutdown.clone()));
        let metrics_shared = shared.clone();
        let metrics_router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let shared = metrics_shared.clone();
                async move { shared.metrics.render() }
            }),
        );
        let metrics_stop = shutdown.clone();
        let metrics_server = tokio::spawn(async move {
            axum::serve(self.metrics_listener, metrics_router)
                .with_graceful_shutdown(async move { metrics_stop.wait().await })
                .await
        });
        let routes = Routes::new(MeteringServiceServer::new(metering::service::Metering { pool: self.pool }))
            .add_service(SchedulerServiceServer::new(scheduling::service::Scheduler { shared: shared.clone() }));
        let served =
            reservoir_runtime::grpc::serve(self.listener, routes, &[METERING, SCHEDULER], &token, shutdown).await;
        let _ = dispatcher.await;
        let _ = metrics_server.await;
        drop(shared);
        let _ = recorder.await;
        served
    }
}
