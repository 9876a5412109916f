//! A tenant's invoice for a month, as a draft: its lines and totals.
//!
//! ```text
//! lines    = reservation fees (one per contract active in the month)
//!          + burst and spot usage (see `usage`)
//!          + late usage of earlier months (price now - price billed)
//!          - SLA credits
//! subtotal = sum of the lines, each rounded to the minor unit
//! if subtotal > 0: the credit balance is taken off, up to the subtotal
//! if subtotal < 0: the rest of the credits is carried to the balance
//! total    = sum of all rounded lines, never negative
//! ```

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use reservoir_domain::{Currency, Period};
use reservoir_pricing::{TierMode, millions_of, reservation_fee};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::usage::{RatedUsage, UsageKey, rate_usage};
use crate::{BilledUsage, BillingError, InvoiceInput, Line, LineKind, Unit, UsageClass, rounded_to_minor_unit};

/// A computed invoice. The same inputs give the same value (and the same
/// JSON bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Draft {
    pub currency: Currency,
    pub period: Period,
    pub lines: Vec<Line>,
    /// Sum of the rounded lines before the credit balance.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subtotal: Decimal,
    /// Sum of every rounded line; never negative.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub total: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub credit_balance_before: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub credit_balance_after: Decimal,
}

/// Rates one tenant's month. Inputs may come in any order.
pub fn rate_invoice(input: &InvoiceInput<'_>) -> Result<Draft, BillingError> {
    let currency = input.currency;
    if input.credit_balance < Decimal::ZERO {
        return Err(BillingError::Invalid(format!(
            "a credit balance cannot be negative, got {}",
            input.credit_balance
        )));
    }
    let (from, to) = (input.period.start(), input.period.end());
    let mut lines = reservation_lines(input)?;

    if input.usage_billed_elsewhere.is_empty() {
        for rated in rate_usage(&input.usage, currency, input.catalogs)? {
            lines.push(usage_line(&rated, currency, from, to));
        }
    } else {
        // Another invoice already took some of this month's usage as late
        // usage: this one bills the rest, as a difference.
        lines.extend(difference_lines(input.period, &input.usage_billed_elsewhere, &input.usage, input, true)?);
    }

    let mut late = input.late.clone();
    late.sort_by_key(|l| l.period);
    for month in &late {
        if month.period >= input.period {
            return Err(BillingError::Invalid(format!(
                "late usage of {} cannot go on the invoice of {}",
                month.period, input.period
            )));
        }
        lines.extend(difference_lines(month.period, &month.billed, &month.now, input, false)?);
    }

    let mut credits = input.credits.clone();
    credits.sort_by_key(|c| (c.period, c.contract, c.id));
    for credit in &credits {
        if credit.amount <= Decimal::ZERO {
            return Err(BillingError::Invalid(format!("SLA credit {} is not positive", credit.id)));
        }
        let amount = -rounded_to_minor_unit(credit.amount, currency);
        lines.push(Line {
            kind: LineKind::SlaCredit,
            description: format!("SLA credit for contract {} in {}", credit.contract, credit.period),
            contract_id: Some(credit.contract),
            model: None,
            catalog_version: None,
            quantity: credit.amount,
            unit: Unit::Money,
            tiers: Vec::new(),
            usage_from: credit.period.start(),
            usage_to: credit.period.end(),
            source: Some(format!("sla_credit:{}", credit.id)),
            amount_exact: -credit.amount,
            amount,
        });
    }

    let subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
    let mut balance = input.credit_balance;
    if subtotal > Decimal::ZERO && balance > Decimal::ZERO {
        let applied = rounded_to_minor_unit(subtotal.min(balance), currency);
        balance -= applied;
        lines.push(money_line(LineKind::CreditApplied, "Credit balance applied", -applied, from, to));
    } else if subtotal < Decimal::ZERO {
        balance += -subtotal;
        lines.push(money_line(LineKind::CreditCarried, "Credit carried to the next invoice", -subtotal, from, to));
    }
    let total: Decimal = lines.iter().map(|l| l.amount).sum();
    Ok(Draft {
        currency,
        period: input.period,
        lines,
        subtotal: rounded_to_minor_unit(subtotal, currency),
        total: rounded_to_minor_unit(total, currency),
        credit_balance_before: rounded_to_minor_unit(input.credit_balance, currency),
        credit_balance_after: rounded_to_minor_unit(balance, currency),
    })
}

fn reservation_lines(input: &InvoiceInput<'_>) -> Result<Vec<Line>, BillingError> {
    let (from, to) = (input.period.start(), input.period.end());
    let mut contracts = input.contracts.clone();
    contracts.sort_by_key(|c| (c.terms.starts_at, c.id));
    let mut lines = Vec::new();
    for c in &contracts {
        if c.terms.currency != input.currency {
            return Err(BillingError::Invalid(format!(
                "contract {} is priced in {} but the tenant is billed in {}",
                c.id, c.terms.currency, input.currency
            )));
        }
        input.catalog(c.catalog_version)?;
        let Some((start, end)) = c.terms.billed_span() else { continue };
        let (a, b) = (from.max(start), end.map_or(to, |e| e.min(to)));
        if b <= a {
            continue;
        }
        let fee = reservation_fee(&c.terms, from, to)?;
        let price = rounded_to_minor_unit(c.terms.price_per_hour, input.currency);
        lines.push(Line {
            kind: LineKind::Reservation,
            description: format!(
                "Reservation of {} weighted tokens/s of {}, {} tier, {} term, {} to {} ({} {}/hour)",
                c.rate_tokens_per_s,
                c.model,
                c.tier,
                c.terms.term,
                instant(a),
                instant(b),
                price,
                input.currency
            ),
            contract_id: Some(c.id),
            model: Some(c.model.to_string()),
            catalog_version: Some(c.catalog_version),
            quantity: Decimal::from((b - a).num_seconds()),
            unit: Unit::Second,
            tiers: Vec::new(),
            usage_from: a,
            usage_to: b,
            source: Some(format!("contract:{}", c.id)),
            amount_exact: fee.amount,
            amount: rounded_to_minor_unit(fee.amount, input.currency),
        });
    }
    Ok(lines)
}

