//! The SLA service's error type and its gRPC status.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum SlaError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The request is valid but cannot be done yet (a period still open).
    #[error("{0}")]
    NotYet(String),
    /// A peer service (contracts, metering) failed or cannot be reached.
    #[error("{service}: {status}")]
    Peer { service: &'static str, status: Status },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<reservoir_domain::DomainError> for SlaError {
    fn from(e: reservoir_domain::DomainError) -> Self {
        SlaError::Invalid(e.to_string())
    }
}

impl From<reservoir_pricing::PricingError> for SlaError {
    fn from(e: reservoir_pricing::PricingError) -> Self {
        SlaError::Internal(format!("pricing: {e}"))
    }
}

pub type Result<T, E = SlaError> = std::result::Result<T, E>;

impl From<SlaError> for Status {
    fn from(e: SlaError) -> Self {
        match e {
            SlaError::Invalid(m) => Status::invalid_argument(m),
            SlaError::NotFound(m) => Status::not_found(format!("{m} not found")),
            SlaError::NotYet(m) => Status::failed_precondition(m),
            SlaError::Peer { service, status } => {
                tracing::warn!(service, error = %status, "peer call failed");
                Status::unavailable(format!("the {service} service is unavailable; retry later"))
            }
            SlaError::Database(err) if reservoir_runtime::db::is_unreachable(&err) => {
                tracing::warn!(error = %err, "sla database unreachable");
                Status::unavailable("the SLA database is unavailable; retry later")
            }
            SlaError::Database(err) => {
                tracing::error!(error = %err, "sla database error");
                Status::internal("internal error")
            }
            SlaError::Internal(m) => {
                tracing::error!(error = %m, "sla internal error");
                Status::internal("internal error")
            }
        }
    }
}
