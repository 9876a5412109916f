//! Proration to the second, in parts that add up exactly to the whole
//! (the approach is documented on [`prorate_span`]).

use rust_decimal::Decimal;

use crate::PricingError;
use crate::amount::{INTERNAL_SCALE, fix_at, within_limit};

pub const SECONDS_PER_HOUR: i64 = 3600;

/// `round_half_even(total x t / period, scale)`, with the two ends pinned so
/// that the telescoping sum is the whole even where `total x period` would
/// need more than `Decimal`'s 28 digits.
fn cumulative(total: Decimal, period_seconds: i64, t: i64, scale: u32) -> Result<Decimal, PricingError> {
    let overflow = || PricingError::Overflow { what: "prorated amount" };
    if !within_limit(total) {
        return Err(overflow());
    }
    let share = if t == 0 {
        Decimal::ZERO
    } else if t == period_seconds {
        fix_at(total, scale)
    } else {
        let whole_times_t = total.checked_mul(Decimal::from(t)).ok_or_else(overflow)?;
        let share = whole_times_t.checked_div(Decimal::from(period_seconds)).ok_or_else(overflow)?;
        fix_at(share, scale)
    };
    // Within a period |share| <= |total|; an open-ended hourly contract can
    // run past the limit.
    if within_limit(share) { Ok(share) } else { Err(overflow()) }
}

fn span_error(reason: String) -> PricingError {
    PricingError::request("proration span", reason)
}

/// The part of `total` (below [`crate::AMOUNT_LIMIT`]; for a period of `period_seconds`) that falls in the
/// seconds `[from_second, to_second)` of the period, at [`INTERNAL_SCALE`]
/// places. Consecutive parts add up exactly to `total` (a `total` with more
/// than 12 places adds up to `total` rounded to 12).
///
/// Needs `period_seconds > 0` and `0 <= from_second <= to_second <= period_seconds`.
///
/// # Approach
///
/// Prorating each part on its own (`total x seconds / period`, rounded) does
/// not add up: three thirds of 1 at 12 places are `3 x 0.333333333333 =
/// 0.999999999999`. Instead every part is a difference of one *cumulative*
/// function:
///
/// ```text
/// cumulative(t) = round_half_even(total x t / period, scale)   (multiply first, then divide)
/// part(from, to) = cumulative(to) - cumulative(from)
/// ```
///
/// with `cumulative(0) = 0` and `cumulative(period) = total` (rounded to the
/// scale). The parts of any split `0 = t0 < t1 < ... < tn = period` telescope:
/// their sum is `cumulative(period) - cumulative(0)`, the whole, exactly,
/// whatever the cut points. Each part is within one unit of the last place of
/// its exact share, and the result depends only on the arguments, so billing
/// the same seconds twice gives the same amounts.
///
/// The scale is [`INTERNAL_SCALE`] (12 places) for amounts that are still
/// computed with; [`prorate_span_to_scale`] with the currency's minor unit
/// digits splits an already rounded total into rounded parts that add up to it.
pub fn prorate_span(
    total: Decimal,
    period_seconds: i64,
    from_second: i64,
    to_second: i64,
) -> Result<Decimal, PricingError> {
    prorate_span_to_scale(total, period_seconds, from_second, to_second, INTERNAL_SCALE)
}

/// [`prorate_span`] rounded half to even to `scale` places (at most
/// [`INTERNAL_SCALE`]): with a currency's minor-unit digits, splits a rounded
/// total into rounded parts (monthly invoice lines of a half-year term, say)
/// whose sum is the rounded total.
pub fn prorate_span_to_scale(
    total: Decimal,
    period_seconds: i64,
    from_second: i64,
    to_second: i64,
    scale: u32,
) -> Result<Decimal, PricingError> {
    if period_seconds <= 0 {
        return Err(span_error(format!("the period must last at least 1 second, got {period_seconds}")));
    }
    if !(0 <= from_second && from_second <= to_second && to_second <= period_seconds) {
        return Err(span_error(format!(
            "seconds {from_second}..{to_second} are not inside the period 0..{period_seconds}"
        )));
    }
    if scale > INTERNAL_SCALE {
        return Err(span_error(format!("at most {INTERNAL_SCALE} decimal places, got {scale}")));
    }
    let to = cumulative(total, period_seconds, to_second, scale)?;
    let from = cumulative(total, period_seconds, from_second, scale)?;
    to.checked_sub(from).ok_or(PricingError::Overflow { what: "prorated amount" })
}

/// The price of `[from_second, to_second)` seconds after the start of an
/// open-ended contract priced `amount_per_hour`: `cumulative(to) -
/// cumulative(from)` with a one-hour period that keeps running, so
/// `prorate(p, a) + prorate_elapsed(p, a, b) == prorate(p, b)` exactly.
/// Billing uses it to split an hourly contract across invoice periods.
pub fn prorate_elapsed(amount_per_hour: Decimal, from_second: i64, to_second: i64) -> Result<Decimal, PricingError> {
    if !(0 <= from_second && from_second <= to_second) {
        return Err(span_error(format!("seconds {from_second}..{to_second} must be non-negative and in order")));
    }
    let to = cumulative(amount_per_hour, SECONDS_PER_HOUR, to_second, INTERNAL_SCALE)?;
    let from = cumulative(amount_per_hour, SECONDS_PER_HOUR, from_second, INTERNAL_SCALE)?;
    to.checked_sub(from).ok_or(PricingError::Overflow { what: "prorated amount" })
}

