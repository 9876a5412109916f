//! The admin portal's billing page: a period's invoices, running the
//! period, and each invoice's life (finalize, hold, release, void), every
//! change confirmed on a page of its own first and its result shown after.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use reservoir_domain::Period;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::extract::{PathParam, QueryParams};
use crate::portal::console::{CsrfForm, SignIn, TokenForm};
use crate::portal::page::{html, refusal};
use crate::portal::session::{self, AdminUser, Side, csrf_ok};
use crate::routes::billing::{Invoice, respond};
use crate::routes::sla_admin::{ExportFormat, ExportQuery};
use crate::routes::{billing_admin, sla_admin};
use crate::state::AppState;

pub async fn sign_in_page() -> Response {
    let page = SignIn { area: "admin portal", action: "/admin/sign-in", token_label: "Admin token", problem: None };
    html(StatusCode::OK, &page)
}

/// Exchanges an admin token for a session; a tenant's token is refused.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    Form(form): Form<TokenForm>,
) -> Response {
    let caller = match state.verifier.verify(form.token.trim()).and_then(|c| c.require_admin().map(|()| c)) {
        Ok(caller) => caller,
        Err(e) => {
            let page = SignIn {
                area: "admin portal",
                action: "/admin/sign-in",
                token_label: "Admin token",
                problem: Some(e.message),
            };
            return html(StatusCode::UNAUTHORIZED, &page);
        }
    };
    let jar = session::open(jar, session::tls(&headers), &caller.subject, Side::Admin, state.session_ttl_s);
    (jar, Redirect::to("/admin/billing")).into_response()
}

pub async fn sign_out(user: AdminUser, jar: PrivateCookieJar, Form(form): Form<CsrfForm>) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, "This form is out of date: reload the page and try again.");
    }
    (session::close(jar), Redirect::to("/admin/sign-in")).into_response()
}

#[derive(Deserialize)]
pub struct BillingQuery {
    pub period: Option<String>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/admin_billing.html")]
struct BillingPage {
    subject: String,
    csrf: String,
    period: String,
    notice: Option<String>,
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
        subject: user.subject,
        csrf: user.csrf,
        period: period.to_string(),
        notice: q.notice,
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
    csrf: String,
    action: &'static str,
    id: String,
    period: String,
    question: String,
    button: &'static str,
    needs_reason: bool,
}

pub async fn confirm(user: AdminUser, QueryParams(q): QueryParams<ConfirmQuery>) -> Response {
    let (action, question, button, needs_reason) = match q.action {
        Action::Run => ("run", format!("Draft every tenant's invoice of {}?", q.period), "Run the period", false),
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
        &Confirm { csrf: user.csrf, action, id: q.id, period: q.period, question, button, needs_reason },
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
}

/// Does a confirmed action and shows its result (or the service's message).
pub async fn act(State(state): State<AppState>, user: AdminUser, Form(form): Form<DoForm>) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, "This form is out of date: reload the page and try again.");
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
    };
    match done {
        Ok(notice) => {
            let query = serde_urlencoded::to_string([("period", form.period.as_str()), ("notice", notice.as_str())])
                .unwrap_or_default();
            Redirect::to(&format!("/admin/billing?{query}")).into_response()
        }
        Err(status) => refusal(StatusCode::CONFLICT, status.message()),
    }
}

/// `/admin/billing/invoices/{id}.pdf` (or `.csv`): any tenant's invoice.
pub async fn invoice_file(State(state): State<AppState>, _: AdminUser, PathParam(file): PathParam<String>) -> Response {
    match respond(&state, &file, None).await {
        Ok(response) => response,
        Err(e) => refusal(e.status, &e.message),
    }
}

#[derive(Deserialize)]
pub struct ExportPageQuery {
    pub period: String,
    pub format: ExportFormat,
}

/// `/admin/billing/exports/{what}`: the finance exports, downloaded with
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
    file.unwrap_or_else(|e| refusal(e.status, &e.message))
}
