//! Layered configuration: built-in defaults, then a TOML file
//! (`reservoir.toml`, or the file named by `RESERVOIR_CONFIG`), then
//! environment variables `RESERVOIR__SECTION__KEY` (for example
//! `RESERVOIR__GATEWAY__LISTEN=0.0.0.0:8080`). `DATABASE_URL` is honoured too.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use reservoir_domain::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// PostgreSQL connection string; `DATABASE_URL` when not set here.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    pub log: LogConfig,
    pub contracts: ContractsConfig,
    pub gateway: GatewayConfig,
    pub worker: WorkerConfig,
    pub scheduler: SchedulerConfig,
    pub auth: AuthConfig,
    pub internal: InternalConfig,
    /// Where `reservoir up` writes `endpoints.json`, the secret and the models.
    pub state_dir: PathBuf,
}

/// Service-to-service calls (see `internal_auth`).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct InternalConfig {
    /// Shared secret every internal gRPC call carries; each service refuses
    /// calls without it (health checks excepted). Unset: internal services
    /// trust their network. `reservoir up` sets a random one for its run.
    pub token: Option<String>,
}

impl std::fmt::Debug for InternalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalConfig").field("token", &self.token.as_ref().map(|_| "<set>")).finish()
    }
}

impl InternalConfig {
    pub fn token(&self) -> crate::InternalToken {
        crate::InternalToken::new(self.token.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info,sqlx=warn`; `RUST_LOG` wins when set.
    pub filter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContractsConfig {
    pub listen: SocketAddr,
    pub default_currency: Currency,
    /// The model `reservoir up` seeds until the engine measures the pool.
    pub default_model: DefaultModel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefaultModel {
    pub id: String,
    pub capacity_tokens_per_s: u32,
    #[serde(with = "rust_decimal::serde::str")]
    pub headroom: Decimal,
    /// Whether `reservoir up` measures the pool with a short engine run on
    /// start and records the figure as the model's capacity.
    pub calibrate: bool,
}

/// The scheduler service (admission, queues, routing, metering).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulerConfig {
    pub listen: SocketAddr,
    /// Where Prometheus scrapes `/metrics`.
    pub metrics_listen: SocketAddr,
    /// Where the scheduler reads contracts and model weights.
    pub contracts_url: String,
    /// Worker URLs (`reservoir up` fills this with the workers it starts).
    pub workers: Vec<String>,
    /// Requests of burst and spot one worker runs at once (reserved ones go
    /// past it). The default is the batch at which `reservoir up` measures a
    /// worker's capacity: larger batches barely add throughput on a CPU and
    /// make every step, so every reserved token, slower.
    pub per_worker_in_flight: usize,
}

/// One inference worker: a model behind the engine's step loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub listen: SocketAddr,
    /// GGUF file of the model (`scripts/fetch-model` puts SmolLM2 there).
    pub model_path: PathBuf,
    /// The model's id in the catalog, reported by `Stats`.
    pub model_id: String,
    /// Memory for the KV cache; the block pool gets as many blocks as fit.
    pub kv_budget_bytes: usize,
    /// Requests in the worker at once, queued or running (RESOURCE_EXHAUSTED beyond).
    pub queue_capacity: usize,
    /// Tokens one engine step carries at most (prefill chunks and decodes).
    pub step_token_budget: usize,
    /// The worker's name in the scheduler, metrics and usage records.
    pub id: String,
    /// When set, the worker registers itself with this scheduler
    /// (`RegisterWorker`) instead of being listed in `scheduler.workers`.
    pub scheduler_url: Option<String>,
    /// The URL the scheduler reaches this worker at; `http://{listen}` when unset.
    pub advertise_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Where the gateway reaches the contracts service.
    pub contracts_url: String,
    /// Where the gateway reaches the scheduler (metering) service.
    pub scheduler_url: String,
    /// Largest request body accepted, in bytes (413 beyond).
    pub body_limit_bytes: usize,
    /// Requests per second each authenticated caller may send (429 beyond).
    pub rate_limit: RateLimit,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained requests per second per caller.
    pub requests_per_s: u32,
    /// Requests a caller may send at once after a quiet spell.
    pub burst: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthConfig {
    /// Required `aud` claim of every token.
    pub audience: String,
    /// Required `iss` claim of every token.
    pub issuer: String,
    /// HS256 shared secret. When unset, the secret is read from
    /// `hs256_secret_file`, which `reservoir up` and `reservoir token` create
    /// with random content on first use.
    pub hs256_secret: Option<String>,
    pub hs256_secret_file: PathBuf,
    /// RS256: when a public key is set, tokens are verified with it instead
    /// of the HS256 secret. The private key is only needed by `reservoir token`.
    pub rs256_public_key_pem_file: Option<PathBuf>,
    pub rs256_private_key_pem_file: Option<PathBuf>,
    /// Lifetime of tokens minted by `reservoir token`.
    pub token_ttl_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Config {
            database_url: None,
            database_max_connections: 16,
            log: LogConfig { format: LogFormat::Text, filter: "info,sqlx=warn,h2=warn,tower=warn".into() },
            contracts: ContractsConfig {
                listen: loopback(50051),
                default_currency: Currency::USD,
                default_model: DefaultModel {
                    id: "smollm2-135m-instruct".into(),
                    capacity_tokens_per_s: 1000,
                    headroom: Decimal::new(10, 2),
                    calibrate: true,
                },
            },
            gateway: GatewayConfig {
                listen: loopback(8080),
                contracts_url: "http://127.0.0.1:50051".into(),
                scheduler_url: "http://127.0.0.1:50071".into(),
                body_limit_bytes: 256 * 1024,
                rate_limit: RateLimit { requests_per_s: 100, burst: 200 },
            },
            auth: AuthConfig {
                audience: "reservoir".into(),
                issuer: "reservoir".into(),
                hs256_secret: None,
                hs256_secret_file: PathBuf::from(".reservoir/jwt-secret"),
                rs256_public_key_pem_file: None,
                rs256_private_key_pem_file: None,
                token_ttl_s: 24 * 3600,
            },
            scheduler: SchedulerConfig {
                listen: loopback(50071),
                metrics_listen: loopback(9464),
                contracts_url: "http://127.0.0.1:50051".into(),
                workers: Vec::new(),
                per_worker_in_flight: 32,
            },
            worker: WorkerConfig {
                listen: loopback(50061),
                model_path: PathBuf::from(".reservoir/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
                model_id: "smollm2-135m-instruct".into(),
                kv_budget_bytes: 256 << 20,
                queue_capacity: 256,
                step_token_budget: 512,
                id: "worker-0".into(),
                scheduler_url: None,
                advertise_url: None,
            },
            internal: InternalConfig::default(),
            state_dir: PathBuf::from(".reservoir"),
        }
    }
}

impl Config {
    /// Defaults, then the config file, then `RESERVOIR__*` and `DATABASE_URL`.
    pub fn load() -> anyhow::Result<Config> {
        let file = std::env::var("RESERVOIR_CONFIG").unwrap_or_else(|_| "reservoir.toml".into());
        Self::figment(&file).extract().map_err(|e| anyhow::anyhow!("configuration: {e}"))
    }

    fn figment(file: &str) -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database_url".into()))
            .merge(Env::prefixed("RESERVOIR__").split("__"))
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
            jail.set_env("DATABASE_URL", "postgres://x/y");
            let c: Config = Config::figment("r.toml").extract()?;
            assert_eq!(c.gateway.listen.port(), 9001);
            assert_eq!(c.gateway.body_limit_bytes, 10);
            assert_eq!(c.database_url.as_deref(), Some("postgres://x/y"));
            assert_eq!(c.contracts.listen.port(), 50051);
            Ok(())
        });
    }
}