/// `amount_per_hour x seconds / 3600`, half to even at [`INTERNAL_SCALE`]
/// places: the price of the first `seconds` of a contract. Returns a
/// `Result` because negative seconds and overflow are errors, not panics.
pub fn prorate(amount_per_hour: Decimal, seconds: i64) -> Result<Decimal, PricingError> {
    if seconds < 0 {
        return Err(PricingError::request("duration", format!("must not be negative, got {seconds} s")));
    }
    prorate_elapsed(amount_per_hour, 0, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn whole_hours_are_exact() {
        // 0.0100 x 3600 / 3600 = 0.01
        assert_eq!(prorate(dec!(0.0100), 3600).unwrap(), dec!(0.01));
        // 26.2 x 744 h (a 31-day month) = 19492.8
        assert_eq!(prorate(dec!(26.2), 744 * 3600).unwrap(), dec!(19492.8));
        // 1 x 1800 / 3600 = 0.5
        assert_eq!(prorate(dec!(1), 1800).unwrap(), dec!(0.5));
        assert_eq!(prorate(dec!(1), 0).unwrap(), dec!(0));
    }

    #[test]
    fn one_second_is_rounded_half_even_at_twelve_places() {
        // 0.01 / 3600 = 0.0000027777... -> 0.000002777778
        assert_eq!(prorate(dec!(0.01), 1).unwrap(), dec!(0.000002777778));
        // 0.000000000009 / 3600 x 200 = 0.0000000000005 exactly, a tie: half to even -> 0
        assert_eq!(prorate(dec!(0.000000000009), 200).unwrap(), dec!(0));
        // x 600: 0.0000000000015, a tie -> 0.000000000002
        assert_eq!(prorate(dec!(0.000000000009), 600).unwrap(), dec!(0.000000000002));
    }

    #[test]
    fn thirds_add_up_to_the_whole() {
        // cumulative(1) = 0.333333333333, cumulative(2) = 0.666666666667, cumulative(3) = 1
        let parts: Vec<_> =
            [(0, 1), (1, 2), (2, 3)].iter().map(|&(a, b)| prorate_span(dec!(1), 3, a, b).unwrap()).collect();
        assert_eq!(parts, vec![dec!(0.333333333333), dec!(0.333333333334), dec!(0.333333333333)]);
        assert_eq!(parts.iter().sum::<Decimal>(), dec!(1));
    }

    #[test]
    fn rounded_parts_add_up_to_the_rounded_total() {
        // 100.00 in thirds at cents: 33.33, 66.67 - 33.33 = 33.34, 100 - 66.67 = 33.33
        let part = |a, b| prorate_span_to_scale(dec!(100.00), 3, a, b, 2).unwrap();
        assert_eq!([part(0, 1), part(1, 2), part(2, 3)], [dec!(33.33), dec!(33.34), dec!(33.33)]);
        // A tie at cents: 0.05 / 2 = 0.025 -> 0.02 (even), then 0.05 - 0.02 = 0.03
        let part = |a, b| prorate_span_to_scale(dec!(0.05), 2, a, b, 2).unwrap();
        assert_eq!([part(0, 1), part(1, 2)], [dec!(0.02), dec!(0.03)]);
    }

    #[test]
    fn elapsed_parts_add_up_beyond_the_first_hour() {
        let p = dec!(0.084);
        let a = prorate(p, 5000).unwrap();
        let b = prorate_elapsed(p, 5000, 12_345).unwrap();
        assert_eq!(a + b, prorate(p, 12_345).unwrap());
        // 0.084 x 5000 / 3600 = 0.11666... -> 0.116666666667
        assert_eq!(a, dec!(0.116666666667));
    }

    #[test]
    fn bad_spans_and_overflow_are_errors() {
        assert!(prorate(dec!(1), -1).unwrap_err().to_string().contains("must not be negative"));
        assert!(prorate_span(dec!(1), 0, 0, 0).is_err());
        assert!(prorate_span(dec!(1), 10, 5, 4).is_err());
        assert!(prorate_span(dec!(1), 10, -1, 4).is_err());
        let err = prorate_span(dec!(1), 10, 0, 11).unwrap_err();
        assert_eq!(err.to_string(), "invalid proration span: seconds 0..11 are not inside the period 0..10");
        assert!(prorate_span_to_scale(dec!(1), 10, 0, 1, 13).is_err());
        assert!(prorate_elapsed(dec!(1), 4, 3).is_err());
        assert_eq!(prorate(Decimal::MAX, 7200), Err(PricingError::Overflow { what: "prorated amount" }));
        assert!(prorate_elapsed(dec!(9000000000000000), 0, 7200).is_err());
        // The largest total: its x t needs more than 28 digits, so Decimal
        // rounds the share; pinned ends and exact differences still add up.
        let big = dec!(9999999999999999.999999999999);
        let parts = [(0, 3), (3, 5), (5, 7)].map(|(a, b)| prorate_span(big, 7, a, b).unwrap());
        assert_eq!(parts.iter().sum::<Decimal>(), big);
    }
}
