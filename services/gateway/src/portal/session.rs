//! Browser sessions for the portal: a token (or, later, credentials) is
//! exchanged once for a session in an encrypted cookie, so pages never see
//! a bearer token.
//!
//! The cookie (`reservoir_session`) is encrypted and authenticated with the
//! gateway's session key (`axum-extra`'s private jar), HttpOnly,
//! SameSite=Strict, Secure when the request came over TLS (a proxy's
//! `X-Forwarded-Proto: https`), and expires with the session. It holds who
//! signed in, as what, until when, and the CSRF token every form of the
//! session carries back.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use reservoir_domain::TenantId;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::auth::Caller;
use crate::portal::page::{error_refusal, refusal};
use crate::state::AppState;

pub const COOKIE: &str = "reservoir_session";

/// Who a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// A tenant, in the console.
    Console,
    /// An operator, in the admin portal.
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub subject: String,
    pub side: Side,
    /// Unix seconds.
    pub expires_at: i64,
    /// Sent back by every form of the session.
    pub csrf: String,
    /// The console-issued token the session was opened with: revoking it
    /// ends the session too.
    #[serde(default)]
    pub token_id: Option<uuid::Uuid>,
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Self {
        state.session_key.clone()
    }
}

/// Whether the browser reached us over TLS: the gateway speaks plain HTTP,
/// so TLS ends at a proxy that says so with `X-Forwarded-Proto: https`.
pub fn tls(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The jar with a new session for `caller` on `side`, lasting `ttl_s` but
/// never past the token it was opened with.
pub fn open(jar: PrivateCookieJar, over_tls: bool, caller: &Caller, side: Side, ttl_s: u64) -> PrivateCookieJar {
    let now = chrono::Utc::now().timestamp();
    let token_ends = i64::try_from(caller.expires_at).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX / 2)).min(token_ends);
    let ttl = expires_at.saturating_sub(now).max(0);
    let session = Session {
        subject: caller.subject.clone(),
        side,
        expires_at,
        csrf: uuid::Uuid::new_v4().simple().to_string(),
        token_id: caller.token_id,
    };
    let value = serde_json::to_string(&session).unwrap_or_default();
    let cookie = Cookie::build((COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(over_tls)
        .path("/")
        .max_age(cookie::time::Duration::seconds(ttl))
        .build();
    jar.add(cookie)
}

/// The jar without the session.
pub fn close(jar: PrivateCookieJar) -> PrivateCookieJar {
    jar.remove(Cookie::build(COOKIE).path("/").build())
}

async fn current(parts: &mut Parts, state: &AppState) -> Option<Session> {
    let jar = PrivateCookieJar::<Key>::from_request_parts(parts, state).await.ok()?;
    let session: Session = serde_json::from_str(jar.get(COOKIE)?.value()).ok()?;
    (session.expires_at > chrono::Utc::now().timestamp()).then_some(session)
}

/// Whether `sent` is the session's CSRF token (compared in constant time).
pub fn csrf_ok(session_csrf: &str, sent: &str) -> bool {
    bool::from(session_csrf.as_bytes().ct_eq(sent.as_bytes()))
}

/// A signed-in tenant; without a session the browser goes to sign in.
pub struct ConsoleUser {
    pub tenant: TenantId,
    pub csrf: String,
    /// The console-issued token the session was opened with, if any.
    pub token_id: Option<uuid::Uuid>,
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(session) = current(parts, state).await else {
            return Err(Redirect::to("/console/sign-in").into_response());
        };
        if session.side != Side::Console {
            return Err(refusal(StatusCode::FORBIDDEN, "This is the tenant console: sign in with a tenant token."));
        }
        let tenant =
            session.subject.parse::<TenantId>().map_err(|_| Redirect::to("/console/sign-in").into_response())?;
        if let Some(id) = session.token_id {
            state.token_usable(&tenant, id).await.map_err(|e| {
                if e.status == StatusCode::UNAUTHORIZED {
                    refusal(e.status, "The token this session was opened with has been revoked: sign in again.")
                } else {
                    error_refusal(e)
                }
            })?;
        }
        Ok(ConsoleUser { tenant, csrf: session.csrf, token_id: session.token_id })
    }
}

/// A signed-in operator; a tenant's session is refused.
pub struct AdminUser {
    pub subject: String,
    pub csrf: String,
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(session) = current(parts, state).await else {
            return Err(Redirect::to("/admin/sign-in").into_response());
        };
        if session.side != Side::Admin {
            return Err(refusal(StatusCode::FORBIDDEN, "This page is for operators; a tenant session cannot open it."));
        }
        Ok(AdminUser { subject: session.subject, csrf: session.csrf })
    }
}
