//! The tenant API: quote, reserve, read and cancel reservations; capacity
//! and catalog. A tenant only ever sees its own reservations: another
//! tenant's id answers 404, for reads and cancels alike.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reservoir_domain::TenantId;
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;

use crate::api::{
    CancelRequest, Capacity, CapacityQuery, CatalogVersion, Reservation, ReservationFilter, ReservationList,
    ReservationRequest, answered, list_limit, missing, non_empty,
};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, OptionalJsonBody, PathParam, QueryParams};
use crate::state::{AppState, AuthTenant};

/// The gRPC form of what a tenant asks for.
fn order(tenant: &TenantId, body: ReservationRequest) -> pb::QuoteRequest {
    pb::QuoteRequest {
        tenant_id: tenant.to_string(),
        model: body.model,
        rate_tokens_per_s: body.rate,
        tier: pb::Tier::from(body.tier).into(),
        term: pb::Term::from(body.term).into(),
        starts_at: body.starts_at.map(timestamp),
        ends_at: body.ends_at.map(timestamp),
    }
}

/// Quote a reservation: the price with its breakdown, nothing reserved.
#[utoipa::path(post, path = "/v1/reservations/quote", tag = "reservations",
    request_body = ReservationRequest,
    responses(
        (status = 200, description = "The quote with its breakdown", body = reservoir_pricing::Quote),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn quote(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    JsonBody(body): JsonBody<ReservationRequest>,
) -> ApiResult<Json<reservoir_pricing::Quote>> {
    let reply = state.contracts.clone().quote(order(&tenant, body)).await?.into_inner();
    let quote = reply.quote.ok_or_else(|| missing("quote"))?;
    Ok(Json(answered("quote", quote.try_into())?))
}

/// Reserve throughput. Send an `Idempotency-Key` header to make retries safe:
/// the same key and body answer the same reservation; the same key with
/// another body is refused with 409.
#[utoipa::path(post, path = "/v1/reservations", tag = "reservations",
    request_body = ReservationRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "Client-chosen key that makes retries safe (1 to 255 visible ASCII characters)")),
    responses(
        (status = 201, description = "The reservation", body = Reservation),
        (status = 400, description = "Malformed JSON, or an Idempotency-Key that breaks its rule", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 409, description = "Not enough capacity (details say what is free), or the key was used with another body", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ReservationRequest>,
) -> ApiResult<(StatusCode, Json<Reservation>)> {
    let key = match headers.get("idempotency-key") {
        None => String::new(),
        Some(v) => {
            // A header that is not even text fails the same rule.
            let key = v.to_str().unwrap_or_default();
            reservoir_domain::check_idempotency_key(key).map_err(|e| ApiError::bad_request(e.to_string()))?;
            key.to_owned()
        }
    };
    let created = state
        .contracts
        .clone()
        .create_reservation(pb::CreateReservationRequest {
            allow_burst: body.allow_burst,
            order: Some(order(&tenant, body)),
            idempotency_key: key,
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(created.try_into()?)))
}

/// The tenant's reservations, newest first.
#[utoipa::path(get, path = "/v1/reservations", tag = "reservations",
    params(ReservationFilter),
    responses(
        (status = 200, description = "The tenant's reservations", body = ReservationList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 422, description = "Invalid filter", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(filter): QueryParams<ReservationFilter>,
) -> ApiResult<Json<ReservationList>> {
    let reply = state
        .contracts
        .clone()
        .list_reservations(pb::ListReservationsRequest {
            tenant_id: tenant.to_string(),
            model: non_empty("model", filter.model)?,
            status: filter.status.map_or(pb::ReservationStatus::Unspecified, pb::ReservationStatus::from).into(),
            active_at: None,
            limit: list_limit(filter.limit)?,
            ..Default::default()
        })
        .await?
        .into_inner();
    let reservations = reply.reservations.into_iter().map(TryInto::try_into).collect::<ApiResult<_>>()?;
    Ok(Json(ReservationList { reservations }))
}

/// One of the tenant's reservations.
#[utoipa::path(get, path = "/v1/reservations/{id}", tag = "reservations",
    params(("id" = String, Path, description = "Reservation id")),
    responses(
        (status = 200, description = "The reservation", body = Reservation),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 404, description = "No such reservation for this tenant", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Reservation>> {
    let found = state
        .contracts
        .clone()
        .get_reservation(pb::GetReservationRequest { id, tenant_id: tenant.to_string() })
        .await?
        .into_inner();
    Ok(Json(found.try_into()?))
}

/// Cancel a reservation: hourly contracts any time; month and half_year
/// contracts cannot be cancelled before their end (409).
#[utoipa::path(post, path = "/v1/reservations/{id}/cancel", tag = "reservations",
    params(("id" = String, Path, description = "Reservation id")),
    request_body(content = Option<CancelRequest>, description = "Optional reason"),
    responses(
        (status = 200, description = "The cancelled reservation", body = Reservation),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 404, description = "No such reservation for this tenant", body = ErrorBody),
        (status = 409, description = "Committed term, or already cancelled or expired", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathParam(id): PathParam<String>,
    OptionalJsonBody(body): OptionalJsonBody<CancelRequest>,
) -> ApiResult<Json<Reservation>> {
    let reason = body.and_then(|b| b.reason);
    let cancelled = state
        .contracts
        .clone()
        .cancel_reservation(pb::CancelReservationRequest {
            id,
            tenant_id: tenant.to_string(),
            by_admin: false,
            reason: reason.unwrap_or_default(),
            cancelled_by: tenant.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(cancelled.try_into()?))
}

/// Free sellable capacity of a model over time, as a step function.
#[utoipa::path(get, path = "/v1/capacity", tag = "capacity",
    params(CapacityQuery),
    responses(
        (status = 200, description = "Reserved and free capacity over the window", body = Capacity),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 422, description = "Invalid window", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn capacity(
    State(state): State<AppState>,
    AuthTenant(_tenant): AuthTenant,
    QueryParams(q): QueryParams<CapacityQuery>,
) -> ApiResult<Json<Capacity>> {
    let reply = state
        .contracts
        .clone()
        .get_capacity(pb::GetCapacityRequest {
            model: q.model,
            from: q.from.map(timestamp),
            to: q.to.map(timestamp),
            bucket_s: None,
        })
        .await?
        .into_inner();
    Ok(Json(reply.into()))
}

/// The current price catalog.
#[utoipa::path(get, path = "/v1/catalog", tag = "catalog",
    responses(
        (status = 200, description = "The newest catalog version, with each model's measured token weights", body = CatalogVersion),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn catalog(
    State(state): State<AppState>,
    AuthTenant(_tenant): AuthTenant,
) -> ApiResult<Json<CatalogVersion>> {
    let reply = state.contracts.clone().get_catalog(pb::GetCatalogRequest { version: 0 }).await?.into_inner();
    Ok(Json(with_weights(&state, reply).await?))
}

/// The catalog `c` with every model's weights, which say what its prices
/// per weighted token buy.
pub async fn with_weights(state: &AppState, c: pb::Catalog) -> ApiResult<CatalogVersion> {
    let models = state.contracts.clone().list_models(pb::ListModelsRequest {}).await?.into_inner().models;
    CatalogVersion::new(c, models)
}
