//! The REST API's one error type. Every error answers
//! `{"error": {"code", "message", "details"}}` with its status; causes of
//! 5xx answers are logged and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::Code;
use utoipa::ToSchema;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: serde_json::Value,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after_s: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_request`, `conflict`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Extra facts about the error (for example the capacity still available); `null` when none.
    #[schema(value_type = Object, nullable = true)]
    pub details: serde_json::Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: serde_json::Value::Null, retry_after_s: None }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.to_owned(), message: self.message, details: self.details },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// gRPC answers of the services behind the gateway, as HTTP errors.
impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let details = serde_json::from_slice(status.details()).unwrap_or(serde_json::Value::Null);
        let message = status.message().to_owned();
        let error = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => ApiError::invalid(message),
            Code::NotFound => ApiError::not_found(message),
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            Code::ResourceExhausted => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message),
            Code::PermissionDenied => ApiError::forbidden(message),
            Code::Unauthenticated => ApiError::unauthorized(message),
            // A client-side deadline comes back as CANCELLED ("Timeout expired").
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                tracing::warn!(grpc_status = ?status.code(), %message, "downstream service unavailable");
                ApiError::unavailable("a platform service is unavailable; retry later")
            }
            _ => {
                tracing::error!(grpc_status = ?status.code(), %message, "downstream service failed");
                ApiError::internal()
            }
        };
        error.with_details(details)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
