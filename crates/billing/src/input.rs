//! What rating a tenant's month needs, as the billing service gathers it
//! from the contracts, metering and SLA services.

use std::collections::BTreeMap;

use reservoir_domain::{Currency, ModelId, Period, Tier};
use reservoir_pricing::{Catalog, ReservationTerms};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A reservation billed in the month (active for part of it at least).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractInput {
    pub id: Uuid,
    pub model: ModelId,
    pub tier: Tier,
    pub rate_tokens_per_s: u32,
    /// The version its quote was priced with.
    pub catalog_version: i64,
    pub terms: ReservationTerms,
}

/// Usage billed per token: burst (a reserved tenant above its rate) or spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UsageClass {
    /// On-demand prices, graduated over the month's burst usage of a model.
    Burst,
    /// Spot prices, volume tiers over the month's spot usage of a model.
    Spot,
}

/// Weighted tokens of one class, model, contract and catalog version over
/// a month (metering's totals of billable requests).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsageInput {
    pub class: UsageClass,
    pub model: ModelId,
    /// The catalog version in force when the usage happened.
    pub catalog_version: i64,
    /// The contract burst ran under; `None` for spot.
    pub contract: Option<Uuid>,
    /// Weighted tokens (prompt x prompt weight + completion x completion
    /// weight), at most 6 decimal places.
    pub weighted_tokens: Decimal,
}

/// Usage an invoice already billed: its quantity and the exact amount of
/// its line, for one key of [`UsageInput`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledUsage {
    pub usage: UsageInput,
    pub amount_exact: Decimal,
}

/// An SLA credit issued for a contract's month, taken off an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditInput {
    pub id: Uuid,
    pub contract: Uuid,
    pub period: Period,
    /// Positive, already rounded to the currency's minor unit by the SLA.
    pub amount: Decimal,
}

/// An earlier month whose usage changed after it was invoiced: the usage
/// its invoices billed, and the usage metering holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateUsage {
    pub period: Period,
    pub billed: Vec<BilledUsage>,
    pub now: Vec<UsageInput>,
}

/// Everything one tenant's invoice for one month is computed from.
#[derive(Debug, Clone)]
pub struct InvoiceInput<'a> {
    pub currency: Currency,
    pub period: Period,
    pub contracts: Vec<ContractInput>,
    /// Usage that finished in `period`.
    pub usage: Vec<UsageInput>,
    /// Usage of `period` that other invoices already billed as late usage
    /// (when the month was invoiced after a later one took its records).
    pub usage_billed_elsewhere: Vec<BilledUsage>,
    /// Credits not yet taken off any invoice.
    pub credits: Vec<CreditInput>,
    pub late: Vec<LateUsage>,
    /// Credit the tenant holds from earlier invoices (not negative).
    pub credit_balance: Decimal,
    /// Every catalog version the contracts and usage name.
    pub catalogs: &'a BTreeMap<i64, Catalog>,
}

impl InvoiceInput<'_> {
    pub(crate) fn catalog(&self, version: i64) -> Result<&Catalog, crate::BillingError> {
        self.catalogs.get(&version).ok_or(crate::BillingError::MissingCatalog(version))
    }
}
