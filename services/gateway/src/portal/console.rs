//! The tenant console (`/console/...`): sign in with a tenant token; see
//! the contracts with a live meter of each one's reserved rate against what
//! it uses now, usage by day and class, the SLA report and credits, and the
//! invoices with their PDF and CSV. A session sees its own tenant only.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use chrono::Utc;
use serde::Deserialize;

use crate::extract::PathParam;
use crate::portal::meter;
use crate::portal::order::{self, OrderForm, Ordering, ReserveForm};
use crate::portal::page::{Area, Chrome, PageForm, PageQuery, STALE_FORM, error_refusal, html, refusal};
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
    let caller = match state.authenticate(form.token.trim()).await {
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
    let jar = session::open(jar, session::tls(&headers), &caller, Side::Console, state.session_ttl_s);
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
    meters: Vec<meter::Meter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Contracts,
    Usage,
    Sla,
    Invoices,
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
    let meters = if part == Part::Contracts { meter::meters(&state, user.tenant.as_str()).await } else { Vec::new() };
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

#[derive(Template)]
#[template(path = "portal/part_meters.html")]
struct Meters {
    meters: Vec<meter::Meter>,
}

/// `/console/meters`: the meters alone, which the contracts page fetches
/// every few seconds to keep them live.
pub async fn meters(State(state): State<AppState>, user: ConsoleUser) -> Response {
    html(StatusCode::OK, &Meters { meters: meter::meters(&state, user.tenant.as_str()).await })
}

/// `/console/invoices/{id}.pdf` (or `.csv`): the tenant's own invoice only.
pub async fn invoice_file(
    State(state): State<AppState>,
    user: ConsoleUser,
    PathParam(file): PathParam<String>,
) -> Response {
    match respond(&state, &file, Some(user.tenant.to_string())).await {
        Ok(response) => response,
        Err(e) => error_refusal(e),
    }
}
