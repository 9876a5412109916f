//! Checked arithmetic at the crate's fixed internal scale (see the rounding
//! rule in the crate docs). Every amount the crate computes goes through
//! these helpers, so no operation can panic or round in an undocumented way.

use reservoir_domain::Money;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::PricingError;

/// Decimal places kept for every amount computed by this crate (and allowed
/// in every catalog number and quantity). Twelve places leave 16 integer
/// digits inside `Decimal`'s 28 significant digits, far above any bill, while
/// keeping a per-second share of a cent-per-hour price exact to 10^-12.
pub const INTERNAL_SCALE: u32 = 12;

/// Rounds half to even to [`INTERNAL_SCALE`] places and drops trailing
/// zeros, so computed amounts print canonically (`26.2`, not the
/// `26.2000000` that `13.1 x 2.5 x 0.80` carries). Catalog numbers echoed in
/// a breakdown (unit prices, bounds) keep the text they were written with.
pub(crate) fn fix(d: Decimal) -> Decimal {
    fix_at(d, INTERNAL_SCALE)
}

/// [`fix`] at `scale` places.
pub(crate) fn fix_at(d: Decimal, scale: u32) -> Decimal {
    d.round_dp_with_strategy(scale, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

/// `amount` rounded half to even to its currency's minor unit and written
/// with exactly that many places (`19492.80`, `0.10`), as a total is shown.
pub(crate) fn presented(amount: Money) -> Money {
    let mut rounded = amount.rounded();
    rounded.amount.rescale(amount.currency.minor_unit_digits());
    rounded
}

pub(crate) fn mul(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, PricingError> {
    a.checked_mul(b)
        .map(fix)
        .ok_or(PricingError::Overflow { what })
}

pub(crate) fn add(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, PricingError> {
    a.checked_add(b)
        .map(fix)
        .ok_or(PricingError::Overflow { what })
}

pub(crate) fn sub(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, PricingError> {
    a.checked_sub(b)
        .map(fix)
        .ok_or(PricingError::Overflow { what })
}

/// Decimal places of `d` once trailing zeros are dropped (`1.500` has 1).
pub(crate) fn significant_scale(d: Decimal) -> u32 {
    d.normalize().scale()
}

/// Whether `d` is written with at most [`INTERNAL_SCALE`] significant places.
pub(crate) fn within_scale(d: Decimal) -> bool {
    significant_scale(d) <= INTERNAL_SCALE
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

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
        use reservoir_domain::Currency;
        let shown = |a, c: &str| {
            presented(Money::new(a, c.parse().unwrap()))
                .amount
                .to_string()
        };
        assert_eq!(shown(dec!(19492.8), "USD"), "19492.80");
        assert_eq!(shown(dec!(0.125), "USD"), "0.12");
        assert_eq!(shown(dec!(0.135), "USD"), "0.14");
        assert_eq!(shown(dec!(2.5), "JPY"), "2");
        assert_eq!(shown(dec!(1.0005), "KWD"), "1.000");
        assert_eq!(
            presented(Money::new(dec!(1), Currency::EUR)).currency,
            Currency::EUR
        );
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(
            mul(Decimal::MAX, dec!(2), "x"),
            Err(PricingError::Overflow { what: "x" })
        );
        assert_eq!(
            add(Decimal::MAX, dec!(1), "x"),
            Err(PricingError::Overflow { what: "x" })
        );
        assert_eq!(
            sub(Decimal::MIN, dec!(1), "x"),
            Err(PricingError::Overflow { what: "x" })
        );
    }

    #[test]
    fn scale_ignores_trailing_zeros() {
        assert!(within_scale(dec!(1.000000000000000000)));
        assert!(within_scale(dec!(0.000000000001)));
        assert!(!within_scale(dec!(0.0000000000001)));
    }
}
