//! Invoices for tenants: the list, one invoice as JSON with its lines, as
//! CSV, and the credit balance; plus the JSON shapes the admin routes share.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use reservoir_proto::time::instant;
use reservoir_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{PathParam, QueryParams};
use crate::routes::export::csv_of;
use crate::routes::sla::parse_period;
use crate::state::{AppState, AuthTenant};

fn at(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(instant)
}

fn text(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// One tier of a line's tier breakdown. Decimals are strings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceTier {
    pub tier_index: u32,
    /// Inclusive upper bound; absent for the open tier.
    pub up_to: Option<String>,
    pub quantity: String,
    pub unit_price: String,
    pub flat_fee: String,
    pub amount: String,
}

/// One line of an invoice, with where it came from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceLine {
    /// `reservation`, `burst`, `spot`, `late_usage`, `sla_credit`,
    /// `credit_applied` or `credit_carried`.
    pub kind: String,
    pub description: String,
    pub contract_id: Option<String>,
    pub model: Option<String>,
    /// The catalog version that priced it.
    pub catalog_version: Option<i64>,
    pub quantity: String,
    /// `second`, `million_weighted_tokens` or `money`.
    pub unit: String,
    pub tiers: Vec<InvoiceTier>,
    /// The usage window (or term part) it bills.
    pub usage_from: Option<DateTime<Utc>>,
    pub usage_to: Option<DateTime<Utc>>,
    /// The record it cites, such as `sla_credit:<id>`.
    pub source: Option<String>,
    /// Exact amount.
    pub amount_exact: String,
    /// Rounded half to even to the currency's minor unit.
    pub amount: String,
}

/// An invoice. Amounts are decimal strings in `currency`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    pub id: String,
    pub tenant_id: String,
    /// `YYYY-MM`.
    pub period: String,
    pub currency: String,
    /// `draft`, `finalized` or `void`.
    pub status: String,
    /// A held draft does not finalize by itself.
    pub held: bool,
    pub held_reason: Option<String>,
    /// `RSV-2026-000123` once finalized.
    pub number: Option<String>,
    /// Sum of the rounded lines before the credit balance.
    pub subtotal: String,
    /// Sum of every rounded line; never negative.
    pub total: String,
    pub credit_balance_before: String,
    pub credit_balance_after: String,
    /// Sum of the credit notes issued against it.
    pub credited: String,
    pub computed_at: Option<DateTime<Utc>>,
    /// A draft that is not held finalizes by itself from then on.
    pub finalize_after: Option<DateTime<Utc>>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub voided_at: Option<DateTime<Utc>>,
    pub void_reason: Option<String>,
    /// Sent with one invoice; lists leave them out.
    pub lines: Vec<InvoiceLine>,
}

impl From<pb::Invoice> for Invoice {
    fn from(i: pb::Invoice) -> Self {
        Invoice {
            id: i.id,
            tenant_id: i.tenant_id,
            period: i.period,
            currency: i.currency,
            status: status_name(i.status),
            held: i.held,
            held_reason: text(i.held_reason),
            number: text(i.number),
            subtotal: i.subtotal,
            total: i.total,
            credit_balance_before: i.credit_balance_before,
            credit_balance_after: i.credit_balance_after,
            credited: i.credited,
            computed_at: at(i.computed_at.as_ref()),
            finalize_after: at(i.finalize_after.as_ref()),
            finalized_at: at(i.finalized_at.as_ref()),
            voided_at: at(i.voided_at.as_ref()),
            void_reason: text(i.void_reason),
            lines: i.lines.into_iter().map(InvoiceLine::from).collect(),
        }
    }
}

