//! The contracts service's one error type, and its mapping to gRPC status.
//! Database causes are logged here and never sent to the caller.

use reservoir_domain::DomainError;
use reservoir_pricing::PricingError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ContractsError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The request is valid but the state forbids it (oversold pool, committed
    /// term, reused idempotency key). `details` is JSON for the API client.
    #[error("{message}")]
    Conflict { message: String, details: serde_json::Value },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl ContractsError {
    pub fn conflict(message: impl Into<String>) -> Self {
        ContractsError::Conflict { message: message.into(), details: serde_json::Value::Null }
    }
}

impl From<DomainError> for ContractsError {
    fn from(e: DomainError) -> Self {
        ContractsError::Invalid(e.to_string())
    }
}

impl From<PricingError> for ContractsError {
    fn from(e: PricingError) -> Self {
        ContractsError::Invalid(e.to_string())
    }
}

impl From<ContractsError> for Status {
    fn from(e: ContractsError) -> Self {
        match e {
            ContractsError::Invalid(m) => Status::invalid_argument(m),
            ContractsError::NotFound(what) => Status::not_found(format!("{what} not found")),
            ContractsError::Conflict { message, details } => {
                if details.is_null() {
                    Status::failed_precondition(message)
                } else {
                    let bytes = serde_json::to_vec(&details).unwrap_or_default();
                    Status::with_details(Code::FailedPrecondition, message, bytes.into())
                }
            }
            ContractsError::Database(err) if reservoir_runtime::db::is_unreachable(&err) => {
                tracing::error!(error = %err, "database unreachable");
                Status::unavailable("the contracts database is unavailable; retry later")
            }
            ContractsError::Database(err) => {
                tracing::error!(error = %err, "database error");
                Status::internal("internal error")
            }
            ContractsError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

pub type Result<T, E = ContractsError> = std::result::Result<T, E>;
