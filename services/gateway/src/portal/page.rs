//! Rendering portal pages: a template becomes an HTML answer; a failure to
//! render is logged and answered as a plain 500 without its cause.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "portal template");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "portal/refusal.html")]
struct Refusal<'a> {
    message: &'a str,
}

/// A page that says why the request was refused.
pub fn refusal(status: StatusCode, message: &str) -> Response {
    html(status, &Refusal { message })
}

/// An instant as pages show it: to the minute, in UTC; empty when unset.
pub fn minute(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(reservoir_proto::time::instant).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

/// The message shown when a form's CSRF token is not the session's.
pub const STALE_FORM: &str = "This form is out of date: reload the page and try again.";

/// Which side of the portal a page belongs to: it picks the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Admin,
    Console,
}

const ADMIN_SECTIONS: [(&str, &str); 7] = [
    ("/admin/ui", "Overview"),
    ("/admin/ui/tenants", "Tenants"),
    ("/admin/ui/contracts", "Contracts"),
    ("/admin/ui/capacity", "Capacity"),
    ("/admin/ui/sla", "SLA"),
    ("/admin/ui/billing", "Billing"),
    ("/admin/ui/catalog", "Catalog"),
];

const CONSOLE_SECTIONS: [(&str, &str); 5] = [
    ("/console", "Contracts"),
    ("/console/usage", "Usage"),
    ("/console/sla", "SLA"),
    ("/console/invoices", "Invoices"),
    ("/console/tokens", "API tokens"),
];

/// What every signed-in page shows around its content: the navigation (with
/// the current section marked), who is signed in, the sign-out form's CSRF
/// token, and the notice left by the action that led here.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub area: Area,
    pub current: &'static str,
    pub subject: String,
    pub csrf: String,
    pub notice: Option<String>,
}

impl Chrome {
    pub fn is_current(&self, label: &str) -> bool {
        label == self.current
    }

    pub fn area_name(&self) -> &'static str {
        match self.area {
            Area::Admin => "Admin portal",
            Area::Console => "Tenant console",
        }
    }

    pub fn sign_out_path(&self) -> &'static str {
        match self.area {
            Area::Admin => "/admin/sign-out",
            Area::Console => "/console/sign-out",
        }
    }

    pub fn sections(&self) -> &'static [(&'static str, &'static str)] {
        match self.area {
            Area::Admin => &ADMIN_SECTIONS,
            Area::Console => &CONSOLE_SECTIONS,
        }
    }
}

/// Rows per page of every portal table.
pub const PAGE_ROWS: u32 = 50;

/// A table's place in its list: page `number` (from 1) of `total` rows, and
/// the query string that keeps the table's filters and order on the links.
#[derive(Debug, Clone)]
pub struct Pager {
    pub number: u32,
    pub total: u64,
    /// `key=value&...` of the filters, without `page`.
    pub query: String,
}

impl Pager {
    pub fn new(number: Option<u32>, total: u64, filters: &[(&str, &str)]) -> Pager {
        let kept: Vec<(&str, &str)> = filters.iter().copied().filter(|(_, v)| !v.is_empty()).collect();
        let query = serde_urlencoded::to_string(kept).unwrap_or_default();
        Pager { number: number.unwrap_or(1).max(1), total, query }
    }

    /// Rows skipped before this page.
    pub fn offset(number: Option<u32>) -> u32 {
        number.unwrap_or(1).max(1).saturating_sub(1).saturating_mul(PAGE_ROWS)
    }

    pub fn pages(&self) -> u64 {
        self.total.div_ceil(u64::from(PAGE_ROWS)).max(1)
    }

    pub fn previous(&self) -> Option<String> {
        (self.number > 1).then(|| self.link(self.number - 1))
    }

    pub fn next(&self) -> Option<String> {
        (u64::from(self.number) < self.pages()).then(|| self.link(self.number + 1))
    }

    fn link(&self, number: u32) -> String {
        if self.query.is_empty() { format!("?page={number}") } else { format!("?{}&page={number}", self.query) }
    }
}

/// A refusal page for what a service answered, with the status and message
/// the JSON API would give.
pub fn service_refusal(status: tonic::Status) -> Response {
    error_refusal(crate::error::ApiError::from(status))
}

/// A refusal page for the JSON API's error, with its status and message.
pub fn error_refusal(e: crate::error::ApiError) -> Response {
    refusal(e.status, &e.message)
}

/// After an action: back to `path` with `params` kept and the action's
/// result as the page's notice.
pub fn back_with_notice(path: &str, params: &[(&str, &str)], notice: &str) -> Response {
    let mut query: Vec<(&str, &str)> = params.to_vec();
    query.push(("notice", notice));
    let query = serde_urlencoded::to_string(query).unwrap_or_default();
    axum::response::Redirect::to(&format!("{path}?{query}")).into_response()
}

/// Query parameters of a page; malformed ones get a refusal page (422).
pub struct PageQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for PageQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Response> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| PageQuery(q.0))
            .map_err(|r| refusal(StatusCode::UNPROCESSABLE_ENTITY, &r.body_text()))
    }
}

/// A submitted form; a malformed one gets a refusal page (422).
pub struct PageForm<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        axum::extract::Form::<T>::from_request(req, state)
            .await
            .map(|f| PageForm(f.0))
            .map_err(|r| refusal(StatusCode::UNPROCESSABLE_ENTITY, &r.body_text()))
    }
}
