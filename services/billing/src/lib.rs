//! The billing service: turns contracts, metered usage and SLA credits into
//! invoices (draft, then finalized with a gapless number, or void), issues
//! credit notes, keeps each tenant's credit balance, and hands
//! `invoice.finalized` and `credit_note.issued` to the SLA service's signed
//! webhooks.
//!
//! It owns schema `billing`; it reads contracts and catalogs only through
//! `ContractService`, usage only through `MeteringService`, credits only
//! through `SlaService`. The money itself is `reservoir_billing`'s (pure);
//! this crate fetches, stores and schedules.

pub mod actions;
pub mod document;
pub mod error;
pub mod gather;
pub mod outbox;
pub mod peers;
pub mod read;
pub mod revenue;
pub mod run;
pub mod service;
pub mod settle;

use std::net::SocketAddr;
use std::time::Duration;

use reservoir_proto::v1::billing_service_server::{BillingServiceServer, SERVICE_NAME};
use reservoir_runtime::{InternalToken, Shutdown};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use error::BillingServiceError;

/// The `[billing]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BillingSettings {
    pub listen: SocketAddr,
    pub contracts_url: String,
    pub metering_url: String,
    pub sla_url: String,
    /// Hours a draft waits for an admin before it finalizes by itself.
    pub grace_hours: u32,
    /// How long after a month ends the job runs it by itself (after the
    /// SLA closed it, so its credits are on the invoices).
    pub run_delay_s: u64,
    /// How often the job looks for periods to run and drafts to finalize.
    pub job_interval_s: u64,
    /// How often waiting events are handed to the SLA service.
    pub publish_interval_ms: u64,
    /// Who issues the invoices, as the PDFs show it.
    pub issuer: reservoir_billing::Issuer,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 50101)),
            contracts_url: "http://127.0.0.1:50051".into(),
            metering_url: "http://127.0.0.1:50081".into(),
            sla_url: "http://127.0.0.1:50091".into(),
            grace_hours: 24,
            run_delay_s: 7200,
            job_interval_s: 60,
            publish_interval_ms: 2000,
            issuer: reservoir_billing::Issuer::default(),
        }
    }
}

/// The service's state: its database and its peers.
#[derive(Clone)]
pub struct Billing {
    pub pool: PgPool,
    pub peers: peers::Peers,
    pub grace: chrono::TimeDelta,
    pub run_delay: chrono::TimeDelta,
    pub issuer: reservoir_billing::Issuer,
    /// The latest revenue-so-far figure, kept fresh by the job.
    pub revenue: std::sync::Arc<tokio::sync::Mutex<Option<revenue::Revenue>>>,
}

impl Billing {
    /// One round of the job at `now`: runs the last month once it is due,
    /// then finalizes the drafts whose grace is over.
    pub async fn tick(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), BillingServiceError> {
        if let Some(period) = run::period_due(&self.pool, now, self.run_delay).await? {
            let report = run::run_period(&self.pool, &self.peers, period, "job", self.grace, now).await?;
            tracing::info!(%period, ?report, "billing period run");
        }
        let finalized = run::finalize_due(&self.pool, &self.peers, now).await?;
        if finalized > 0 {
            tracing::info!(finalized, "drafts finalized after their grace period");
        }
        self.revenue_at(now).await?;
        Ok(())
    }

    /// The month's revenue so far: the kept figure while it is fresh (and
    /// of `now`'s month), else computed again and kept.
    pub async fn revenue_at(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<revenue::Revenue, BillingServiceError> {
        let mut kept = self.revenue.lock().await;
        if let Some(r) = kept.as_ref()
            && now - r.computed_at < revenue::REVENUE_FRESH_FOR
            && now >= r.computed_at
            && r.period.start() <= now
            && now < r.period.end()
        {
            return Ok(r.clone());
        }
        let fresh = revenue::month_to_date(&self.peers, &self.pool, now).await?;
        *kept = Some(fresh.clone());
        Ok(fresh)
    }
}

pub struct Server {
    listener: TcpListener,
    billing: Billing,
    settings: BillingSettings,
    internal_token: InternalToken,
}

/// Binds the service's port; call `run_until_stopped` to serve and run the job.
pub async fn build(settings: &BillingSettings, pool: PgPool, internal_token: InternalToken) -> anyhow::Result<Server> {
    anyhow::ensure!(settings.job_interval_s >= 1, "billing.job_interval_s must be at least 1");
    let peers =
        peers::Peers::connect(&settings.contracts_url, &settings.metering_url, &settings.sla_url, &internal_token)?;
    let billing = Billing {
        pool,
        peers,
        grace: chrono::TimeDelta::hours(i64::from(settings.grace_hours)),
        run_delay: chrono::TimeDelta::seconds(i64::try_from(settings.run_delay_s).unwrap_or(i64::MAX / 2)),
        issuer: settings.issuer.clone(),
        revenue: std::sync::Arc::default(),
    };
    let listener = TcpListener::bind(settings.listen).await?;
    Ok(Server { listener, billing, settings: settings.clone(), internal_token })
}

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn billing(&self) -> Billing {
        self.billing.clone()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let job = tokio::spawn(run_job(
            self.billing.clone(),
            Duration::from_secs(self.settings.job_interval_s),
            shutdown.clone(),
        ));
        let publisher = tokio::spawn(run_publisher(
            self.billing.clone(),
            Duration::from_millis(self.settings.publish_interval_ms.max(10)),
            shutdown.clone(),
        ));
        let routes = Routes::new(BillingServiceServer::new(self.billing));
        let served =
            reservoir_runtime::grpc::serve(self.listener, routes, &[SERVICE_NAME], &self.internal_token, shutdown)
                .await;
        job.await?;
        publisher.await?;
        served
    }
}

/// Runs the job every `interval` with the wall clock until shutdown; a
/// failed round is logged and retried at the next interval.
async fn run_job(billing: Billing, interval: Duration, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.wait() => return,
        }
        if let Err(e) = billing.tick(chrono::Utc::now()).await {
            tracing::warn!(error = %e, "billing job failed; retrying at the next interval");
        }
    }
}

async fn run_publisher(billing: Billing, interval: Duration, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.wait() => return,
        }
        if let Err(e) = outbox::publish_waiting(&billing.pool, &billing.peers).await {
            tracing::warn!(error = %e, "publishing billing events failed; retrying");
        }
    }
}
