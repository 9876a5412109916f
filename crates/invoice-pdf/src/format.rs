//! How numbers, dates and line kinds read on the page.
//!
//! Money is written from the `Decimal` itself and never rounded here: the
//! billing crate already rounded each line to the currency's minor unit
//! and the invoice adds those up, so the page must show exactly the stored
//! amounts. A value written with fewer places than the minor unit (a zero
//! built as `0`) is padded, which changes its text, never its value.

use chrono::{DateTime, Utc};
use reservoir_billing::{LineKind, Unit};
use reservoir_domain::Currency;
use reservoir_pricing::TierLine;
use rust_decimal::Decimal;

/// `amount` with at least the currency's minor-unit places: `205.00`,
/// `1235`, `12.345`, and `0.0015` for an exact price below a cent.
pub(crate) fn money(amount: Decimal, currency: Currency) -> String {
    let digits = currency.minor_unit_digits();
    let mut padded = amount;
    if padded.scale() < digits {
        padded.rescale(digits);
    }
    padded.to_string()
}

/// An exact amount (a tier's price or charge, kept at up to 12 places
/// while billing computes) without the trailing zeros of that working
/// precision, but never with fewer places than the minor unit.
pub(crate) fn exact_money(amount: Decimal, currency: Currency) -> String {
    money(amount.normalize(), currency)
}

/// A quantity (seconds, millions of tokens): exact, trailing zeros off.
pub(crate) fn quantity(q: Decimal) -> String {
    q.normalize().to_string()
}

/// A line's quantity with its unit; empty for credits, whose quantity is
/// the amount the amount column already shows.
pub(crate) fn quantity_with_unit(q: Decimal, unit: Unit) -> String {
    match unit {
        Unit::Second => format!("{} seconds", quantity(q)),
        Unit::MillionWeightedTokens => format!("{} M weighted tokens", quantity(q)),
        Unit::Money => String::new(),
    }
}

/// `tier 1: 100 x 0.20 = 20.00`, with `+ 1.00 flat` when the tier has a
/// flat fee. Tiers are numbered from 1 for readers.
pub(crate) fn tier(t: &TierLine, currency: Currency) -> String {
    let mut text = format!(
        "tier {}: {} x {}",
        t.tier_index.saturating_add(1),
        quantity(t.quantity),
        exact_money(t.unit_price, currency)
    );
    if !t.flat_fee.is_zero() {
        text.push_str(&format!(" + {} flat", exact_money(t.flat_fee, currency)));
    }
    text.push_str(&format!(" = {}", exact_money(t.amount, currency)));
    text
}

pub(crate) fn kind(kind: LineKind) -> &'static str {
    match kind {
        LineKind::Reservation => "Reservation fee",
        LineKind::Burst => "Burst usage at on-demand prices",
        LineKind::Spot => "Spot usage",
        LineKind::LateUsage => "Late usage of an earlier month",
        LineKind::SlaCredit => "SLA credit",
        LineKind::CreditApplied => "Credit balance applied",
        LineKind::CreditCarried => "Credit carried to your balance",
    }
}

pub(crate) fn date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

pub(crate) fn instant(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn money_is_printed_as_stored_and_padded_to_the_minor_unit() {
        let usd = Currency::USD;
        let jpy: Currency = "JPY".parse().unwrap();
        let bhd: Currency = "BHD".parse().unwrap();
        assert_eq!(money(dec!(205.00), usd), "205.00");
        assert_eq!(money(dec!(0), usd), "0.00");
        assert_eq!(money(dec!(-12.5), usd), "-12.50");
        assert_eq!(money(dec!(1235), jpy), "1235");
        assert_eq!(money(dec!(12.345), bhd), "12.345");
        // Never rounded: more places than the minor unit stay.
        assert_eq!(money(dec!(0.0015), usd), "0.0015");
    }

    #[test]
    fn tiers_read_like_arithmetic() {
        let usd = Currency::USD;
        let t = TierLine {
            tier_index: 0,
            up_to: Some(dec!(100)),
            quantity: dec!(100.000000),
            unit_price: dec!(0.200000000000),
            flat_fee: dec!(0),
            amount: dec!(20.000000000000),
        };
        assert_eq!(tier(&t, usd), "tier 1: 100 x 0.20 = 20.00");
        let t = TierLine { tier_index: 1, flat_fee: dec!(1), amount: dec!(21), ..t };
        assert_eq!(tier(&t, usd), "tier 2: 100 x 0.20 + 1.00 flat = 21.00");
    }

    #[test]
    fn quantities_drop_working_zeros() {
        assert_eq!(quantity_with_unit(dec!(2592000), Unit::Second), "2592000 seconds");
        assert_eq!(quantity_with_unit(dec!(12.500000000000), Unit::MillionWeightedTokens), "12.5 M weighted tokens");
        assert_eq!(quantity_with_unit(dec!(5), Unit::Money), "");
    }
}
