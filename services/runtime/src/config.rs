//! What every service's configuration shares, and the layered loader.
//!
//! Layers: built-in defaults, then a TOML file (`reservoir.toml`, or the file
//! named by `RESERVOIR_CONFIG`), then environment variables
//! `RESERVOIR__SECTION__KEY` (for example `RESERVOIR__GATEWAY__LISTEN=0.0.0.0:8080`).
//! `DATABASE_URL` is honoured too. Each service owns its section's type
//! (`reservoir_gateway::GatewaySettings`, ...); the binary's `Config` puts
//! them together with the shared parts defined here: log, database,
//! internal authentication, JWT.

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Loads `T` from its defaults, then the config file, then `RESERVOIR__*` and `DATABASE_URL`.
pub fn load<T: Serialize + DeserializeOwned + Default>() -> anyhow::Result<T> {
    let file = std::env::var("RESERVOIR_CONFIG").unwrap_or_else(|_| "reservoir.toml".into());
    figment::<T>(&file).extract().map_err(|e| anyhow::anyhow!("configuration: {e}"))
}

pub fn figment<T: Serialize + Default>(file: &str) -> Figment {
    Figment::from(Serialized::defaults(T::default()))
        .merge(Toml::file(file))
        .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database_url".into()))
        .merge(Env::prefixed("RESERVOIR__").split("__"))
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

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, filter: "info,sqlx=warn,h2=warn,tower=warn".into() }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            audience: "reservoir".into(),
            issuer: "reservoir".into(),
            hs256_secret: None,
            hs256_secret_file: PathBuf::from(".reservoir/jwt-secret"),
            rs256_public_key_pem_file: None,
            rs256_private_key_pem_file: None,
            token_ttl_s: 24 * 3600,
        }
    }
}
