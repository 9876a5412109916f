//! Revenue of the month so far, for the operators' overview: every
//! contract's reservation fee accrued from the month's start to now
//! (prorated exactly as invoices prorate it) and the month's usage so far at
//! its tiered prices, added up per currency. Nothing is stored: the job
//! keeps the latest figure in memory, and a read older than
//! `REVENUE_FRESH_FOR` computes it again.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use reservoir_billing::{rate_usage, rounded_to_minor_unit};
use reservoir_domain::{Currency, Period};
use reservoir_pricing::reservation_fee;
use rust_decimal::Decimal;

use crate::error::{BillingServiceError, Result};
use crate::gather::gather;
use crate::peers::Peers;

/// How long a computed figure is served before it is computed again.
pub const REVENUE_FRESH_FOR: TimeDelta = TimeDelta::minutes(5);

/// One currency's revenue so far, rounded half to even to its minor unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyRevenue {
    pub currency: Currency,
    pub reservations: Decimal,
    pub usage: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revenue {
    pub period: Period,
    pub computed_at: DateTime<Utc>,
    /// Tenants with a contract or usage in the month.
    pub tenants: u32,
    pub currencies: Vec<CurrencyRevenue>,
}

/// The month containing `now`, from its start to `now`.
pub async fn month_to_date(peers: &Peers, pool: &sqlx::PgPool, now: DateTime<Utc>) -> Result<Revenue> {
    let period = Period::containing(now)?;
    let inputs = gather(peers, pool, period, None).await?;
    let mut sums: BTreeMap<Currency, (Decimal, Decimal)> = BTreeMap::new();
    let mut tenants = 0;
    for tenant in inputs.contracts.keys().chain(inputs.usage.keys().filter(|t| !inputs.contracts.contains_key(*t))) {
        tenants += 1;
        let currency = *inputs
            .currencies
            .get(tenant)
            .ok_or_else(|| BillingServiceError::Internal(format!("tenant {tenant} has no currency")))?;
        let (reservations, usage) = sums.entry(currency).or_default();
        for contract in inputs.contracts.get(tenant).into_iter().flatten() {
            *reservations += reservation_fee(&contract.terms, period.start(), now)
                .map_err(|e| BillingServiceError::Internal(e.to_string()))?
                .amount;
        }
        let used = inputs.usage.get(tenant).map(Vec::as_slice).unwrap_or_default();
        for line in rate_usage(used, currency, &inputs.catalogs)? {
            *usage += line.charge.total;
        }
    }
    let currencies = sums
        .into_iter()
        .map(|(currency, (reservations, usage))| CurrencyRevenue {
            currency,
            reservations: rounded_to_minor_unit(reservations, currency),
            usage: rounded_to_minor_unit(usage, currency),
        })
        .collect();
    Ok(Revenue { period, computed_at: now, tenants, currencies })
}
