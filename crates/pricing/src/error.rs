//! The one error type of the pricing crate.
//!
//! Messages are shown to tenants and operators in 422 responses, so they say
//! what was wrong with the input and how to fix it, and name no internals.

use reservoir_domain::{Currency, DomainError, ModelId};
use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// A tier table breaks one of the rules of [`crate::TierTable::validate`].
    #[error("invalid price table: {reason}")]
    InvalidTable { reason: String },

    /// A catalog breaks one of the rules of [`crate::Catalog::validate`].
    #[error("invalid price catalog: {reason}")]
    InvalidCatalog { reason: String },

    /// The catalog has no prices for this model.
    #[error("model \"{model}\" has no prices in the price catalog (version {catalog_version})")]
    UnknownModel { model: ModelId, catalog_version: i64 },

    /// The catalog prices this model, but not in this currency.
    #[error("model \"{model}\" has no prices in {currency} in the price catalog (version {catalog_version})")]
    NotPricedIn { model: ModelId, currency: Currency, catalog_version: i64 },

    /// A quantity handed to a tier table cannot be priced.
    #[error("invalid quantity {quantity}: {reason}")]
    InvalidQuantity { quantity: Decimal, reason: &'static str },

    /// A field of a quote request (or of a proration call) is out of range.
    #[error("invalid {field}: {reason}")]
    InvalidRequest { field: &'static str, reason: String },

    /// An amount reaches [`crate::AMOUNT_LIMIT`] (10^16).
    #[error("the {what} is too large to compute exactly")]
    Overflow { what: &'static str },

    /// A domain value (such as a term end) is invalid.
    #[error(transparent)]
    Domain(#[from] DomainError),
}

impl PricingError {
    pub(crate) fn request(field: &'static str, reason: impl Into<String>) -> Self {
        PricingError::InvalidRequest { field, reason: reason.into() }
    }
}
