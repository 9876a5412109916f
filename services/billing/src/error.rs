//! The billing service's error type and its gRPC status.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum BillingServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The request is valid but the invoice is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    /// A peer service failed or cannot be reached.
    #[error("{service}: {status}")]
    Peer { service: &'static str, status: Status },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<reservoir_domain::DomainError> for BillingServiceError {
    fn from(e: reservoir_domain::DomainError) -> Self {
        BillingServiceError::Invalid(e.to_string())
    }
}

impl From<reservoir_billing::BillingError> for BillingServiceError {
    fn from(e: reservoir_billing::BillingError) -> Self {
        match e {
            reservoir_billing::BillingError::Invalid(m) => BillingServiceError::Invalid(m),
            other => BillingServiceError::Internal(format!("rating: {other}")),
        }
    }
}

pub type Result<T, E = BillingServiceError> = std::result::Result<T, E>;

impl From<BillingServiceError> for Status {
    fn from(e: BillingServiceError) -> Self {
        match e {
            BillingServiceError::Invalid(m) => Status::invalid_argument(m),
            BillingServiceError::NotFound(m) => Status::not_found(format!("{m} not found")),
            BillingServiceError::Conflict(m) => Status::failed_precondition(m),
            BillingServiceError::Peer { service, status } => {
                tracing::warn!(service, error = %status, "peer call failed");
                Status::unavailable(format!("the {service} service is unavailable; retry later"))
            }
            BillingServiceError::Database(err) if reservoir_runtime::db::is_unreachable(&err) => {
                tracing::warn!(error = %err, "billing database unreachable");
                Status::unavailable("the billing database is unavailable; retry later")
            }
            BillingServiceError::Database(err) => {
                tracing::error!(error = %err, "billing database error");
                Status::internal("internal error")
            }
            BillingServiceError::Internal(m) => {
                tracing::error!(error = %m, "billing internal error");
                Status::internal("internal error")
            }
        }
    }
}
