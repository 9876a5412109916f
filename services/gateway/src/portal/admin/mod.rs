//! The admin portal (`/admin/ui/...`): pages for operators and finance,
//! signed in with an admin token. Its pages live under `/admin/ui` because
//! the JSON admin API already answers at `/admin/tenants`, `/admin/catalog`
//! and the like.

pub mod billing;
pub mod capacity;
pub mod catalog;
pub mod contracts;
pub mod overview;
pub mod sla;
pub mod tenants;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;

use crate::portal::console::{CsrfForm, SignIn, TokenForm};
use crate::portal::page::{Area, Chrome, STALE_FORM, html, refusal};
use crate::portal::session::{self, AdminUser, Side, csrf_ok};
use crate::state::AppState;

/// Where a fresh admin session lands.
pub const HOME: &str = "/admin/ui";

fn sign_in_form(problem: Option<String>) -> SignIn<'static> {
    SignIn { area: "admin portal", action: "/admin/sign-in", token_label: "Admin token", problem }
}

pub async fn sign_in_page() -> Response {
    html(StatusCode::OK, &sign_in_form(None))
}

/// Exchanges an admin token for a session; a tenant's token is refused.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    Form(form): Form<TokenForm>,
) -> Response {
    let caller = match state.authenticate(form.token.trim()).await.and_then(|c| c.require_admin().map(|()| c)) {
        Ok(caller) => caller,
        Err(e) => return html(StatusCode::UNAUTHORIZED, &sign_in_form(Some(e.message))),
    };
    let jar = session::open(jar, session::tls(&headers), &caller, Side::Admin, state.session_ttl_s);
    (jar, Redirect::to(HOME)).into_response()
}

pub async fn sign_out(user: AdminUser, jar: PrivateCookieJar, Form(form): Form<CsrfForm>) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    (session::close(jar), Redirect::to("/admin/sign-in")).into_response()
}

/// `/admin`: the portal's home.
pub async fn root() -> Redirect {
    Redirect::to(HOME)
}

/// The page's surroundings for this admin, in section `current`.
pub fn chrome(user: &AdminUser, current: &'static str, notice: Option<String>) -> Chrome {
    Chrome { area: Area::Admin, current, subject: user.subject.clone(), csrf: user.csrf.clone(), notice }
}
