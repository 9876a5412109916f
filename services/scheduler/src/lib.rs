//! The scheduler service: `SchedulerService` admits each completion in its
//! class, queues it, runs it on a worker with room and moves it to another
//! worker when its worker dies (`scheduling`, policy in `crates/sched`).
//! Every request's usage record goes through the durable usage log
//! (`reservoir_metering::usage_log`) to the metering service.

pub mod scheduling;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_proto::v1::scheduler_service_server::{SERVICE_NAME as SCHEDULER, SchedulerServiceServer};
use reservoir_runtime::{InternalToken, Shutdown};
pub use reservoir_sched::queues::QueueLimits;
use scheduling::SchedulingConfig;
pub use scheduling::WorkerEndpoint;
use scheduling::directory::Directory;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::service::Routes;

/// The `[scheduler]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulerSettings {
    pub listen: SocketAddr,
    /// Where Prometheus scrapes `/metrics` (plain HTTP).
    pub metrics_listen: SocketAddr,
    /// Where the scheduler reads contracts and model weights.
    pub contracts_url: String,
    /// Where usage records are shipped (MeteringService).
    pub metering_url: String,
    /// The durable usage spool: records wait here (on disk) until metering
    /// has stored them. Keep it on a disk that survives a restart.
    pub spool_dir: PathBuf,
    /// Worker URLs known from the start (`worker-0`, `worker-1`, ... in
    /// order); workers may also register themselves (`RegisterWorker`).
    pub workers: Vec<String>,
    /// Requests of burst and spot one worker runs at once (reserved ones go
    /// past it). The default is the batch at which `reservoir up` measures a
    /// worker's capacity: larger batches barely add throughput on a CPU and
    /// make every step, so every reserved token, slower.
    pub per_worker_in_flight: usize,
    /// First-come-first-served baseline (benchmarks only).
    #[serde(default)]
    pub fcfs: bool,
    #[serde(skip)]
    pub queue_limits: QueueLimits,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        SchedulerSettings {
            listen: loopback(50071),
            metrics_listen: loopback(9464),
            contracts_url: "http://127.0.0.1:50051".into(),
            metering_url: "http://127.0.0.1:50081".into(),
            spool_dir: PathBuf::from(".reservoir/spool"),
            workers: Vec::new(),
            per_worker_in_flight: 32,
            fcfs: false,
            queue_limits: QueueLimits::default(),
        }
    }
}

pub struct Server {
    listener: TcpListener,
    metrics_listener: TcpListener,
    settings: SchedulerSettings,
    internal_token: InternalToken,
}

/// Binds the service's ports; call `run_until_stopped` to serve. The
/// internal token, when set, is required of every caller and sent to the
/// contracts and metering services and the workers.
pub async fn build(settings: &SchedulerSettings, internal_token: InternalToken) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(settings.listen).await?;
    let metrics_listener = TcpListener::bind(settings.metrics_listen).await?;
    Ok(Server { listener, metrics_listener, settings: settings.clone(), internal_token })
}

/// Deadline of every unary call to another service.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown`; then ships what the usage spool holds (for
    /// at most `usage_log::SHUTDOWN_DRAIN`; the rest waits in the spool).
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let token = self.internal_token.clone();
        let channel = |url: &str| reservoir_runtime::grpc::client_channel(url, CALL_TIMEOUT);
        let contracts = token.attach(channel(&self.settings.contracts_url)?);
        let metering = MeteringServiceClient::new(token.attach(channel(&self.settings.metering_url)?));
        let metrics = scheduling::metrics::Metrics::new()?;
        let (usage, forwarder) = reservoir_metering::usage_log::open(
            self.settings.spool_dir.clone(),
            metering,
            metrics.registry(),
            shutdown.clone(),
        )
        .await?;
        let config = SchedulingConfig {
            workers: self
                .settings
                .workers
                .iter()
                .enumerate()
                .map(|(i, url)| WorkerEndpoint { id: format!("worker-{i}"), url: url.clone() })
                .collect(),
            per_worker_in_flight: self.settings.per_worker_in_flight,
            queue_limits: self.settings.queue_limits,
            fcfs: self.settings.fcfs,
            internal_token: token.clone(),
        };
        let directory = Directory::new(contracts, metrics.contracts.clone());
        let shared = scheduling::Shared::start(&config, directory, usage, metrics, shutdown.clone())?;
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
        let routes =
            Routes::new(SchedulerServiceServer::new(scheduling::service::Scheduler { shared: shared.clone() }));
        let served = reservoir_runtime::grpc::serve(self.listener, routes, &[SCHEDULER], &token, shutdown).await;
        let _ = dispatcher.await;
        let _ = metrics_server.await;
        drop(shared);
        let _ = forwarder.await;
        served
    }
}