fn usage_line(rated: &RatedUsage, currency: Currency, from: DateTime<Utc>, to: DateTime<Utc>) -> Line {
    let (class, model, version, contract) = &rated.key;
    let (kind, how) = match (class, rated.charge.mode) {
        (UsageClass::Burst, _) => (LineKind::Burst, "burst at on-demand prices, graduated over the month"),
        (UsageClass::Spot, TierMode::Volume) => (LineKind::Spot, "spot, volume tier of the month's total"),
        (UsageClass::Spot, TierMode::Graduated) => (LineKind::Spot, "spot"),
    };
    Line {
        kind,
        description: format!("{model}: {} M weighted tokens, {how} (catalog v{version})", rated.millions),
        contract_id: *contract,
        model: Some(model.to_string()),
        catalog_version: Some(*version),
        quantity: rated.millions,
        unit: Unit::MillionWeightedTokens,
        tiers: rated.charge.lines.clone(),
        usage_from: from,
        usage_to: to,
        source: Some(format!("usage:{}", class_name(*class))),
        amount_exact: rated.charge.total,
        amount: rounded_to_minor_unit(rated.charge.total, currency),
    }
}

/// Lines for what changed in `period`'s usage since it was billed: per key,
/// the price of the usage now minus the price of what was billed. `own`:
/// `period` is the invoice's own month (lines of its classes), else an
/// earlier one (late usage lines).
fn difference_lines(
    period: Period,
    billed: &[BilledUsage],
    now: &[crate::UsageInput],
    input: &InvoiceInput<'_>,
    own: bool,
) -> Result<Vec<Line>, BillingError> {
    // What was billed per key: weighted tokens and exact amount.
    let mut was: BTreeMap<UsageKey, (Decimal, Decimal)> = BTreeMap::new();
    for b in billed {
        let u = &b.usage;
        let entry = was.entry((u.class, u.model.clone(), u.catalog_version, u.contract)).or_default();
        entry.0 += u.weighted_tokens;
        entry.1 += b.amount_exact;
    }
    let is: BTreeMap<UsageKey, RatedUsage> =
        rate_usage(now, input.currency, input.catalogs)?.into_iter().map(|r| (r.key.clone(), r)).collect();
    let keys: BTreeSet<UsageKey> = was.keys().chain(is.keys()).cloned().collect();
    let mut lines = Vec::new();
    for key in &keys {
        let (old_m, old_amount) = match was.get(key) {
            Some((tokens, amount)) => (millions_of(*tokens)?, *amount),
            None => (Decimal::ZERO, Decimal::ZERO),
        };
        let (new_m, new_amount) = is.get(key).map_or((Decimal::ZERO, Decimal::ZERO), |r| (r.millions, r.charge.total));
        let (millions, amount) = (new_m - old_m, new_amount - old_amount);
        if millions.is_zero() && amount.is_zero() {
            continue;
        }
        let (class, model, version, contract) = key;
        let (kind, description) = if own {
            let kind = if *class == UsageClass::Burst { LineKind::Burst } else { LineKind::Spot };
            let text = format!(
                "{model}: {millions} M weighted tokens of {}, net of what another invoice billed as late usage \
                 (catalog v{version})",
                class_name(*class)
            );
            (kind, text)
        } else {
            let text = format!(
                "Late usage of {period}: {model} {} {millions:+} M weighted tokens recorded after {period} was \
                 invoiced, priced as the month now stands (catalog v{version})",
                class_name(*class)
            );
            (LineKind::LateUsage, text)
        };
        lines.push(Line {
            kind,
            description,
            contract_id: *contract,
            model: Some(model.to_string()),
            catalog_version: Some(*version),
            quantity: millions,
            unit: Unit::MillionWeightedTokens,
            tiers: is.get(key).map(|r| r.charge.lines.clone()).unwrap_or_default(),
            usage_from: period.start(),
            usage_to: period.end(),
            source: Some(format!("usage:{}", class_name(*class))),
            amount_exact: amount,
            amount: rounded_to_minor_unit(amount, input.currency),
        });
    }
    Ok(lines)
}

fn money_line(kind: LineKind, description: &str, amount: Decimal, from: DateTime<Utc>, to: DateTime<Utc>) -> Line {
    Line {
        kind,
        description: description.to_owned(),
        contract_id: None,
        model: None,
        catalog_version: None,
        quantity: amount.abs(),
        unit: Unit::Money,
        tiers: Vec::new(),
        usage_from: from,
        usage_to: to,
        source: None,
        amount_exact: amount,
        amount,
    }
}

fn class_name(class: UsageClass) -> &'static str {
    match class {
        UsageClass::Burst => "burst",
        UsageClass::Spot => "spot",
    }
}

fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests;
