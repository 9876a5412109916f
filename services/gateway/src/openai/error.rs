//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`,
//! so that OpenAI's clients raise their usual exceptions.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::schema::{OpenAiErrorBody, OpenAiErrorDetail};
use crate::error::ApiError;

#[derive(Debug)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    /// The request field at fault, as OpenAI names it.
    pub param: Option<String>,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl OpenAiError {
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param: param.map(str::to_owned),
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// A 400 naming the field at fault.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid(Some(param), message)
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// An OpenAI field this platform does not serve.
    pub fn unsupported(param: &str) -> Self {
        Self::invalid_param(param, format!("Unsupported parameter: '{param}' is not supported by this server."))
            .with_code("unsupported_parameter")
    }

    /// A field OpenAI does not know either.
    pub fn unknown(param: &str) -> Self {
        Self::invalid_param(param, format!("Unrecognized request argument supplied: {param}"))
            .with_code("unknown_parameter")
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        // OpenAI answers invalid requests with 400 where this API says 422.
        let status = if e.status == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { e.status };
        let (kind, code) = match status {
            StatusCode::UNAUTHORIZED => ("authentication_error", Some("invalid_api_key")),
            StatusCode::FORBIDDEN => ("permission_error", None),
            StatusCode::NOT_FOUND => ("invalid_request_error", Some("model_not_found")),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limit_exceeded", Some("rate_limit_exceeded")),
            s if s.is_server_error() => ("server_error", None),
            _ => ("invalid_request_error", None),
        };
        OpenAiError { status, kind, code, param: None, message: e.message, retry_after_s: e.retry_after_s }
    }
}

impl From<tonic::Status> for OpenAiError {
    fn from(status: tonic::Status) -> Self {
        let retry_after_s = status.metadata().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
        let mut e: OpenAiError = ApiError::from(status).into();
        e.retry_after_s = e.retry_after_s.or(retry_after_s);
        e
    }
}

impl OpenAiError {
    /// The body sent: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> OpenAiErrorBody {
        OpenAiErrorBody {
            error: OpenAiErrorDetail {
                message: self.message.clone(),
                kind: self.kind.to_owned(),
                param: self.param.clone(),
                code: self.code.map(str::to_owned),
            },
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
