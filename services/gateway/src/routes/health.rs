//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use reservoir_proto::v1 as pb;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::api::Health;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The gateway is alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Ready: the contracts service answers its health check and reaches its database.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Every dependency is reachable", body = Health),
        (status = 503, description = "A dependency is unreachable", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    let not_ready = |what: &str| ApiError::unavailable(format!("not ready: {what}"));
    let mut health = tonic_health::pb::health_client::HealthClient::new(state.channel.clone());
    let serving = health
        .check(HealthCheckRequest { service: "reservoir.v1.ContractService".into() })
        .await
        .map(|r| r.into_inner().status == ServingStatus::Serving as i32)
        .unwrap_or(false);
    if !serving {
        return Err(not_ready("the contracts service is not serving"));
    }
    // Listing models reads the contracts database.
    state
        .contracts
        .clone()
        .list_models(pb::ListModelsRequest {})
        .await
        .map_err(|_| not_ready("the contracts database is unreachable"))?;
    Ok(Json(Health { status: "ready".into() }))
}
