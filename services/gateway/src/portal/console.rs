//! The tenant console: sign in with a tenant token, see invoices and the
//! credit balance, download each invoice as PDF or CSV.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::extract::PathParam;
use crate::portal::page::{html, refusal};
use crate::portal::session::{self, ConsoleUser, Side, csrf_ok};
use crate::routes::billing::{Invoice, respond};
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
        return refusal(StatusCode::FORBIDDEN, "This form is out of date: reload the page and try again.");
    }
    (session::close(jar), Redirect::to("/console/sign-in")).into_response()
}

#[derive(Template)]
#[template(path = "portal/console_home.html")]
struct Home {
    tenant: String,
    csrf: String,
    balance: String,
    invoices: Vec<Invoice>,
}

pub async fn home(State(state): State<AppState>, user: ConsoleUser) -> Response {
    let tenant = user.tenant.to_string();
    let listed = state
        .billing
        .clone()
        .list_invoices(pb::ListInvoicesRequest { tenant_id: tenant.clone(), limit: 1000, ..Default::default() })
        .await;
    let balance =
        state.billing.clone().get_credit_balance(pb::GetCreditBalanceRequest { tenant_id: tenant.clone() }).await;
    let (invoices, balance) = match (listed, balance) {
        (Ok(list), Ok(balance)) => {
            let b = balance.into_inner();
            (
                list.into_inner().invoices.into_iter().map(Invoice::from).collect(),
                format!("{} {}", b.balance, b.currency),
            )
        }
        (Err(status), _) | (_, Err(status)) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("Billing cannot be reached: {}", status.message()),
            );
        }
    };
    html(StatusCode::OK, &Home { tenant, csrf: user.csrf, balance, invoices })
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
