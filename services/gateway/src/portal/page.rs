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
