//! The tenant console (`/console/...`): sign in with a tenant token; see
//! the contracts with a live meter of each one's reserved rate against what
//! it uses now, usage by day and class, the SLA report and credits, and the
//! invoices with their PDF and CSV. A session sees its own tenant only.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use chrono::Utc;
use reservoir_domain::ReservationStatus;
use reservoir_proto::time::timestamp;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::extract::PathParam;
use crate::portal::order::{self, OrderForm, Ordering, ReserveForm};
use crate::portal::page::{Area, Chrome, PageForm, PageQuery, STALE_FORM, html, refusal};
use crate::portal::session::{self, ConsoleUser, Side, csrf_ok};
use crate::portal::tenant_view::{self, TenantView, period_or_current};
use crate::routes::billing::respond;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "portal/sign_in.html")]
pub struct SignIn<'a> {
    pub area: &'a str,
    pub action: &'a str,
    pub token_label: &'a str,
    pub problem: Option<String>,
}

pub async fn sign_in_page() -> Response {
    let page =
        SignIn { area: "tenant console", action: "/console/sign-in", token_label: "Tenant API token", problem: None };
    html(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct TokenForm {
    pub token: String,
}

/// Exchanges a tenant token for a session.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    Form(form): Form<TokenForm>,
) -> Response {
    let refused = |problem: String| {
        let page = SignIn {
            area: "tenant console",
            action: "/console/sign-in",
            token_label: "Tenant API token",
            problem: Some(problem),
        };
        html(StatusCode::UNAUTHORIZED, &page)
    };
    let caller = match state.verifier.verify(form.token.trim()) {
        Ok(caller) => caller,
        Err(e) => return refused(e.message),
    };
    let tenant = match caller.tenant() {
        Ok(tenant) => tenant,
        Err(e) => return refused(e.message),
    };
    if let Err(e) = state.provision(&tenant).await {
        return refused(e.message);
    }
    let jar = session::open(jar, session::tls(&headers), tenant.as_str(), Side::Console, state.session_ttl_s);
    (jar, Redirect::to("/console")).into_response()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

pub async fn sign_out(user: ConsoleUser, jar: PrivateCookieJar, Form(form): Form<CsrfForm>) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    (session::close(jar), Redirect::to("/console/sign-in")).into_response()
}

/// The page's surroundings for this tenant, in section `current`.
fn chrome(user: &ConsoleUser, current: &'static str) -> Chrome {
    Chrome { area: Area::Console, current, subject: user.tenant.to_string(), csrf: user.csrf.clone(), notice: None }
}

#[derive(Debug, Default, Deserialize)]
pub struct PeriodQuery {
    pub period: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/console_page.html")]
struct ConsolePage {
    chrome: Chrome,
    view: TenantView,
    /// Which part of the view this page shows.
    part: Part,
    meters: Vec<Meter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Contracts,
    Usage,
    Sla,
    Invoices,
}

/// A contract's reserved rate beside what it used over the last minute.
pub struct Meter {
    pub contract_id: String,
    pub model: String,
    pub reserved: u32,
    /// Weighted tokens per second over the last `METER_WINDOW_S`.
    pub used: u64,
}

/// The live meter's window: metering's records land within seconds.
const METER_WINDOW_S: i64 = 60;

async fn meters(state: &AppState, view: &TenantView) -> Vec<Meter> {
    let now = Utc::now();
    let request = pb::UsageTotalsRequest {
        tenant_id: view.tenant.clone(),
        from: Some(timestamp(now - chrono::Duration::seconds(METER_WINDOW_S))),
        to: Some(timestamp(now)),
        by_day: false,
    };
    // The meter is an aid: without metering, the contracts still show.
    let totals = match state.metering.clone().usage_totals(request).await {
        Ok(reply) => reply.into_inner().totals,
        Err(status) => {
            tracing::warn!(error = %status.message(), "console meter");
            Vec::new()
        }
    };
    view.contracts
        .iter()
        .filter(|c| c.status == ReservationStatus::Active)
        .map(|c| {
            let id = c.id.to_string();
            let used: Decimal = totals
                .iter()
                .filter(|t| t.contract_id == id)
                .map(|t| t.weighted_tokens.parse::<Decimal>().unwrap_or_default())
                .sum();
            Meter {
                model: c.model.clone(),
                reserved: c.rate,
                used: (used / Decimal::from(METER_WINDOW_S)).round().to_u64().unwrap_or(0),
                contract_id: id,
            }
        })
        .collect()
}

async fn page(
    state: AppState,
    user: ConsoleUser,
    asked: Option<String>,
    part: Part,
    current: &'static str,
) -> Response {
    let period = match period_or_current(asked.as_deref(), Utc::now()) {
        Ok(p) => p,
        Err(message) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &message),
    };
    let view = match tenant_view::gather(&state, user.tenant.as_str(), period, "/console/invoices/").await {
        Ok(view) => view,
        Err(refused) => return refused,
    };
    let meters = if part == Part::Contracts { meters(&state, &view).await } else { Vec::new() };
    html(StatusCode::OK, &ConsolePage { chrome: chrome(&user, current), view, part, meters })
}

/// `/console`: the tenant's contracts, each active one with its live meter.
pub async fn home(State(state): State<AppState>, user: ConsoleUser, PageQuery(q): PageQuery<PeriodQuery>) -> Response {
    page(state, user, q.period, Part::Contracts, "Contracts").await
}

pub async fn usage(State(state): State<AppState>, user: ConsoleUser, PageQuery(q): PageQuery<PeriodQuery>) -> Response {
    page(state, user, q.period, Part::Usage, "Usage").await
}

pub async fn sla(State(state): State<AppState>, user: ConsoleUser, PageQuery(q): PageQuery<PeriodQuery>) -> Response {
    page(state, user, q.period, Part::Sla, "SLA").await
}

pub async fn invoices(
    State(state): State<AppState>,
    user: ConsoleUser,
    PageQuery(q): PageQuery<PeriodQuery>,
) -> Response {
    page(state, user, q.period, Part::Invoices, "Invoices").await
}

/// Where a tenant orders: for itself, back to its contracts.
fn ordering(user: &ConsoleUser) -> Ordering {
    Ordering { chrome: chrome(user, "Contracts"), base: "/console/contracts", tenant: Some(user.tenant.to_string()) }
}

/// `/console/contracts/new`: the order form.
pub async fn new_contract(
    State(state): State<AppState>,
    user: ConsoleUser,
    PageQuery(form): PageQuery<OrderForm>,
) -> Response {
    order::new_page(&state, ordering(&user), form, None).await
}

/// `/console/contracts/quote`: the order's price; nothing is reserved yet.
pub async fn quote(
    State(state): State<AppState>,
    user: ConsoleUser,
    PageQuery(form): PageQuery<OrderForm>,
) -> Response {
    order::quote_page(&state, ordering(&user), form).await
}

/// Reserves the quoted order for the session's tenant.
pub async fn reserve(
    State(state): State<AppState>,
    user: ConsoleUser,
    PageForm(form): PageForm<ReserveForm>,
) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    match order::reserve(&state, ordering(&user), form).await {
        Ok(_) => Redirect::to("/console").into_response(),
        Err(refused) => refused,
    }
}

/// `/console/invoices/{id}.pdf` (or `.csv`): the tenant's own invoice only.
pub async fn invoice_file(
    State(state): State<AppState>,
    user: ConsoleUser,
    PathParam(file): PathParam<String>,
) -> Response {
    match respond(&state, &file, Some(user.tenant.to_string())).await {
        Ok(response) => response,
        Err(e) => refusal(e.status, &e.message),
    }
}
