//! The metering service's error type and its gRPC status.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<MeteringError> for Status {
    fn from(e: MeteringError) -> Self {
        match e {
            MeteringError::Invalid(m) => Status::invalid_argument(m),
            MeteringError::Database(err @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))) => {
                tracing::error!(error = %err, "metering database unreachable");
                Status::unavailable("the metering database is unavailable; retry later")
            }
            MeteringError::Database(err) => {
                tracing::error!(error = %err, "metering database error");
                Status::internal("internal error")
            }
        }
    }
}
