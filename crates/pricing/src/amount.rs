//! Checked arithmetic at the crate's fixed internal scale (see the rounding
//! rule in the crate docs). Every amount the crate computes goes through
//! these helpers, so no operation can panic or round in an undocumented way.
//!
//! Numbers stay below [`AMOUNT_LIMIT`] (10^16) with at most
//! [`INTERNAL_SCALE`] (12) places: 16 + 12 = 28 significant digits, exactly
//! what `Decimal` holds. So adding or subtracting two amounts never rounds,
//! and sums of amounts (tier lines, prorated parts, invoice lines) are exact
//! for as long as they stay below the limit, which they are checked to do.

use reservoir_domain::Money;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::PricingError;

/// Decimal places kept for every amount computed by this crate (and allowed
/// in every catalog number and quantity). Twelve places keep a per-second
/// share of a hundredth-of-a-cent-per-hour price exact to 10^-12 while
/// leaving 16 integer digits inside `Decimal`'s 28.
pub const INTERNAL_SCALE: u32 = 12;

/// Exclusive bound on the magnitude of every amount, quantity and catalog
/// number: 10^16, far above any bill (and above `u64::MAX` tokens in
/// millions, 1.8 x 10^13). Reaching it is [`PricingError::Overflow`].
pub const AMOUNT_LIMIT: Decimal = Decimal::from_parts(0x6FC1_0000, 0x0023_86F2, 0, false, 0);

/// Rounds half to even to [`INTERNAL_SCALE`] places and drops trailing
/// zeros, so computed amounts print canonically (`26.2`, not the
/// `26.2000000` that `13.1 x 2.5 x 0.80` carries). Catalog numbers echoed in
/// a breakdown (unit prices, bounds) keep the text they were written with.
pub(crate) fn fix(d: Decimal) -> Decimal {
    fix_at(d, INTERNAL_SCALE)
}

/// [`fix`] at `scale` places.
pub(crate) fn fix_at(d: Decimal, scale: u32) -> Decimal {
    d.round_dp_with_strategy(scale, RoundingStrategy::MidpointNearestEven).normalize()
}

/// Whether `|d| < AMOUNT_LIMIT`.
pub(crate) fn within_limit(d: Decimal) -> bool {
    d.abs() < AMOUNT_LIMIT
}

/// `fix(d)`, or [`PricingError::Overflow`] when it reaches the limit.
pub(crate) fn bounded(d: Decimal, what: &'static str) -> Result<Decimal, PricingError> {
    let d = fix(d);
    if within_limit(d) { Ok(d) } else { Err(PricingError::Overflow { what }) }
}

/// `amount` rounded half to even to its currency's minor unit and written
/// with exactly that many places (`19492.80`, `0.10`), as a total is shown.
pub(crate) fn presented(amount: Money) -> Money {
    let mut rounded = amount.rounded();
    rounded.amount.rescale(amount.currency.minor_unit_digits());
    rounded
}

/// `a x b` at 12 places. Two 12-place factors can need 24 places; when the
/// product has more than 28 significant digits `Decimal` rounds it (half to
/// even) before the 12-place step: deterministic, and never the case for
/// catalogs priced to 6 places or fewer.
pub(crate) fn mul(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, PricingError> {
    let product = a.checked_mul(b).ok_or(PricingError::Overflow { what })?;
    bounded(product, what)
}

pub(crate) fn add(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, PricingError> {
    let sum = a.checked_add(b).ok_or(PricingError::Overflow { what })?;
    bounded(sum, what)
}

pub(crate) fn sub(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, PricingError> {
    let difference = a.checked_sub(b).ok_or(PricingError::Overflow { what })?;
    bounded(difference, what)
}

/// Whether `d` is written with at most [`INTERNAL_SCALE`] significant
/// places (`1.500` has 1).
pub(crate) fn within_scale(d: Decimal) -> bool {
    d.normalize().scale() <= INTERNAL_SCALE
}

/// Why a catalog number cannot be used, if it cannot: more than 12 places
/// or not below the limit. `name` is how the caller's message names it.
pub(crate) fn check_number(name: &str, value: Decimal) -> Result<(), String> {
    if !within_scale(value) {
        return Err(format!("{name} ({value}) has more than {INTERNAL_SCALE} decimal places"));
    }
    if !within_limit(value) {
        return Err(format!("{name} ({value}) must be below 10^16"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reservoir_domain::Currency;
    use rust_decimal_macros::dec;

    #[test]
    fn the_limit_is_ten_to_the_sixteen() {
        assert_eq!(AMOUNT_LIMIT, dec!(10000000000000000));
        // 16 integer digits and 12 places fit exactly, so sums do not round.
        let big = dec!(4999999999999999.999999999999);
        assert_eq!(add(big, big, "x").unwrap(), dec!(9999999999999999.999999999998));
        assert_eq!(add(big, dec!(5000000000000000.000000000001), "x"), Err(PricingError::Overflow { what: "x" }));
    }

    #[test]
    fn fix_rounds_half_to_even_at_twelve_places() {
        assert_eq!(fix(dec!(0.0000000000005)), dec!(0));
        assert_eq!(fix(dec!(0.0000000000015)), dec!(0.000000000002));
        assert_eq!(fix(dec!(0.0000000000025)), dec!(0.000000000002));
        // Trailing zeros of computed amounts are dropped.
        assert_eq!(fix(dec!(26.2000000)).to_string(), "26.2");
        assert_eq!(fix(dec!(0.000)).to_string(), "0");
    }

    #[test]
    fn presented_totals_show_the_minor_unit() {
        let shown = |a, c: &str| presented(Money::new(a, c.parse().unwrap())).amount.to_string();
        assert_eq!(shown(dec!(19492.8), "USD"), "19492.80");
        assert_eq!(shown(dec!(0.125), "USD"), "0.12");
        assert_eq!(shown(dec!(0.135), "USD"), "0.14");
        assert_eq!(shown(dec!(2.5), "JPY"), "2");
        assert_eq!(shown(dec!(1.0005), "KWD"), "1.000");
        assert_eq!(presented(Money::new(dec!(1), Currency::EUR)).currency, Currency::EUR);
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(mul(Decimal::MAX, dec!(2), "x"), Err(PricingError::Overflow { what: "x" }));
        assert_eq!(mul(AMOUNT_LIMIT, dec!(1), "x"), Err(PricingError::Overflow { what: "x" }));
        assert_eq!(add(Decimal::MAX, dec!(1), "x"), Err(PricingError::Overflow { what: "x" }));
        assert_eq!(sub(Decimal::MIN, dec!(1), "x"), Err(PricingError::Overflow { what: "x" }));
        assert_eq!(sub(dec!(0), AMOUNT_LIMIT, "x"), Err(PricingError::Overflow { what: "x" }));
    }

    #[test]
    fn numbers_are_checked_for_places_and_size() {
        assert!(within_scale(dec!(1.000000000000000000)));
        assert!(within_scale(dec!(0.000000000001)));
        assert!(!within_scale(dec!(0.0000000000001)));
        assert!(check_number("n", dec!(9999999999999999.999999999999)).is_ok());
        assert_eq!(check_number("n", AMOUNT_LIMIT), Err("n (10000000000000000) must be below 10^16".into()));
        assert!(check_number("n", dec!(-0.0000000000001)).unwrap_err().contains("more than 12"));
    }
}
