//! Rating a month of burst and spot usage.
//!
//! ```text
//! burst : per model, graduated over the month's burst usage. Usage of
//!         several catalog versions (or contracts) moves up the tiers
//!         together: in version order, each takes the slice of the tiers
//!         after the usage before it, priced by its own version's table.
//! spot  : per model, volume: the month's total spot usage picks the tier;
//!         each version's usage is priced at that tier of its own table.
//!         A volume tier's flat fee is charged once, on the model's first line.
//! ```
//!
//! Quantities are millions of weighted tokens, exact.

use std::collections::BTreeMap;

use reservoir_domain::{Currency, ModelId};
use reservoir_pricing::{Catalog, TieredCharge, millions_of};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{BillingError, UsageClass, UsageInput};

/// What identifies a usage line: class, model, catalog version, contract.
pub type UsageKey = (UsageClass, ModelId, i64, Option<Uuid>);

/// One priced usage line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedUsage {
    pub key: UsageKey,
    /// Millions of weighted tokens.
    pub millions: Decimal,
    pub charge: TieredCharge,
}

/// Prices `usage` (one month of one tenant, in any order, keys possibly
/// repeated) in `currency`. Returns one line per key with usage, in key order.
pub fn rate_usage(
    usage: &[UsageInput],
    currency: Currency,
    catalogs: &BTreeMap<i64, Catalog>,
) -> Result<Vec<RatedUsage>, BillingError> {
    let mut merged: BTreeMap<UsageKey, Decimal> = BTreeMap::new();
    for u in usage {
        if u.weighted_tokens < Decimal::ZERO {
            return Err(BillingError::Invalid(format!("usage of {} is negative", u.model)));
        }
        let key = (u.class, u.model.clone(), u.catalog_version, u.contract);
        let entry = merged.entry(key).or_default();
        *entry = entry
            .checked_add(u.weighted_tokens)
            .ok_or(BillingError::Pricing(reservoir_pricing::PricingError::Overflow { what: "usage" }))?;
    }
    let mut millions: Vec<(UsageKey, Decimal)> = Vec::with_capacity(merged.len());
    for (key, tokens) in merged {
        if !tokens.is_zero() {
            millions.push((key, millions_of(tokens)?));
        }
    }

    // Month totals of spot per model, for the volume tier.
    let mut spot_totals: BTreeMap<&ModelId, Decimal> = BTreeMap::new();
    for ((class, model, _, _), m) in &millions {
        if *class == UsageClass::Spot {
            *spot_totals.entry(model).or_default() += *m;
        }
    }

    let mut burst_before: BTreeMap<ModelId, Decimal> = BTreeMap::new();
    let mut spot_fee_charged: BTreeMap<ModelId, bool> = BTreeMap::new();
    let mut rated = Vec::with_capacity(millions.len());
    for (key, m) in &millions {
        let (class, model, version, _) = key;
        let catalog = catalogs.get(version).ok_or(BillingError::MissingCatalog(*version))?;
        let prices = catalog.model_prices_in(model, currency)?;
        let charge = match class {
            UsageClass::Burst => {
                let before = burst_before.entry(model.clone()).or_default();
                let charge = prices.on_demand_per_million.price_slice(*before, *m)?;
                *before += *m;
                charge
            }
            UsageClass::Spot => {
                let total = spot_totals.get(model).copied().unwrap_or(*m);
                let charged = spot_fee_charged.entry(model.clone()).or_default();
                let charge = prices.spot_per_million.price_at_volume(*m, total, !*charged)?;
                *charged = true;
                charge
            }
        };
        rated.push(RatedUsage { key: key.clone(), millions: *m, charge });
    }
    Ok(rated)
}
