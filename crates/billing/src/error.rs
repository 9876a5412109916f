use reservoir_pricing::PricingError;

/// Why a month could not be rated, or a correction cannot be made. Messages
/// are shown to operators as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Pricing(#[from] PricingError),
    /// Usage or a contract names a catalog version the inputs lack.
    #[error("catalog version {0} is needed to price this month but was not given")]
    MissingCatalog(i64),
    /// An input or a request breaks a rule; the text says which.
    #[error("{0}")]
    Invalid(String),
}
