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

/// Ready: the contracts, scheduler, metering and SLA services answer their health checks
/// and the contracts service reaches its database.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Every dependency is reachable", body = Health),
        (status = 503, description = "A dependency is unreachable", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    let not_ready = |what: &str| ApiError::unavailable(format!("not ready: {what}"));
    let checks = [
        (&state.channels.contracts, "reservoir.v1.ContractService", "the contracts service is not serving"),
        (&state.channels.scheduler, "reservoir.v1.SchedulerService", "the scheduler service is not serving"),
        (&state.channels.metering, "reservoir.v1.MeteringService", "the metering service is not serving"),
        (&state.channels.sla, "reservoir.v1.SlaService", "the SLA service is not serving"),
    ];
    for (channel, service, failure) in checks {
        let serving = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(HealthCheckRequest { service: service.into() })
            .await
            .map(|r| r.into_inner().status == ServingStatus::Serving as i32)
            .unwrap_or(false);
        if !serving {
            return Err(not_ready(failure));
        }
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
