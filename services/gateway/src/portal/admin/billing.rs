//! The admin portal's billing page: a period's invoices, running the
//! period, and each invoice's life (finalize, hold, release, void, credit
//! notes), every change confirmed on a page of its own first and its result
//! shown after.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use reservoir_domain::Period;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::extract::{PathParam, QueryParams};
use crate::portal::admin::chrome;
use crate::portal::page::{Chrome, STALE_FORM, back_with_notice, error_refusal, html, refusal};
use crate::portal::session::{AdminUser, csrf_ok};
use crate::routes::billing::{Invoice, respond};
use crate::routes::sla_admin::{ExportFormat, ExportQuery};
use crate::routes::{billing_admin, sla_admin};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct BillingQuery {
    pub period: Option<String>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/admin_billing.html")]
struct BillingPage {
    chrome: Chrome,
    period: String,
    invoices: Vec<Invoice>,
    drafts: usize,
    finalized: usize,
    void: usize,
    exports: [(&'static str, &'static str); 4],
}

/// The period shown: the one asked for, else last month; the error is the
/// message for the refusal page.
fn period_or_last(asked: Option<&str>) -> Result<Period, String> {
    match asked {
        Some(p) => p.parse().map_err(|e: reservoir_domain::DomainError| e.to_string()),
        None => Period::containing(chrono::Utc::now())
            .ok()
            .and_then(|p| p.previous())
            .ok_or_else(|| "no period before this one".to_owned()),
    }
}

pub async fn billing(
    State(state): State<AppState>,
    user: AdminUser,
    QueryParams(q): QueryParams<BillingQuery>,
) -> Response {
    let period = match period_or_last(q.period.as_deref()) {
        Ok(p) => p,
        Err(message) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &message),
    };
    let request = pb::ListInvoicesRequest { period: period.to_string(), limit: 1000, ..Default::default() };
    let invoices: Vec<Invoice> = match state.billing.clone().list_invoices(request).await {
        Ok(list) => list.into_inner().invoices.into_iter().map(Invoice::from).collect(),
        Err(status) => return refusal(StatusCode::SERVICE_UNAVAILABLE, &format!("Billing: {}", status.message())),
    };
    let count = |s: &str| invoices.iter().filter(|i| i.status == s).count();
    let page = BillingPage {
        chrome: chrome(&user, "Billing", q.notice),
        period: period.to_string(),
        drafts: count("draft"),
        finalized: count("finalized"),
        void: count("void"),
        invoices,
        exports: [
            ("invoices", "invoices"),
            ("invoice-lines", "invoice lines"),
            ("credit-notes", "credit notes"),
            ("sla-credits", "SLA credits"),
        ],
    };
    html(StatusCode::OK, &page)
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Run,
    Finalize,
    Hold,
    Release,
    Void,
    CreditNote,
}

#[derive(Deserialize)]
pub struct ConfirmQuery {
    pub action: Action,
    #[serde(default)]
    pub id: String,
    pub period: String,
}

#[derive(Template)]
#[template(path = "portal/confirm.html")]
struct Confirm {
    chrome: Chrome,
    action: &'static str,
    id: String,
    period: String,
    question: String,
    button: &'static str,
    needs_reason: bool,
    needs_amount: bool,
    /// Makes a resubmitted form answer the same credit note.
    idempotency_key: String,
}

pub async fn confirm(user: AdminUser, QueryParams(q): QueryParams<ConfirmQuery>) -> Response {
    let (action, question, button, needs_reason) = match q.action {
        Action::Run => ("run", format!("Draft every tenant's invoice of {}?", q.period), "Run the period", false),
        Action::CreditNote => (
            "credit_note",
            format!("Issue a credit note against invoice {}? It lowers what the tenant owes.", q.id),
            "Issue the credit note",
            true,
        ),
        Action::Finalize => (
            "finalize",
            format!("Finalize invoice {}? It gets its number and never changes again.", q.id),
            "Finalize",
            false,
        ),
        Action::Hold => ("hold", format!("Hold draft {}? It will not finalize by itself.", q.id), "Hold", true),
        Action::Release => {
            ("release", format!("Release draft {}? It finalizes by itself again.", q.id), "Release", false)
        }
        Action::Void => ("void", format!("Void invoice {}? Its number stays used.", q.id), "Void", true),
    };
    html(
        StatusCode::OK,
        &Confirm {
            chrome: chrome(&user, "Billing", None),
            action,
            id: q.id,
            period: q.period,
            question,
            button,
            needs_reason,
            needs_amount: q.action == Action::CreditNote,
            idempotency_key: uuid::Uuid::new_v4().to_string(),
        },
    )
}

