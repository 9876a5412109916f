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
        matches!(
            self,
            MeteringError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
            )
        ) || matches!(self, MeteringError::Database(sqlx::Error::Database(e))
            // Class 08 (connection exception), 57P01..57P03 (shutdown, cannot connect now).
            if e.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")))
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
