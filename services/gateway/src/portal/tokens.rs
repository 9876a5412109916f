//! `/console/tokens`: a tenant's API tokens. A new token is signed here and
//! shown once, on the page that answers its creation (never stored, never
//! cached by the browser); the list shows names and lifetimes only.
//! Revoking asks first, and takes effect on this gateway at once.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use chrono::{DateTime, Utc};
use reservoir_domain::Role;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::extract::PathParam;
use crate::portal::console::CsrfForm;
use crate::portal::page::{
    Area, Chrome, PageForm, PageQuery, STALE_FORM, back_with_notice, error_refusal, html, minute, refusal,
    service_refusal,
};
use crate::portal::session::{self, ConsoleUser, csrf_ok};
use crate::state::AppState;

const HOME: &str = "/console/tokens";
/// Lifetimes the form offers, in days; the API accepts any from 1 to 365.
const LIFETIMES: [u32; 4] = [7, 30, 90, 365];
const LIFETIME_DEFAULT: u32 = 90;

fn chrome(user: &ConsoleUser, notice: Option<String>) -> Chrome {
    Chrome {
        area: Area::Console,
        current: "API tokens",
        subject: user.tenant.to_string(),
        csrf: user.csrf.clone(),
        notice,
    }
}

/// One token as the list shows it.
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub expires: String,
    /// "active", "revoked" or "expired".
    pub state: &'static str,
}

fn when(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(reservoir_proto::time::instant)
}

impl From<&pb::ApiToken> for TokenRow {
    fn from(t: &pb::ApiToken) -> Self {
        let expires = when(t.expires_at.as_ref());
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if expires.is_none_or(|e| e <= Utc::now()) {
            "expired"
        } else {
            "active"
        };
        TokenRow {
            id: t.id.clone(),
            name: t.name.clone(),
            created: minute(t.created_at.as_ref()),
            expires: minute(t.expires_at.as_ref()),
            state,
        }
    }
}

#[derive(Template)]
#[template(path = "portal/console_tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenRow>,
    lifetimes: [u32; 4],
    lifetime_default: u32,
    /// Why tokens cannot be issued here, when they cannot.
    cannot_issue: Option<&'static str>,
}

const CANNOT_ISSUE: &str = "This platform's tokens come from its identity provider: ask your operator for one.";

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

/// The list, and the form that issues a token.
pub async fn page(State(state): State<AppState>, user: ConsoleUser, PageQuery(q): PageQuery<NoticeQuery>) -> Response {
    let listed =
        state.contracts.clone().list_api_tokens(pb::ListApiTokensRequest { tenant_id: user.tenant.to_string() }).await;
    let tokens = match listed {
        Ok(reply) => reply.into_inner().tokens.iter().map(TokenRow::from).collect(),
        Err(status) => return service_refusal(status),
    };
    let page = TokensPage {
        chrome: chrome(&user, q.notice),
        tokens,
        lifetimes: LIFETIMES,
        lifetime_default: LIFETIME_DEFAULT,
        cannot_issue: state.signer.is_none().then_some(CANNOT_ISSUE),
    };
    html(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct IssueForm {
    pub csrf: String,
    pub name: String,
    pub lifetime_days: u32,
}

#[derive(Template)]
#[template(path = "portal/console_token_issued.html")]
struct IssuedPage {
    chrome: Chrome,
    row: TokenRow,
    token: String,
}

/// Issues a token and shows it, this once.
pub async fn issue(State(state): State<AppState>, user: ConsoleUser, PageForm(form): PageForm<IssueForm>) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    let Some(signer) = state.signer.clone() else {
        return refusal(StatusCode::CONFLICT, CANNOT_ISSUE);
    };
    let request = pb::CreateApiTokenRequest {
        tenant_id: user.tenant.to_string(),
        name: form.name,
        lifetime_days: form.lifetime_days,
    };
    let created = match state.contracts.clone().create_api_token(request).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => return service_refusal(status),
    };
    let signed = uuid::Uuid::parse_str(&created.id).map_err(anyhow::Error::from).and_then(|id| {
        let expires_at = when(created.expires_at.as_ref()).map_or(0, |t| u64::try_from(t.timestamp()).unwrap_or(0));
        signer.sign(user.tenant.as_str(), Role::Tenant, expires_at, Some(id))
    });
    let token = match signed {
        Ok(token) => token,
        Err(e) => {
            // The recorded token was never shown, so nobody holds it; revoke
            // it so that the list does not show it as active.
            tracing::error!(error = %e, "signing an API token");
            let _ = state.contracts.clone().revoke_api_token(reference(&user, &created.id)).await;
            return error_refusal(crate::error::ApiError::internal());
        }
    };
    let mut response =
        html(StatusCode::CREATED, &IssuedPage { chrome: chrome(&user, None), row: (&created).into(), token });
    // The page holds a secret: no cache, no back-button copy.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn reference(user: &ConsoleUser, id: &str) -> pb::ApiTokenRef {
    pb::ApiTokenRef { tenant_id: user.tenant.to_string(), id: id.to_owned() }
}

#[derive(Template)]
#[template(path = "portal/console_token_revoke.html")]
struct RevokePage {
    chrome: Chrome,
    row: TokenRow,
    /// Whether this session was opened with the token.
    signed_in_with: bool,
}

/// Asks before revoking.
pub async fn revoke_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    PathParam(id): PathParam<String>,
) -> Response {
    match state.contracts.clone().get_api_token(reference(&user, &id)).await {
        Ok(reply) => {
            let row = TokenRow::from(&reply.into_inner());
            let signed_in_with = user.token_id.is_some_and(|mine| mine.to_string() == row.id);
            html(StatusCode::OK, &RevokePage { chrome: chrome(&user, None), row, signed_in_with })
        }
        Err(status) => service_refusal(status),
    }
}

/// Revokes the token: refused on this gateway from now on, and everywhere
/// within a few seconds.
pub async fn revoke(
    State(state): State<AppState>,
    user: ConsoleUser,
    jar: PrivateCookieJar,
    PathParam(id): PathParam<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    let revoked = match state.contracts.clone().revoke_api_token(reference(&user, &id)).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => return service_refusal(status),
    };
    let id = uuid::Uuid::parse_str(&revoked.id).ok();
    if let Some(id) = id {
        state.revocations.revoked(&user.tenant, id);
    }
    if id.is_some() && id == user.token_id {
        // The session was opened with this token: it ends with it.
        return (session::close(jar), Redirect::to("/console/sign-in")).into_response();
    }
    back_with_notice(HOME, &[], &format!("Token “{}” is revoked.", revoked.name))
}
