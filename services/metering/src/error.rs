//! The metering service's error type and its gRPC status.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl MeteringError {
    /// Whether the database could not be reached at all (retry later), as
    /// opposed to refusing what was sent (set it aside).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, MeteringError::Database(e) if reservoir_runtime::db::is_unreachable(e))
    }
}

impl From<MeteringError> for Status {
    fn from(e: MeteringError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "metering database unreachable");
            return Status::unavailable("the metering database is unavailable; retry later");
        }
        match e {
            MeteringError::Invalid(m) => Status::invalid_argument(m),
            MeteringError::Database(err) => {
                tracing::error!(error = %err, "metering database error");
                Status::internal("internal error")
            }
        }
    }
}
