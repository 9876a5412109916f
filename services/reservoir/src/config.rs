//! The platform's configuration: each service's own section (its crate
//! defines it) beside the parts every service shares (`reservoir_runtime::config`).
//! Layered: defaults, then `reservoir.toml` (or `RESERVOIR_CONFIG`), then
//! `RESERVOIR__SECTION__KEY` and `DATABASE_URL` (see `reservoir_runtime::config::load`).

use std::path::PathBuf;

use reservoir_billing_service::BillingSettings;
use reservoir_contracts::ContractsSettings;
use reservoir_gateway::GatewaySettings;
use reservoir_metering::MeteringSettings;
use reservoir_runtime::config::{AuthConfig, InternalConfig, LogConfig};
use reservoir_scheduler::SchedulerSettings;
use reservoir_sla_service::SlaSettings;
use reservoir_worker::WorkerSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// PostgreSQL connection string; `DATABASE_URL` when not set here.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub internal: InternalConfig,
    /// Where `reservoir up` writes `endpoints.json`, the secrets and the models.
    pub state_dir: PathBuf,
    pub contracts: ContractsSettings,
    pub metering: MeteringSettings,
    pub scheduler: SchedulerSettings,
    pub worker: WorkerSettings,
    pub gateway: GatewaySettings,
    pub sla: SlaSettings,
    pub billing: BillingSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            database_max_connections: 16,
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            internal: InternalConfig::default(),
            state_dir: PathBuf::from(".reservoir"),
            contracts: ContractsSettings::default(),
            metering: MeteringSettings::default(),
            scheduler: SchedulerSettings::default(),
            worker: WorkerSettings::default(),
            gateway: GatewaySettings::default(),
            sla: SlaSettings::default(),
            billing: BillingSettings::default(),
        }
    }
}

impl Config {
    /// Defaults, then the config file, then `RESERVOIR__*` and `DATABASE_URL`.
    pub fn load() -> anyhow::Result<Config> {
        reservoir_runtime::config::load()
    }

    pub fn database_url(&self) -> anyhow::Result<&str> {
        self.database_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no database: set DATABASE_URL or database_url in the config"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // figment's `Jail` fixes the closure's error type (its own, large one).
    #[allow(clippy::result_large_err)]
    fn environment_overrides_file_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("r.toml", "[gateway]\nlisten = \"127.0.0.1:9000\"\nbody_limit_bytes = 10\n")?;
            jail.set_env("RESERVOIR__GATEWAY__LISTEN", "127.0.0.1:9001");
            jail.set_env("RESERVOIR__SCHEDULER__SPOOL_DIR", "/var/lib/reservoir/spool");
            jail.set_env("DATABASE_URL", "postgres://x/y");
            let c: Config = reservoir_runtime::config::figment::<Config>("r.toml").extract()?;
            assert_eq!(c.gateway.listen.port(), 9001);
            assert_eq!(c.gateway.body_limit_bytes, 10);
            assert_eq!(c.scheduler.spool_dir, PathBuf::from("/var/lib/reservoir/spool"));
            assert_eq!(c.database_url.as_deref(), Some("postgres://x/y"));
            assert_eq!(c.contracts.listen.port(), 50051);
            Ok(())
        });
    }
}
