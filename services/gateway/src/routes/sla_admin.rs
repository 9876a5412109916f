//! SLA for operators: incidents (public updates and postmortems on pool
//! incidents), scheduled maintenance, closing a month, the SLA-credit export
//! for finance, and the admins' webhook endpoints (pool events).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use reservoir_proto::time::{instant, timestamp};
use reservoir_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{list_limit, non_empty};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::routes::export::{csv_of, download, jsonl};
use crate::routes::sla::{Credit, Incident, NewWebhook, WebhookEndpoint, WebhookList, parse_period};
use crate::state::{AppState, AuthAdmin};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeFilter {
    Contract,
    Pool,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Open,
    Resolved,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IncidentQuery {
    pub scope: Option<ScopeFilter>,
    pub status: Option<StatusFilter>,
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub model: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub tenant: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A `model` filter: absent, or a model id (a malformed one is refused, as
/// the document says, rather than matching nothing).
fn model_filter(model: Option<String>) -> ApiResult<String> {
    let model = non_empty("model", model)?;
    if !model.is_empty() {
        model.parse::<reservoir_domain::ModelId>().map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    Ok(model)
}

/// Every incident, newest first: contracts' and pools'.
#[utoipa::path(get, path = "/admin/sla/incidents", tag = "admin",
    params(IncidentQuery),
    responses(
        (status = 200, description = "Incidents with their timelines", body = IncidentList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Invalid filter", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn incidents(
    State(state): State<AppState>,
    _: AuthAdmin,
    QueryParams(q): QueryParams<IncidentQuery>,
) -> ApiResult<Json<IncidentList>> {
    let request = pb::ListIncidentsRequest {
        // An empty filter is refused, as the tenant API refuses one.
        tenant_id: non_empty("tenant", q.tenant)?,
        scope: match q.scope {
            None => pb::IncidentScope::Unspecified,
            Some(ScopeFilter::Contract) => pb::IncidentScope::Contract,
            Some(ScopeFilter::Pool) => pb::IncidentScope::Pool,
        }
        .into(),
        status: match q.status {
            None => pb::IncidentStatus::Unspecified,
            Some(StatusFilter::Open) => pb::IncidentStatus::Open,
            Some(StatusFilter::Resolved) => pb::IncidentStatus::Resolved,
        }
        .into(),
        model: model_filter(q.model)?,
        limit: list_limit(q.limit)?,
    };
    let incidents = state.sla.clone().list_incidents(request).await?.into_inner().incidents;
    Ok(Json(IncidentList { incidents: incidents.into_iter().map(Incident::from).collect() }))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentNote {
    /// Shown on the public status page (1 to 4000 bytes).
    pub message: String,
}

/// Add a public update to a pool incident.
#[utoipa::path(post, path = "/admin/sla/incidents/{id}/updates", tag = "admin",
    params(("id" = String, Path, description = "Incident id")),
    request_body = IncidentNote,
    responses(
        (status = 200, description = "The incident", body = Incident),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "Unknown incident", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Empty message, or not a pool incident", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn add_update(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<IncidentNote>,
) -> ApiResult<Json<Incident>> {
    let request = pb::AddIncidentUpdateRequest { incident_id: id, message: body.message, author: admin.subject };
    Ok(Json(state.sla.clone().add_incident_update(request).await?.into_inner().into()))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Postmortem {
    /// Public (1 to 20000 bytes); replaces the previous one.
    pub postmortem: String,
}

/// Set the public postmortem of a pool incident.
#[utoipa::path(put, path = "/admin/sla/incidents/{id}/postmortem", tag = "admin",
    params(("id" = String, Path, description = "Incident id")),
    request_body = Postmortem,
    responses(
        (status = 200, description = "The incident", body = Incident),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "Unknown incident", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Empty text, or not a pool incident", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_postmortem(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<Postmortem>,
) -> ApiResult<Json<Incident>> {
    let request = pb::SetPostmortemRequest { incident_id: id, postmortem: body.postmortem, author: admin.subject };
    Ok(Json(state.sla.clone().set_postmortem(request).await?.into_inner().into()))
}

/// A scheduled maintenance of a model's pool.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Maintenance {
    pub id: String,
    pub model: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub note: String,
    pub created_by: String,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl From<pb::Maintenance> for Maintenance {
    fn from(m: pb::Maintenance) -> Self {
        let at = |t: Option<&prost_types::Timestamp>| t.and_then(instant).unwrap_or_default();
        Maintenance {
            from: at(m.from.as_ref()),
            to: at(m.to.as_ref()),
            cancelled_at: m.cancelled_at.as_ref().and_then(instant),
            id: m.id,
            model: m.model,
            note: m.note,
            created_by: m.created_by,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MaintenanceList {
    pub maintenance: Vec<Maintenance>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMaintenance {
    pub model: String,
    /// Must be in the future: downtime is not excused after the fact.
    pub from: DateTime<Utc>,
    /// After `from`, at most 7 days later.
    pub to: DateTime<Utc>,
    /// Public (1 to 2000 bytes).
    pub note: String,
}

/// Schedule a maintenance: its windows are left out of availability and
/// shown as maintenance on the status page.
#[utoipa::path(post, path = "/admin/maintenance", tag = "admin",
    request_body = NewMaintenance,
    responses(
        (status = 201, description = "Scheduled", body = Maintenance),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid model, times or note", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_maintenance(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    JsonBody(body): JsonBody<NewMaintenance>,
) -> ApiResult<(StatusCode, Json<Maintenance>)> {
    let request = pb::CreateMaintenanceRequest {
        model: body.model,
        from: Some(timestamp(body.from)),
        to: Some(timestamp(body.to)),
        note: body.note,
        created_by: admin.subject,
    };
    let created = state.sla.clone().create_maintenance(request).await?.into_inner();
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MaintenanceQuery {
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub model: Option<String>,
}

/// Every maintenance, newest first.
#[utoipa::path(get, path = "/admin/maintenance", tag = "admin",
    params(MaintenanceQuery),
    responses(
        (status = 200, description = "Maintenance", body = MaintenanceList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Invalid filter", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_maintenance(
    State(state): State<AppState>,
    _: AuthAdmin,
    QueryParams(q): QueryParams<MaintenanceQuery>,
) -> ApiResult<Json<MaintenanceList>> {
    let request = pb::ListMaintenanceRequest { model: model_filter(q.model)? };
    let all = state.sla.clone().list_maintenance(request).await?.into_inner().maintenance;
    Ok(Json(MaintenanceList { maintenance: all.into_iter().map(Maintenance::from).collect() }))
}

/// Cancel a maintenance.
#[utoipa::path(post, path = "/admin/maintenance/{id}/cancel", tag = "admin",
    params(("id" = String, Path, description = "Maintenance id")),
    responses(
        (status = 200, description = "Cancelled", body = Maintenance),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "Unknown maintenance", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn cancel_maintenance(
    State(state): State<AppState>,
    _: AuthAdmin,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Maintenance>> {
    Ok(Json(state.sla.clone().cancel_maintenance(pb::CancelMaintenanceRequest { id }).await?.into_inner().into()))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClosedPeriod {
    pub period: String,
    pub contracts: u32,
    pub credits_issued_now: u32,
    pub credits_total: u32,
}

/// Close an ended month now (the job closes it an hour after it ends):
/// each contract gets its result and at most one credit, however often
/// this is called.
#[utoipa::path(post, path = "/admin/sla/periods/{period}/close", tag = "admin",
    params(("period" = String, Path, pattern = r"^2[0-9]{3}-(0[1-9]|1[0-2])$", description = "YYYY-MM")),
    responses(
        (status = 200, description = "Closed", body = ClosedPeriod),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "The month has not ended or is not measured to its end yet", body = ErrorBody),
        (status = 422, description = "Malformed period", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn close_period(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(period): PathParam<String>,
) -> ApiResult<Json<ClosedPeriod>> {
    let period = parse_period(&period)?;
    let request = pb::ClosePeriodRequest { period: period.to_string(), closed_by: admin.subject };
    let r = state.sla.clone().close_period(request).await?.into_inner();
    Ok(Json(ClosedPeriod {
        period: r.period,
        contracts: r.contracts,
        credits_issued_now: r.credits_issued_now,
        credits_total: r.credits_total,
    }))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `YYYY-MM`.
    #[param(pattern = r"^2[0-9]{3}-(0[1-9]|1[0-2])$", example = "2026-11")]
    pub period: String,
    pub format: ExportFormat,
}

/// The export's columns, in order.
pub const CREDIT_COLUMNS: [&str; 14] = [
    "credit_id",
    "period",
    "tenant_id",
    "contract_id",
    "model",
    "tier",
    "availability",
    "target",
    "share",
    "fee",
    "amount",
    "currency",
    "bad_windows",
    "issued_at",
];

/// Every SLA credit of a month, for finance: RFC 4180 CSV (header row, CRLF,
/// decimals written exactly as text) or JSON lines (one credit per line).
#[utoipa::path(get, path = "/admin/exports/sla-credits", tag = "admin",
    params(ExportQuery),
    responses(
        (status = 200, description = "The credits", content(
            (String = "text/csv"),
            (Credit = "application/jsonl"),
        )),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Malformed period or format", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn export_credits(
    State(state): State<AppState>,
    _: AuthAdmin,
    QueryParams(q): QueryParams<ExportQuery>,
) -> ApiResult<Response> {
    credits_export(&state, q).await
}

/// The SLA credits export itself (the admin portal downloads it too).
pub async fn credits_export(state: &AppState, q: ExportQuery) -> ApiResult<Response> {
    let period = parse_period(&q.period)?;
    let request = pb::ListCreditsRequest { tenant_id: String::new(), period: period.to_string() };
    let credits: Vec<Credit> =
        state.sla.clone().list_credits(request).await?.into_inner().credits.into_iter().map(Credit::from).collect();
    let csv = csv_of(&CREDIT_COLUMNS, credits.iter().map(credit_row))?;
    Ok(download(&period.to_string(), "sla-credits", q.format, csv, jsonl(&credits)?))
}

/// One credit under [`CREDIT_COLUMNS`].
fn credit_row(c: &Credit) -> Vec<String> {
    vec![
        c.id.clone(),
        c.period.clone(),
        c.tenant_id.clone(),
        c.contract_id.clone(),
        c.model.clone(),
        c.tier.clone(),
        c.availability.clone(),
        c.target.clone(),
        c.share.clone(),
        c.fee.clone(),
        c.amount.clone(),
        c.currency.clone(),
        c.evidence.len().to_string(),
        c.issued_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ]
}

/// Register an admin URL for pool incident events.
#[utoipa::path(post, path = "/admin/webhooks", tag = "admin",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Registered; keep the secret", body = WebhookEndpoint),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid or private URL, or too many endpoints", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_webhook(
    State(state): State<AppState>,
    _: AuthAdmin,
    JsonBody(body): JsonBody<NewWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookEndpoint>)> {
    let request = pb::CreateWebhookRequest { tenant_id: String::new(), url: body.url };
    Ok((StatusCode::CREATED, Json(state.sla.clone().create_webhook(request).await?.into_inner().into())))
}

/// The admins' webhook endpoints (without their secrets).
#[utoipa::path(get, path = "/admin/webhooks", tag = "admin",
    responses(
        (status = 200, description = "Endpoints", body = WebhookList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_webhooks(State(state): State<AppState>, _: AuthAdmin) -> ApiResult<Json<WebhookList>> {
    let endpoints = state.sla.clone().list_webhooks(pb::ListWebhooksRequest::default()).await?.into_inner().endpoints;
    Ok(Json(WebhookList { endpoints: endpoints.into_iter().map(WebhookEndpoint::from).collect() }))
}

/// Delete an admin webhook endpoint.
#[utoipa::path(delete, path = "/admin/webhooks/{id}", tag = "admin",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "Deleted", body = WebhookEndpoint),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such admin endpoint", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    _: AuthAdmin,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let request = pb::DeleteWebhookRequest { id, tenant_id: String::new() };
    Ok(Json(state.sla.clone().delete_webhook(request).await?.into_inner().into()))
}
