//! Billing for admins: run a period, list and search invoices, finalize,
//! hold, release, void, issue credit notes, and export invoices, their
//! lines and credit notes of a period as CSV or JSON lines.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use reservoir_proto::time::instant;
use reservoir_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::routes::billing::{
    Invoice, InvoiceList, InvoiceQuery, InvoiceStatus, check_uuid, lines_csv, list_request, respond,
};
use crate::routes::export::{csv_of, download, jsonl};
use crate::routes::sla::parse_period;
use crate::routes::sla_admin::ExportQuery;
use crate::state::{AppState, AuthAdmin};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunReport {
    pub period: String,
    /// Drafts created or recomputed.
    pub drafted: u32,
    /// Tenants whose invoice was finalized before (left as it is).
    pub already_final: u32,
    pub tenants: u32,
}

/// Close an ended month: a draft invoice for every tenant with something
/// to bill, or the drafts already there recomputed. Running it again gives
/// the same invoices.
#[utoipa::path(post, path = "/admin/billing/periods/{period}/run", tag = "admin",
    params(("period" = String, Path, pattern = r"^2[0-9]{3}-(0[1-9]|1[0-2])$", example = "2026-10")),
    responses(
        (status = 200, description = "The run's report", body = RunReport),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "The month has not ended", body = ErrorBody),
        (status = 422, description = "Malformed period", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn run_period(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(period): PathParam<String>,
) -> ApiResult<Json<RunReport>> {
    let period = parse_period(&period)?;
    let request = pb::RunPeriodRequest { period: period.to_string(), actor: admin.subject };
    let r = state.billing.clone().run_period(request).await?.into_inner();
    Ok(Json(RunReport { period: r.period, drafted: r.drafted, already_final: r.already_final, tenants: r.tenants }))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdminInvoiceQuery {
    /// A month, `YYYY-MM`.
    #[param(pattern = r"^2[0-9]{3}-(0[1-9]|1[0-2])$", example = "2026-11")]
    pub period: Option<String>,
    pub status: Option<InvoiceStatus>,
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: Option<String>,
    /// Text in the invoice number or the tenant id.
    pub search: Option<String>,
    /// At most 1000 (default 100).
    #[param(maximum = 1000)]
    pub limit: Option<u32>,
    /// The id of the last invoice of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub page_after: Option<String>,
}

/// Every tenant's invoices, filtered and searched.
#[utoipa::path(get, path = "/admin/invoices", tag = "admin",
    params(AdminInvoiceQuery),
    responses(
        (status = 200, description = "Invoices without their lines", body = InvoiceList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Malformed filter", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: AuthAdmin,
    QueryParams(q): QueryParams<AdminInvoiceQuery>,
) -> ApiResult<Json<InvoiceList>> {
    let query = InvoiceQuery { period: q.period, status: q.status, limit: q.limit, page_after: q.page_after };
    let tenant = crate::api::present("tenant_id", q.tenant_id)?;
    let request = list_request(tenant, query, q.search)?;
    let invoices = state.billing.clone().list_invoices(request).await?.into_inner().invoices;
    Ok(Json(InvoiceList { invoices: invoices.into_iter().map(Invoice::from).collect() }))
}

/// Any tenant's invoice with its lines; `{id}.csv` and `{id}.pdf` as for tenants.
#[utoipa::path(get, path = "/admin/invoices/{id}", tag = "admin",
    params(("id" = String, Path, description = "Invoice id; add `.csv` or `.pdf` for those formats")),
    responses(
        (status = 200, description = "The invoice", content(
            (Invoice = "application/json"),
            (String = "text/csv"),
            (String = "application/pdf"),
        )),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such invoice", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(State(state): State<AppState>, _: AuthAdmin, PathParam(id): PathParam<String>) -> ApiResult<Response> {
    respond(&state, &id, None).await
}

/// Finalize a draft now: it is recomputed, numbered (`RSV-2026-000123`,
/// without gaps per year) and never changes again.
#[utoipa::path(post, path = "/admin/invoices/{id}/finalize", tag = "admin",
    params(("id" = String, Path, description = "Invoice id")),
    responses(
        (status = 200, description = "The finalized invoice", body = Invoice),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such invoice", body = ErrorBody),
        (status = 409, description = "Not a draft", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn finalize(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Invoice>> {
    check_uuid(&id)?;
    let request = pb::FinalizeInvoiceRequest { id, actor: admin.subject };
    Ok(Json(state.billing.clone().finalize_invoice(request).await?.into_inner().into()))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why, in a sentence (at most 1000 characters).
    #[schema(example = "Disputed usage: waiting for the customer's reply", pattern = r"\S", max_length = 1000)]
    pub reason: String,
}

/// Hold a draft: it will not finalize by itself at the end of its grace
/// period.
#[utoipa::path(post, path = "/admin/invoices/{id}/hold", tag = "admin",
    params(("id" = String, Path, description = "Invoice id")),
    request_body = Reason,
    responses(
        (status = 200, description = "The held draft", body = Invoice),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such invoice", body = ErrorBody),
        (status = 409, description = "Not a draft", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Reason too long", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn hold(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<Reason>,
) -> ApiResult<Json<Invoice>> {
    check_uuid(&id)?;
    let request = pb::HoldInvoiceRequest { id, hold: true, reason: body.reason, actor: admin.subject };
    Ok(Json(state.billing.clone().hold_invoice(request).await?.into_inner().into()))
}

/// Release a held draft: it finalizes by itself again.
#[utoipa::path(post, path = "/admin/invoices/{id}/release", tag = "admin",
    params(("id" = String, Path, description = "Invoice id")),
    responses(
        (status = 200, description = "The released draft", body = Invoice),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such invoice", body = ErrorBody),
        (status = 409, description = "Not a draft", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn release(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Invoice>> {
    check_uuid(&id)?;
    let request = pb::HoldInvoiceRequest { id, hold: false, reason: String::new(), actor: admin.subject };
    Ok(Json(state.billing.clone().hold_invoice(request).await?.into_inner().into()))
}

/// Void a finalized invoice, with a reason. Its number stays used; the
/// period's next run bills the tenant again.
#[utoipa::path(post, path = "/admin/invoices/{id}/void", tag = "admin",
    params(("id" = String, Path, description = "Invoice id")),
    request_body = Reason,
    responses(
        (status = 200, description = "The void invoice", body = Invoice),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such invoice", body = ErrorBody),
        (status = 409, description = "Not finalized, or already credited", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "No reason", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn void(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<Reason>,
) -> ApiResult<Json<Invoice>> {
    check_uuid(&id)?;
    let request = pb::VoidInvoiceRequest { id, reason: body.reason, actor: admin.subject };
    Ok(Json(state.billing.clone().void_invoice(request).await?.into_inner().into()))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCreditNote {
    /// Decimal string: positive, in the currency's minor unit at most, no
    /// more than what is left of the invoice.
    #[schema(example = "10.00", pattern = r"^[0-9]{1,16}(\.[0-9]{1,12})?$")]
    pub amount: String,
    #[schema(example = "Goodwill for the 2026-11-03 outage", pattern = r"\S", max_length = 1000)]
    pub reason: String,
    /// The same key again answers the same credit note (1 to 255 characters).
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditNote {
    pub id: String,
    pub invoice_id: String,
    pub invoice_number: String,
    pub tenant_id: String,
    pub currency: String,
    pub amount: String,
    pub reason: String,
    pub issued_at: Option<DateTime<Utc>>,
    pub issued_by: String,
}

impl From<pb::CreditNote> for CreditNote {
    fn from(n: pb::CreditNote) -> Self {
        CreditNote {
            id: n.id,
            invoice_id: n.invoice_id,
            invoice_number: n.invoice_number,
            tenant_id: n.tenant_id,
            currency: n.currency,
            amount: n.amount,
            reason: n.reason,
            issued_at: n.issued_at.as_ref().and_then(instant),
            issued_by: n.issued_by,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditNoteList {
    pub credit_notes: Vec<CreditNote>,
}

/// Correct a finalized invoice with a credit note (never more than what is
/// left of it).
#[utoipa::path(post, path = "/admin/invoices/{id}/credit-notes", tag = "admin",
    params(("id" = String, Path, description = "Invoice id")),
    request_body = NewCreditNote,
    responses(
        (status = 201, description = "Issued", body = CreditNote),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such invoice", body = ErrorBody),
        (status = 409, description = "Not finalized, more than what is left of it, more places than the \
            currency has, or a reused key", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Malformed amount, or no reason", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn credit_note(
    State(state): State<AppState>,
    AuthAdmin(admin): AuthAdmin,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<NewCreditNote>,
) -> ApiResult<(StatusCode, Json<CreditNote>)> {
    check_uuid(&id)?;
    let request = pb::IssueCreditNoteRequest {
        invoice_id: id,
        amount: body.amount,
        reason: body.reason,
        actor: admin.subject,
        idempotency_key: body.idempotency_key.unwrap_or_default(),
    };
    let note = state.billing.clone().issue_credit_note(request).await?.into_inner();
    Ok((StatusCode::CREATED, Json(note.into())))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreditNoteQuery {
    /// The invoices' month, `YYYY-MM`.
    #[param(pattern = r"^2[0-9]{3}-(0[1-9]|1[0-2])$", example = "2026-11")]
    pub period: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: Option<String>,
}

/// Credit notes, of one month's invoices or of one tenant when asked.
#[utoipa::path(get, path = "/admin/credit-notes", tag = "admin",
    params(CreditNoteQuery),
    responses(
        (status = 200, description = "Credit notes, oldest first", body = CreditNoteList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Malformed filter", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn credit_notes(
    State(state): State<AppState>,
    _: AuthAdmin,
    QueryParams(q): QueryParams<CreditNoteQuery>,
) -> ApiResult<Json<CreditNoteList>> {
    let notes = list_notes(&state, q.period.as_deref(), crate::api::present("tenant_id", q.tenant_id)?).await?;
    Ok(Json(CreditNoteList { credit_notes: notes }))
}

async fn list_notes(state: &AppState, period: Option<&str>, tenant: Option<String>) -> ApiResult<Vec<CreditNote>> {
    let period = period.map(parse_period).transpose()?;
    let request = pb::ListCreditNotesRequest {
        tenant_id: tenant.unwrap_or_default(),
        period: period.map(|p| p.to_string()).unwrap_or_default(),
        invoice_id: String::new(),
    };
    let notes = state.billing.clone().list_credit_notes(request).await?.into_inner().credit_notes;
    Ok(notes.into_iter().map(CreditNote::from).collect())
}

/// Every invoice of a period with its lines (pages of 1000).
async fn period_invoices(state: &AppState, period: &str) -> ApiResult<Vec<Invoice>> {
    let period = parse_period(period)?;
    let mut all = Vec::new();
    let mut page_after = String::new();
    loop {
        let request = pb::ListInvoicesRequest {
            period: period.to_string(),
            with_lines: true,
            limit: 1000,
            page_after: page_after.clone(),
            ..Default::default()
        };
        let page = state.billing.clone().list_invoices(request).await?.into_inner().invoices;
        let last = page.len() < 1000;
        page_after = page.last().map(|i| i.id.clone()).unwrap_or_default();
        all.extend(page.into_iter().map(Invoice::from));
        if last {
            return Ok(all);
        }
    }
}

/// The columns of the invoices export, in order.
pub const INVOICE_COLUMNS: [&str; 12] = [
    "invoice_id",
    "number",
    "tenant_id",
    "period",
    "currency",
    "status",
    "subtotal",
    "total",
    "credited",
    "credit_balance_after",
    "finalized_at",
    "voided_at",
];

/// A period's invoices (one row each), as CSV (RFC 4180, a header row,
/// decimals as text) or JSON lines (with their lines).
#[utoipa::path(get, path = "/admin/exports/invoices", tag = "admin",
    params(ExportQuery),
    responses(
        (status = 200, description = "The invoices", content((String = "text/csv"), (Invoice = "application/jsonl"))),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Malformed period or format", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn export_invoices(
    State(state): State<AppState>,
    _: AuthAdmin,
    QueryParams(q): QueryParams<ExportQuery>,
) -> ApiResult<Response> {
    invoices_export(&state, q).await
}

/// The invoices export itself (the admin portal downloads it too).
pub async fn invoices_export(state: &AppState, q: ExportQuery) -> ApiResult<Response> {
    let invoices = period_invoices(state, &q.period).await?;
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let rows = invoices.iter().map(|i| {
        vec![
            i.id.clone(),
            i.number.clone().unwrap_or_default(),
            i.tenant_id.clone(),
            i.period.clone(),
            i.currency.clone(),
            i.status.clone(),
            i.subtotal.clone(),
            i.total.clone(),
            i.credited.clone(),
            i.credit_balance_after.clone(),
            time(i.finalized_at),
            time(i.voided_at),
        ]
    });
    let csv = csv_of(&INVOICE_COLUMNS, rows)?;
    Ok(download(&q.period, "invoices", q.format, csv, jsonl(&invoices)?))
}

/// A period's invoice lines (one row per line, with its invoice), as CSV or
/// JSON lines.
#[utoipa::path(get, path = "/admin/exports/invoice-lines", tag = "admin",
    params(ExportQuery),
    responses(
        (status = 200, description = "The lines", content((String = "text/csv"), (String = "application/jsonl"))),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Malformed period or format", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn export_lines(
    State(state): State<AppState>,
    _: AuthAdmin,
    QueryParams(q): QueryParams<ExportQuery>,
) -> ApiResult<Response> {
    lines_export(&state, q).await
}

/// The invoice lines export itself.
pub async fn lines_export(state: &AppState, q: ExportQuery) -> ApiResult<Response> {
    let invoices = period_invoices(state, &q.period).await?;
    let mut lines = Vec::new();
    for i in &invoices {
        for (n, l) in i.lines.iter().enumerate() {
            lines.push(serde_json::json!({
                "invoice_id": i.id, "invoice_number": i.number, "tenant_id": i.tenant_id, "period": i.period,
                "currency": i.currency, "line_no": n, "line": l,
            }));
        }
    }
    Ok(download(&q.period, "invoice-lines", q.format, lines_csv(&invoices)?, jsonl(&lines)?))
}

/// The columns of the credit notes export, in order.
pub const CREDIT_NOTE_COLUMNS: [&str; 9] = [
    "credit_note_id",
    "invoice_id",
    "invoice_number",
    "tenant_id",
    "currency",
    "amount",
    "reason",
    "issued_at",
    "issued_by",
];

/// Credit notes against a period's invoices, as CSV or JSON lines.
#[utoipa::path(get, path = "/admin/exports/credit-notes", tag = "admin",
    params(ExportQuery),
    responses(
        (status = 200, description = "The credit notes", content((String = "text/csv"), (CreditNote = "application/jsonl"))),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Malformed period or format", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn export_credit_notes(
    State(state): State<AppState>,
    _: AuthAdmin,
    QueryParams(q): QueryParams<ExportQuery>,
) -> ApiResult<Response> {
    credit_notes_export(&state, q).await
}

/// The credit notes export itself.
pub async fn credit_notes_export(state: &AppState, q: ExportQuery) -> ApiResult<Response> {
    let notes = list_notes(state, Some(&q.period), None).await?;
    let rows = notes.iter().map(|n| {
        vec![
            n.id.clone(),
            n.invoice_id.clone(),
            n.invoice_number.clone(),
            n.tenant_id.clone(),
            n.currency.clone(),
            n.amount.clone(),
            n.reason.clone(),
            n.issued_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            n.issued_by.clone(),
        ]
    });
    let csv = csv_of(&CREDIT_NOTE_COLUMNS, rows)?;
    Ok(download(&q.period, "credit-notes", q.format, csv, jsonl(&notes)?))
}