impl From<pb::InvoiceLine> for InvoiceLine {
    fn from(l: pb::InvoiceLine) -> Self {
        InvoiceLine {
            kind: kind_name(l.kind),
            description: l.description,
            contract_id: text(l.contract_id),
            model: text(l.model),
            catalog_version: (l.catalog_version != 0).then_some(l.catalog_version),
            quantity: l.quantity,
            unit: unit_name(l.unit),
            tiers: l
                .tiers
                .into_iter()
                .map(|t| InvoiceTier {
                    tier_index: t.tier_index,
                    up_to: t.up_to,
                    quantity: t.quantity,
                    unit_price: t.unit_price,
                    flat_fee: t.flat_fee,
                    amount: t.amount,
                })
                .collect(),
            usage_from: at(l.usage_from.as_ref()),
            usage_to: at(l.usage_to.as_ref()),
            source: text(l.source),
            amount_exact: l.amount_exact,
            amount: l.amount,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceList {
    pub invoices: Vec<Invoice>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Finalized,
    Void,
}

impl From<InvoiceStatus> for pb::InvoiceStatus {
    fn from(s: InvoiceStatus) -> Self {
        match s {
            InvoiceStatus::Draft => pb::InvoiceStatus::Draft,
            InvoiceStatus::Finalized => pb::InvoiceStatus::Finalized,
            InvoiceStatus::Void => pb::InvoiceStatus::Void,
        }
    }
}

fn status_name(status: i32) -> String {
    match pb::InvoiceStatus::try_from(status).unwrap_or(pb::InvoiceStatus::Unspecified) {
        pb::InvoiceStatus::Draft => "draft",
        pb::InvoiceStatus::Finalized => "finalized",
        pb::InvoiceStatus::Void => "void",
        pb::InvoiceStatus::Unspecified => "unknown",
    }
    .into()
}

fn kind_name(kind: i32) -> String {
    match pb::InvoiceLineKind::try_from(kind).unwrap_or(pb::InvoiceLineKind::Unspecified) {
        pb::InvoiceLineKind::Reservation => "reservation",
        pb::InvoiceLineKind::Burst => "burst",
        pb::InvoiceLineKind::Spot => "spot",
        pb::InvoiceLineKind::LateUsage => "late_usage",
        pb::InvoiceLineKind::SlaCredit => "sla_credit",
        pb::InvoiceLineKind::CreditApplied => "credit_applied",
        pb::InvoiceLineKind::CreditCarried => "credit_carried",
        pb::InvoiceLineKind::Unspecified => "unknown",
    }
    .into()
}

fn unit_name(unit: i32) -> String {
    match pb::LineUnit::try_from(unit).unwrap_or(pb::LineUnit::Unspecified) {
        pb::LineUnit::Second => "second",
        pb::LineUnit::MillionWeightedTokens => "million_weighted_tokens",
        pb::LineUnit::Money => "money",
        pb::LineUnit::Unspecified => "unknown",
    }
    .into()
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceQuery {
    /// A month, `YYYY-MM`.
    #[param(pattern = r"^2[0-9]{3}-(0[1-9]|1[0-2])$", example = "2026-11")]
    pub period: Option<String>,
    pub status: Option<InvoiceStatus>,
    /// At most 1000 (default 100).
    #[param(maximum = 1000)]
    pub limit: Option<u32>,
    /// The id of the last invoice of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub page_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditBalance {
    pub tenant_id: String,
    /// The tenant's currency (empty only for a tenant the platform does not know).
    pub currency: String,
    /// Credit taken off the tenant's next invoices first.
    pub balance: String,
}

pub fn list_request(
    tenant: Option<String>,
    q: InvoiceQuery,
    search: Option<String>,
) -> ApiResult<pb::ListInvoicesRequest> {
    let period = q.period.as_deref().map(parse_period).transpose()?;
    if q.limit.is_some_and(|l| l > 1000) {
        return Err(ApiError::invalid("limit is at most 1000"));
    }
    if let Some(after) = crate::api::present("page_after", q.page_after.clone())?
        && uuid::Uuid::parse_str(&after).is_err()
    {
        return Err(ApiError::invalid(format!("page_after {after:?} is not an invoice id")));
    }
    Ok(pb::ListInvoicesRequest {
        tenant_id: tenant.unwrap_or_default(),
        period: period.map(|p| p.to_string()).unwrap_or_default(),
        status: q.status.map_or(pb::InvoiceStatus::Unspecified, pb::InvoiceStatus::from).into(),
        search: search.unwrap_or_default(),
        with_lines: false,
        limit: q.limit.unwrap_or(0),
        page_after: q.page_after.unwrap_or_default(),
    })
}

/// The tenant's invoices, oldest first (drafts included: they show what
/// the month will cost before it is finalized).
#[utoipa::path(get, path = "/v1/invoices", tag = "billing",
    params(InvoiceQuery),
    responses(
        (status = 200, description = "Invoices without their lines", body = InvoiceList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 422, description = "Malformed filter", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(q): QueryParams<InvoiceQuery>,
) -> ApiResult<Json<InvoiceList>> {
    let request = list_request(Some(tenant.to_string()), q, None)?;
    let invoices = state.billing.clone().list_invoices(request).await?.into_inner().invoices;
    Ok(Json(InvoiceList { invoices: invoices.into_iter().map(Invoice::from).collect() }))
}

/// What an invoice URL answers, by the id's suffix.
enum Format {
    Json,
    Csv,
    Pdf,
}

fn split_format(id: &str) -> (&str, Format) {
    if let Some(id) = id.strip_suffix(".csv") {
        (id, Format::Csv)
    } else if let Some(id) = id.strip_suffix(".pdf") {
        (id, Format::Pdf)
    } else {
        (id.strip_suffix(".json").unwrap_or(id), Format::Json)
    }
}

/// One of the tenant's invoices with its lines; `{id}.csv` gives the lines
/// as CSV (RFC 4180, a header row, decimals as text), `{id}.pdf` the PDF.
#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "billing",
    params(("id" = String, Path, description = "Invoice id; add `.csv` for its lines as CSV, `.pdf` for the PDF")),
    responses(
        (status = 200, description = "The invoice", content(
            (Invoice = "application/json"),
            (String = "text/csv"),
            (String = "application/pdf"),
        )),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 404, description = "No such invoice of this tenant", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathParam(id): PathParam<String>,
) -> ApiResult<Response> {
    respond(&state, &id, Some(tenant.to_string())).await
}

/// Invoice `id` (with its format suffix), of `tenant` only when given.
pub async fn respond(state: &AppState, id: &str, tenant: Option<String>) -> ApiResult<Response> {
    let (id, format) = split_format(id);
    match format {
        Format::Json => Ok(Json(fetch(state, id, tenant).await?).into_response()),
        Format::Csv => csv_response(&fetch(state, id, tenant).await?),
        Format::Pdf => {
            check_uuid(id)?;
            let request = pb::GetInvoiceRequest { id: id.to_owned(), tenant_id: tenant.unwrap_or_default() };
            let pdf = state.billing.clone().get_invoice_pdf(request).await?.into_inner();
            let disposition = format!("attachment; filename=\"{}\"", pdf.filename);
            Ok((
                [(header::CONTENT_TYPE, "application/pdf".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
                pdf.pdf,
            )
                .into_response())
        }
    }
}

/// An id that is not a UUID names no invoice.
pub fn check_uuid(id: &str) -> ApiResult<()> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| ApiError::not_found(format!("no invoice {id}")))
}

pub async fn fetch(state: &AppState, id: &str, tenant: Option<String>) -> ApiResult<Invoice> {
    check_uuid(id)?;
    let request = pb::GetInvoiceRequest { id: id.to_owned(), tenant_id: tenant.unwrap_or_default() };
    Ok(state.billing.clone().get_invoice(request).await?.into_inner().into())
}

/// The columns of an invoice's lines as CSV, in order.
pub const LINE_COLUMNS: [&str; 16] = [
    "invoice_id",
    "invoice_number",
    "tenant_id",
    "period",
    "currency",
    "line_no",
    "kind",
    "description",
    "contract_id",
    "model",
    "catalog_version",
    "quantity",
    "unit",
    "usage_from",
    "usage_to",
    "amount",
];

fn rfc3339(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

/// Rows of `invoices`' lines under [`LINE_COLUMNS`].
pub fn lines_csv(invoices: &[Invoice]) -> ApiResult<Vec<u8>> {
    let rows = invoices.iter().flat_map(|i| {
        i.lines.iter().enumerate().map(move |(n, l)| {
            vec![
                i.id.clone(),
                i.number.clone().unwrap_or_default(),
                i.tenant_id.clone(),
                i.period.clone(),
                i.currency.clone(),
                n.to_string(),
                l.kind.clone(),
                l.description.clone(),
                l.contract_id.clone().unwrap_or_default(),
                l.model.clone().unwrap_or_default(),
                l.catalog_version.map(|v| v.to_string()).unwrap_or_default(),
                l.quantity.clone(),
                l.unit.clone(),
                rfc3339(l.usage_from),
                rfc3339(l.usage_to),
                l.amount.clone(),
            ]
        })
    });
    csv_of(&LINE_COLUMNS, rows)
}

fn csv_response(invoice: &Invoice) -> ApiResult<Response> {
    let body = lines_csv(std::slice::from_ref(invoice))?;
    let name = invoice.number.clone().unwrap_or_else(|| format!("draft-{}", invoice.id));
    let disposition = format!("attachment; filename=\"{name}.csv\"");
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        body,
    )
        .into_response())
}

/// The tenant's credit balance: SLA credits left over after bringing an
/// invoice to zero, taken off the next invoices first.
#[utoipa::path(get, path = "/v1/credit-balance", tag = "billing",
    responses(
        (status = 200, description = "The balance", body = CreditBalance),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn credit_balance(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
) -> ApiResult<Json<CreditBalance>> {
    let request = pb::GetCreditBalanceRequest { tenant_id: tenant.to_string() };
    let b = state.billing.clone().get_credit_balance(request).await?.into_inner();
    Ok(Json(CreditBalance { tenant_id: b.tenant_id, currency: b.currency, balance: b.balance }))
}
