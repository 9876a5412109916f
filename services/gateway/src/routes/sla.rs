//! SLA for tenants: availability and bad windows per contract, incidents,
//! credits, and webhook endpoints; plus the JSON shapes the admin routes
//! and the status page share.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use reservoir_domain::Period;
use reservoir_proto::time::instant;
use reservoir_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::state::{AppState, AuthTenant};

pub fn reason_name(r: i32) -> String {
    match pb::BadReason::try_from(r).unwrap_or(pb::BadReason::Unspecified) {
        pb::BadReason::PlatformErrors => "platform_errors",
        pb::BadReason::TtftMissed => "ttft_missed",
        pb::BadReason::DecodeBelowFloor => "decode_below_floor",
        pb::BadReason::ThroughputShort => "throughput_short",
        pb::BadReason::WorkersDown => "workers_down",
        pb::BadReason::ContractsBreached => "contracts_breached",
        pb::BadReason::Unspecified => "unknown",
    }
    .into()
}

/// A tier's wire name (`premium`); empty for a value this build does not know.
fn tier_name(tier: i32) -> String {
    reservoir_proto::enums::tier_from_pb("tier", tier).map(|t| t.as_str().to_owned()).unwrap_or_default()
}

fn names(reasons: &[i32]) -> Vec<String> {
    reasons.iter().map(|r| reason_name(*r)).collect()
}

fn at(t: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    t.and_then(instant).unwrap_or_default()
}

fn text(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// One measured window (5 minutes by default, aligned to UTC).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlaWindow {
    pub window_start: DateTime<Utc>,
    pub window_s: u32,
    pub eligible_requests: u64,
    pub platform_errors: u64,
    pub ttft_missed: u64,
    pub ttft_ms_p50: Option<u32>,
    pub ttft_ms_p95: Option<u32>,
    /// Decimal string; absent when no request measured it.
    pub decode_tokens_per_s_median: Option<String>,
    pub demand_weighted_tokens: String,
    pub delivered_weighted_tokens: String,
    /// Why it is bad: `platform_errors`, `ttft_missed`, `decode_below_floor`, `throughput_short`.
    pub reasons: Vec<String>,
    /// Overlaps a scheduled maintenance: not counted.
    pub in_maintenance: bool,
}

