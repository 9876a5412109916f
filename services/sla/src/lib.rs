//! The SLA service: measures every active contract per window from
//! metering, turns runs of bad windows into incidents, credits breaches
//! with the bad windows as evidence when a month closes, keeps scheduled
//! maintenance, serves the status page's data and delivers signed webhooks.
//!
//! It owns schema `sla` and reads usage only through `MeteringService`,
//! contracts only through `ContractService`, worker health only through
//! `SchedulerService`. The decisions themselves are `reservoir_sla`'s
//! (pure); this crate fetches, stores and schedules.

pub mod clock;
pub mod close;
pub mod error;
pub mod events;
pub mod incidents;
pub mod job;
pub mod maintenance;
pub mod measure;
pub mod peers;
pub mod read;
pub mod service;
pub mod status;
pub mod webhooks;

use std::net::SocketAddr;
use std::time::Duration;

use reservoir_proto::v1::sla_service_server::{SERVICE_NAME, SlaServiceServer};
use reservoir_runtime::{InternalToken, Shutdown};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use error::SlaError;
pub use job::Sla;

/// The `[sla]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SlaSettings {
    pub listen: SocketAddr,
    pub contracts_url: String,
    pub metering_url: String,
    pub scheduler_url: String,
    /// Window length in seconds, aligned to UTC (300; shorter only for tests).
    pub window_s: u32,
    /// How often the job runs.
    pub job_interval_s: u64,
    /// How long after a window ends it is measured: its requests' records
    /// arrive when they finish (later ones are measured as late records).
    pub settle_s: u64,
    /// How long after a month ends the job closes it (late records first).
    pub close_grace_s: u64,
    /// How often due webhook deliveries are sent.
    pub delivery_interval_ms: u64,
    /// Let webhook URLs point at loopback or private addresses (tests and
    /// single-machine setups only: a tenant could otherwise reach the
    /// platform's internal services).
    pub webhooks_allow_private: bool,
}

impl Default for SlaSettings {
    fn default() -> Self {
        SlaSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 50091)),
            contracts_url: "http://127.0.0.1:50051".into(),
            metering_url: "http://127.0.0.1:50081".into(),
            scheduler_url: "http://127.0.0.1:50071".into(),
            window_s: reservoir_sla::WINDOW_S_DEFAULT,
            job_interval_s: 60,
            settle_s: 120,
            close_grace_s: 3600,
            delivery_interval_ms: 2000,
            webhooks_allow_private: false,
        }
    }
}

pub struct Server {
    listener: TcpListener,
    sla: Sla,
    settings: SlaSettings,
    internal_token: InternalToken,
}

/// Binds the service's port; call `run_until_stopped` to serve and run the job.
pub async fn build(settings: &SlaSettings, pool: PgPool, internal_token: InternalToken) -> anyhow::Result<Server> {
    anyhow::ensure!((1..=86_400).contains(&settings.window_s), "sla.window_s must be 1 to 86400 seconds");
    anyhow::ensure!(settings.job_interval_s >= 1, "sla.job_interval_s must be at least 1");
    let peers = peers::Peers::connect(
        &settings.contracts_url,
        &settings.metering_url,
        &settings.scheduler_url,
        &internal_token,
    )?;
    let sla = Sla {
        pool,
        peers,
        window_s: settings.window_s,
        settle: chrono::TimeDelta::seconds(i64::try_from(settings.settle_s).unwrap_or(i64::MAX / 2)),
        close_grace: chrono::TimeDelta::seconds(i64::try_from(settings.close_grace_s).unwrap_or(i64::MAX / 2)),
    };
    let listener = TcpListener::bind(settings.listen).await?;
    Ok(Server { listener, sla, settings: settings.clone(), internal_token })
}

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn sla(&self) -> Sla {
        self.sla.clone()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let job = tokio::spawn(run_job(
            self.sla.clone(),
            Duration::from_secs(self.settings.job_interval_s),
            shutdown.clone(),
        ));
        let deliveries = tokio::spawn(run_deliveries(
            self.sla.pool.clone(),
            Duration::from_millis(self.settings.delivery_interval_ms.max(10)),
            self.settings.webhooks_allow_private,
            shutdown.clone(),
        ));
        let api = service::SlaApi { sla: self.sla, allow_private_webhooks: self.settings.webhooks_allow_private };
        let routes = Routes::new(SlaServiceServer::new(api));
        let served =
            reservoir_runtime::grpc::serve(self.listener, routes, &[SERVICE_NAME], &self.internal_token, shutdown)
                .await;
        job.await?;
        deliveries.await?;
        served
    }
}

/// Runs the job every `interval` with the wall clock until shutdown (the
/// first run one interval after start); a failed run is logged and retried
/// at the next interval.
async fn run_job(sla: Sla, interval: Duration, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.wait() => return,
        }
        match sla.tick(chrono::Utc::now()).await {
            Ok(report) => tracing::debug!(?report, "sla job ran"),
            Err(e) => tracing::warn!(error = %e, "sla job failed; retrying at the next interval"),
        }
    }
}

async fn run_deliveries(pool: PgPool, interval: Duration, allow_private: bool, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.wait() => return,
        }
        // A round cut short by shutdown loses nothing: what it took is
        // leased for a minute, then taken again.
        tokio::select! {
            result = webhooks::deliver_due(&pool, allow_private) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "webhook deliveries failed; retrying");
                }
            }
            () = shutdown.wait() => return,
        }
    }
}
