//! The contracts service: tenants, models and their pool capacity, the price
//! catalog, reservations, and the capacity ledger that never oversells.
//!
//! `build` binds the listener (port 0 in tests) and returns a `Server`;
//! `run_until_stopped` serves until the shutdown token fires.

mod api_tokens;
mod catalog;
mod convert;
mod error;
mod ledger;
mod models;
mod reservations;
mod service;
mod tenants;

use std::net::SocketAddr;

use reservoir_domain::{Currency, ModelId};
use reservoir_proto::v1::contract_service_server::{ContractServiceServer, SERVICE_NAME};
use reservoir_runtime::{InternalToken, Shutdown};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use error::ContractsError;
pub use models::ModelChange;

/// The `[contracts]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContractsSettings {
    pub listen: SocketAddr,
    /// The currency of tenants provisioned on their first token.
    pub default_currency: Currency,
    /// The model `reservoir up` seeds until the engine measures the pool.
    pub default_model: DefaultModel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefaultModel {
    pub id: String,
    pub capacity_tokens_per_s: u32,
    #[serde(with = "rust_decimal::serde::str")]
    pub headroom: rust_decimal::Decimal,
    /// Whether `reservoir up` measures the pool with a short engine run on
    /// start and records the figure as the model's capacity.
    pub calibrate: bool,
}

impl Default for ContractsSettings {
    fn default() -> Self {
        ContractsSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            default_currency: Currency::USD,
            default_model: DefaultModel {
                id: "smollm2-135m-instruct".into(),
                capacity_tokens_per_s: 1000,
                headroom: rust_decimal::Decimal::new(10, 2),
                calibrate: true,
            },
        }
    }
}

pub struct Server {
    listener: TcpListener,
    contracts: service::Contracts,
    internal_token: InternalToken,
}

/// Binds the service's port; call `run_until_stopped` to serve. Callers
/// must present `internal_token` when it is set.
pub async fn build(
    settings: &ContractsSettings,
    pool: PgPool,
    internal_token: InternalToken,
) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(settings.listen).await?;
    let contracts = service::Contracts { pool, default_currency: settings.default_currency };
    Ok(Server { listener, contracts, internal_token })
}

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let routes = Routes::new(ContractServiceServer::new(self.contracts));
        reservoir_runtime::grpc::serve(self.listener, routes, &[SERVICE_NAME], &self.internal_token, shutdown).await
    }
}

/// What calibration measured of a model on this pool: its capacity and
/// prefill rate, and the weights that price its tokens in the capacity's
/// unit (a generated token at the calibration batch weighs 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub capacity_tokens_per_s: u32,
    pub prefill_tokens_per_s: u32,
    pub prompt_weight: rust_decimal::Decimal,
    pub completion_weight: rust_decimal::Decimal,
}

/// Records what calibration measured as the model's capacity, prefill rate
/// and weights, in one transaction: quotes, admission, metering, the SLA and
/// billing all read them from this one row. Refused (and nothing changes)
/// when the measured pool would sell less than is already sold, or a weight
/// is out of range.
pub async fn record_calibration(pool: &PgPool, id: &ModelId, measured: &Measured) -> Result<(), ContractsError> {
    let change = ModelChange {
        capacity_tokens_per_s: Some(measured.capacity_tokens_per_s),
        prefill_tokens_per_s: Some(measured.prefill_tokens_per_s),
        prompt_weight: Some(measured.prompt_weight),
        completion_weight: Some(measured.completion_weight),
        ..ModelChange::default()
    };
    models::update(pool, id, &change).await.map(|_| ())
}

/// Seeds a model with a configured capacity unless it exists already (the
/// engine's calibration replaces the figure, and the default weights of the
/// migration, once it can measure the pool).
pub async fn seed_model(
    pool: &PgPool,
    id: &ModelId,
    capacity_tokens_per_s: u32,
    headroom: rust_decimal::Decimal,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO contracts.models (id, capacity_tokens_per_s, headroom) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(i32::try_from(capacity_tokens_per_s)?)
    .bind(headroom)
    .execute(pool)
    .await?;
    Ok(())
}