impl From<pb::SlaWindow> for SlaWindow {
    fn from(w: pb::SlaWindow) -> Self {
        SlaWindow {
            window_start: at(w.window_start.as_ref()),
            window_s: w.window_s,
            eligible_requests: w.eligible_requests,
            platform_errors: w.platform_errors,
            ttft_missed: w.ttft_missed,
            ttft_ms_p50: w.ttft_ms_p50,
            ttft_ms_p95: w.ttft_ms_p95,
            decode_tokens_per_s_median: text(w.decode_tokens_per_s_median),
            demand_weighted_tokens: w.demand_weighted_tokens,
            delivered_weighted_tokens: w.delivered_weighted_tokens,
            reasons: names(&w.reasons),
            in_maintenance: w.in_maintenance,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentUpdate {
    pub at: DateTime<Utc>,
    /// `opened`, `updated`, `resolved` (by the SLA job) or `note` (by an admin).
    pub kind: String,
    pub message: String,
    pub author: String,
}

/// A run of bad windows of a contract, or of a model's pool.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    pub id: String,
    /// `contract` or `pool`.
    pub scope: String,
    /// Contract incidents only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub model: String,
    /// `open` or `resolved`.
    pub status: String,
    /// Start of the first bad window.
    pub started_at: DateTime<Utc>,
    /// Start of the last bad window.
    pub last_bad_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub reasons: Vec<String>,
    pub postmortem: Option<String>,
    pub timeline: Vec<IncidentUpdate>,
}

impl From<pb::Incident> for Incident {
    fn from(i: pb::Incident) -> Self {
        let timeline = i
            .timeline
            .iter()
            .map(|u| IncidentUpdate {
                at: at(u.at.as_ref()),
                kind: match u.kind() {
                    pb::UpdateKind::Opened => "opened",
                    pb::UpdateKind::Updated => "updated",
                    pb::UpdateKind::Resolved => "resolved",
                    _ => "note",
                }
                .into(),
                message: u.message.clone(),
                author: u.author.clone(),
            })
            .collect();
        Incident {
            scope: if i.scope() == pb::IncidentScope::Pool { "pool" } else { "contract" }.into(),
            status: if i.status() == pb::IncidentStatus::Open { "open" } else { "resolved" }.into(),
            id: i.id,
            contract_id: text(i.contract_id),
            tenant_id: text(i.tenant_id),
            model: i.model,
            started_at: at(i.started_at.as_ref()),
            last_bad_at: at(i.last_bad_at.as_ref()),
            resolved_at: i.resolved_at.as_ref().and_then(instant),
            reasons: names(&i.reasons),
            postmortem: text(i.postmortem),
            timeline,
        }
    }
}

/// A contract's SLA over one month.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContractSla {
    pub contract_id: String,
    pub model: String,
    pub tier: String,
    /// Good windows / measured windows, a decimal fraction (6 places).
    pub availability: String,
    /// The tier's monthly target, a decimal fraction.
    pub target: String,
    pub windows_in_term: u64,
    pub maintenance_windows: u64,
    pub bad_windows: u64,
    /// Closed months are final; an open one is measured up to `measured_until`.
    pub closed: bool,
    pub measured_until: DateTime<Utc>,
    /// The bad windows with their figures and reasons, oldest first.
    pub bad: Vec<SlaWindow>,
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlaReport {
    pub period: String,
    pub contracts: Vec<ContractSla>,
}

impl SlaReport {
    pub fn from_pb(period: Period, answer: pb::GetContractSlaResponse) -> Self {
        let contracts = answer
            .contracts
            .into_iter()
            .map(|c| ContractSla {
                tier: tier_name(c.tier),
                contract_id: c.contract_id,
                model: c.model,
                availability: c.availability,
                target: c.target,
                windows_in_term: c.windows_in_term,
                maintenance_windows: c.maintenance_windows,
                bad_windows: c.bad_windows,
                closed: c.closed,
                measured_until: at(c.measured_until.as_ref()),
                bad: c.bad.into_iter().map(SlaWindow::from).collect(),
                incidents: c.incidents.into_iter().map(Incident::from).collect(),
            })
            .collect();
        SlaReport { period: period.to_string(), contracts }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BadWindowEvidence {
    pub window_start: DateTime<Utc>,
    pub reasons: Vec<String>,
}

/// A credit for a month below the tier's target.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credit {
    pub id: String,
    pub contract_id: String,
    pub tenant_id: String,
    pub model: String,
    pub tier: String,
    /// `YYYY-MM`.
    pub period: String,
    /// Decimal strings.
    pub availability: String,
    pub target: String,
    pub share: String,
    /// The contract's exact reservation fee for the month.
    pub fee: String,
    /// share x fee, rounded half to even to the currency's minor unit.
    pub amount: String,
    pub currency: String,
    pub evidence: Vec<BadWindowEvidence>,
    pub issued_at: DateTime<Utc>,
}

impl From<pb::Credit> for Credit {
    fn from(c: pb::Credit) -> Self {
        Credit {
            tier: tier_name(c.tier),
            evidence: c
                .evidence
                .iter()
                .map(|e| BadWindowEvidence { window_start: at(e.window_start.as_ref()), reasons: names(&e.reasons) })
                .collect(),
            issued_at: at(c.issued_at.as_ref()),
            id: c.id,
            contract_id: c.contract_id,
            tenant_id: c.tenant_id,
            model: c.model,
            period: c.period,
            availability: c.availability,
            target: c.target,
            share: c.share,
            fee: c.fee,
            amount: c.amount,
            currency: c.currency,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditList {
    pub credits: Vec<Credit>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// A month, `YYYY-MM` (UTC), of the years 2000 to 2999.
    #[param(pattern = r"^2[0-9]{3}-(0[1-9]|1[0-2])$", example = "2026-11")]
    pub period: Option<String>,
}

pub fn parse_period(p: &str) -> ApiResult<Period> {
    p.parse::<Period>().map_err(|e| ApiError::invalid(e.to_string()))
}

/// The tenant's contracts over a month: availability, bad windows with their
/// reasons, and incidents.
#[utoipa::path(get, path = "/v1/sla", tag = "sla",
    // The same query as PeriodQuery's, but required here.
    params(("period" = String, Query, pattern = r"^2[0-9]{3}-(0[1-9]|1[0-2])$", example = "2026-11",
        description = "A month, `YYYY-MM` (UTC), of the years 2000 to 2999")),
    responses(
        (status = 200, description = "Per contract", body = SlaReport),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 422, description = "Missing or malformed period", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn sla(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(q): QueryParams<PeriodQuery>,
) -> ApiResult<Json<SlaReport>> {
    let period = parse_period(&q.period.ok_or_else(|| ApiError::invalid("period is required (YYYY-MM)"))?)?;
    let request = pb::GetContractSlaRequest { tenant_id: tenant.to_string(), period: period.to_string() };
    let answer = state.sla.clone().get_contract_sla(request).await?.into_inner();
    Ok(Json(SlaReport::from_pb(period, answer)))
}

/// The tenant's SLA credits (of one month when `period` is given).
#[utoipa::path(get, path = "/v1/credits", tag = "sla",
    params(PeriodQuery),
    responses(
        (status = 200, description = "Credits, oldest month first", body = CreditList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 422, description = "Malformed period", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn credits(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(q): QueryParams<PeriodQuery>,
) -> ApiResult<Json<CreditList>> {
    let period = q.period.as_deref().map(parse_period).transpose()?;
    let request = pb::ListCreditsRequest {
        tenant_id: tenant.to_string(),
        period: period.map(|p| p.to_string()).unwrap_or_default(),
    };
    let credits = state.sla.clone().list_credits(request).await?.into_inner().credits;
    Ok(Json(CreditList { credits: credits.into_iter().map(Credit::from).collect() }))
}

/// A webhook endpoint. The secret is shown once, when it is created.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    /// Signs every delivery (`Reservoir-Signature`); only in the creation answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<pb::WebhookEndpoint> for WebhookEndpoint {
    fn from(e: pb::WebhookEndpoint) -> Self {
        WebhookEndpoint { id: e.id, url: e.url, secret: text(e.secret), created_at: at(e.created_at.as_ref()) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub endpoints: Vec<WebhookEndpoint>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// http or https URL of a public address, at most 2048 bytes.
    // An address, not a name: Schemathesis sends the example, and a name
    // would be looked up in the DNS by the test (tests reach no network).
    #[schema(example = "https://203.0.113.10/reservoir")]
    pub url: String,
}

/// Register a URL for `incident.opened|updated|resolved` and `credit.issued`
/// of the tenant's contracts.
#[utoipa::path(post, path = "/v1/webhooks", tag = "sla",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Registered; keep the secret", body = WebhookEndpoint),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid or private URL, or too many endpoints", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_webhook(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    JsonBody(body): JsonBody<NewWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookEndpoint>)> {
    let request = pb::CreateWebhookRequest { tenant_id: tenant.to_string(), url: body.url };
    let endpoint = state.sla.clone().create_webhook(request).await?.into_inner();
    Ok((StatusCode::CREATED, Json(endpoint.into())))
}

/// The tenant's webhook endpoints (without their secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "sla",
    responses(
        (status = 200, description = "Endpoints", body = WebhookList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
) -> ApiResult<Json<WebhookList>> {
    let request = pb::ListWebhooksRequest { tenant_id: tenant.to_string() };
    let endpoints = state.sla.clone().list_webhooks(request).await?.into_inner().endpoints;
    Ok(Json(WebhookList { endpoints: endpoints.into_iter().map(WebhookEndpoint::from).collect() }))
}

/// Delete one of the tenant's webhook endpoints; its pending deliveries stop.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "sla",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "Deleted", body = WebhookEndpoint),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 404, description = "No such endpoint of this tenant", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let request = pb::DeleteWebhookRequest { id, tenant_id: tenant.to_string() };
    Ok(Json(state.sla.clone().delete_webhook(request).await?.into_inner().into()))
}
