//! The worker's one error type, and its mapping to gRPC status. Internal
//! causes are logged here and never sent to the caller.

use reservoir_domain::DomainError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Bad input: the caller must change the request.
    #[error("{0}")]
    Invalid(String),
    /// The request queue is full: retry later or elsewhere.
    #[error("{0}")]
    Busy(String),
    /// The step loop is gone (shutting down).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<DomainError> for WorkerError {
    fn from(e: DomainError) -> Self {
        WorkerError::Invalid(e.to_string())
    }
}

impl From<WorkerError> for Status {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Invalid(m) => Status::invalid_argument(m),
            WorkerError::Busy(m) => Status::resource_exhausted(m),
            WorkerError::Unavailable(m) => Status::unavailable(m),
            WorkerError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
