//! The admin API (role `admin`): tenants, models and their capacity, catalog
//! versions, and every tenant's reservations.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;

use crate::api::{
    AdminCancelRequest, AdminReservationFilter, CatalogVersion, Model, ModelList, ModelPatch, NewModel, NewTenant,
    Reservation, ReservationList, Tenant, TenantList, list_limit, non_empty, present,
};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::state::{AppState, AuthAdmin};

/// Every tenant.
#[utoipa::path(get, path = "/admin/tenants", tag = "admin",
    responses(
        (status = 200, description = "All tenants", body = TenantList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_tenants(State(state): State<AppState>, _: AuthAdmin) -> ApiResult<Json<TenantList>> {
    let reply = state.contracts.clone().list_tenants(pb::ListTenantsRequest::default()).await?.into_inner();
    Ok(Json(TenantList { tenants: reply.tenants.into_iter().map(Into::into).collect() }))
}

/// Create a tenant (the same id and currency again answers the tenant; another currency is a conflict).
#[utoipa::path(post, path = "/admin/tenants", tag = "admin",
    request_body = NewTenant,
    responses(
        (status = 201, description = "The tenant", body = Tenant),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "Exists with another currency", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_tenant(
    State(state): State<AppState>,
    _: AuthAdmin,
    JsonBody(body): JsonBody<NewTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let tenant = state
        .contracts
        .clone()
        .create_tenant(pb::CreateTenantRequest { id: body.id, currency: non_empty("currency", body.currency)? })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

/// Every model with its capacity.
#[utoipa::path(get, path = "/admin/models", tag = "admin",
    responses(
        (status = 200, description = "All models", body = ModelList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_models(State(state): State<AppState>, _: AuthAdmin) -> ApiResult<Json<ModelList>> {
    let reply = state.contracts.clone().list_models(pb::ListModelsRequest {}).await?.into_inner();
    Ok(Json(ModelList { models: reply.models.into_iter().map(Into::into).collect() }))
}

/// Add a model with its pool capacity.
#[utoipa::path(post, path = "/admin/models", tag = "admin",
    request_body = NewModel,
    responses(
        (status = 201, description = "The model", body = Model),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "Exists with other settings", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_model(
    State(state): State<AppState>,
    _: AuthAdmin,
    JsonBody(body): JsonBody<NewModel>,
) -> ApiResult<(StatusCode, Json<Model>)> {
    let model = state
        .contracts
        .clone()
        .create_model(pb::CreateModelRequest {
            id: body.id,
            capacity_tokens_per_s: body.capacity,
            headroom: non_empty("headroom", body.headroom)?,
            prompt_weight: non_empty("prompt_weight", body.prompt_weight)?,
            completion_weight: non_empty("completion_weight", body.completion_weight)?,
            prefill_tokens_per_s: body.prefill_tokens_per_s.unwrap_or(0),
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(model.into())))
}

/// Change a model's capacity, headroom or weights. Lowering sellable capacity
/// below what is already sold is refused with the reservations in the way.
#[utoipa::path(patch, path = "/admin/models/{id}", tag = "admin",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description = "Model id")),
    request_body = ModelPatch,
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 409, description = "Would oversell; details list the reservations in the way", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn update_model(
    State(state): State<AppState>,
    _: AuthAdmin,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<ModelPatch>,
) -> ApiResult<Json<Model>> {
    let model = state
        .contracts
        .clone()
        .update_model(pb::UpdateModelRequest {
            id,
            capacity_tokens_per_s: body.capacity,
            headroom: present("headroom", body.headroom)?,
            prompt_weight: present("prompt_weight", body.prompt_weight)?,
            completion_weight: present("completion_weight", body.completion_weight)?,
            prefill_tokens_per_s: body.prefill_tokens_per_s,
        })
        .await?
        .into_inner();
    Ok(Json(model.into()))
}

/// The newest catalog version.
#[utoipa::path(get, path = "/admin/catalog", tag = "admin",
    responses(
        (status = 200, description = "The newest catalog version", body = CatalogVersion),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_catalog(State(state): State<AppState>, _: AuthAdmin) -> ApiResult<Json<CatalogVersion>> {
    let reply = state.contracts.clone().get_catalog(pb::GetCatalogRequest { version: 0 }).await?.into_inner();
    Ok(Json(super::tenant::with_weights(&state, reply).await?))
}

/// Publish an edited catalog as a new version (its `version` field is ignored).
#[utoipa::path(put, path = "/admin/catalog", tag = "admin",
    request_body = reservoir_pricing::Catalog,
    responses(
        (status = 201, description = "The new catalog version", body = CatalogVersion),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid catalog", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn publish_catalog(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    JsonBody(catalog): JsonBody<reservoir_pricing::Catalog>,
) -> ApiResult<(StatusCode, Json<CatalogVersion>)> {
    let document = Some(pb::CatalogDocument::from(&catalog));
    let reply = state
        .contracts
        .clone()
        .publish_catalog(pb::PublishCatalogRequest { document, published_by: admin.subject })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(super::tenant::with_weights(&state, reply).await?)))
}

/// Every tenant's reservations, with filters, newest first.
#[utoipa::path(get, path = "/admin/reservations", tag = "admin",
    params(AdminReservationFilter),
    responses(
        (status = 200, description = "Reservations", body = ReservationList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Invalid filter", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_reservations(
    State(state): State<AppState>,
    _: AuthAdmin,
    QueryParams(filter): QueryParams<AdminReservationFilter>,
) -> ApiResult<Json<ReservationList>> {
    let reply = state
        .contracts
        .clone()
        .list_reservations(pb::ListReservationsRequest {
            tenant_id: non_empty("tenant", filter.tenant)?,
            model: non_empty("model", filter.model)?,
            status: filter.status.map_or(pb::ReservationStatus::Unspecified, pb::ReservationStatus::from).into(),
            active_at: filter.active_at.map(timestamp),
            limit: list_limit(filter.limit)?,
            ..Default::default()
        })
        .await?
        .into_inner();
    let reservations = reply.reservations.into_iter().map(TryInto::try_into).collect::<ApiResult<_>>()?;
    Ok(Json(ReservationList { reservations }))
}

/// Cancel any reservation, committed terms included; a reason is required.
#[utoipa::path(post, path = "/admin/reservations/{id}/cancel", tag = "admin",
    params(("id" = String, Path, description = "Reservation id")),
    request_body = AdminCancelRequest,
    responses(
        (status = 200, description = "The cancelled reservation", body = Reservation),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such reservation", body = ErrorBody),
        (status = 409, description = "Already cancelled or expired", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Missing reason", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn cancel_reservation(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<AdminCancelRequest>,
) -> ApiResult<Json<Reservation>> {
    let cancelled = state
        .contracts
        .clone()
        .cancel_reservation(pb::CancelReservationRequest {
            id,
            tenant_id: String::new(),
            by_admin: true,
            reason: body.reason,
            cancelled_by: admin.subject,
        })
        .await?
        .into_inner();
    Ok(Json(cancelled.try_into()?))
}