#[derive(Deserialize)]
pub struct DoForm {
    pub csrf: String,
    pub action: Action,
    #[serde(default)]
    pub id: String,
    pub period: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub amount: String,
    #[serde(default)]
    pub idempotency_key: String,
}

/// Does a confirmed action and shows its result (or the service's message).
pub async fn act(State(state): State<AppState>, user: AdminUser, Form(form): Form<DoForm>) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    let mut billing = state.billing.clone();
    let (id, actor) = (form.id.clone(), user.subject.clone());
    let done = match form.action {
        Action::Run => billing.run_period(pb::RunPeriodRequest { period: form.period.clone(), actor }).await.map(|r| {
            let r = r.into_inner();
            format!(
                "{} run: {} tenants, {} drafts, {} already finalized",
                r.period, r.tenants, r.drafted, r.already_final
            )
        }),
        Action::Finalize => billing
            .finalize_invoice(pb::FinalizeInvoiceRequest { id, actor })
            .await
            .map(|i| format!("Finalized as {}", i.into_inner().number)),
        Action::Hold | Action::Release => {
            let hold = form.action == Action::Hold;
            billing
                .hold_invoice(pb::HoldInvoiceRequest { id, hold, reason: form.reason.clone(), actor })
                .await
                .map(|_| if hold { "Held".to_owned() } else { "Released".to_owned() })
        }
        Action::Void => billing
            .void_invoice(pb::VoidInvoiceRequest { id, reason: form.reason.clone(), actor })
            .await
            .map(|i| format!("Voided {}", i.into_inner().number)),
        Action::CreditNote => billing
            .issue_credit_note(pb::IssueCreditNoteRequest {
                invoice_id: id,
                amount: form.amount.trim().to_owned(),
                reason: form.reason.clone(),
                actor,
                idempotency_key: form.idempotency_key.clone(),
            })
            .await
            .map(|n| {
                let n = n.into_inner();
                format!("Credit note of {} {} issued against {}", n.amount, n.currency, n.invoice_number)
            }),
    };
    match done {
        Ok(notice) => back_with_notice("/admin/ui/billing", &[("period", form.period.as_str())], &notice),
        Err(status) => refusal(StatusCode::CONFLICT, status.message()),
    }
}

/// `/admin/ui/billing/invoices/{id}.pdf` (or `.csv`): any tenant's invoice.
pub async fn invoice_file(State(state): State<AppState>, _: AdminUser, PathParam(file): PathParam<String>) -> Response {
    match respond(&state, &file, None).await {
        Ok(response) => response,
        Err(e) => error_refusal(e),
    }
}

#[derive(Deserialize)]
pub struct ExportPageQuery {
    pub period: String,
    pub format: ExportFormat,
}

/// `/admin/ui/billing/exports/{what}`: the finance exports, downloaded with
/// the session (`invoices`, `invoice-lines`, `credit-notes`, `sla-credits`).
pub async fn export(
    State(state): State<AppState>,
    _: AdminUser,
    PathParam(what): PathParam<String>,
    QueryParams(q): QueryParams<ExportPageQuery>,
) -> Response {
    let query = ExportQuery { period: q.period, format: q.format };
    let file = match what.as_str() {
        "invoices" => billing_admin::invoices_export(&state, query).await,
        "invoice-lines" => billing_admin::lines_export(&state, query).await,
        "credit-notes" => billing_admin::credit_notes_export(&state, query).await,
        "sla-credits" => sla_admin::credits_export(&state, query).await,
        _ => return refusal(StatusCode::NOT_FOUND, "No such export."),
    };
    file.unwrap_or_else(error_refusal)
}
