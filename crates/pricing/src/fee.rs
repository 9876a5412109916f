//! The reservation fee of a contract for a stretch of time (an invoice
//! period), and the SLA credit taken off it. Billing invoices exactly this
//! fee and the SLA service credits a share of exactly this fee, so the two
//! can never disagree by a rounding.
//!
//! ```text
//! billed span      = [starts_at, min(ends_at, cancelled_at))
//! hourly           : price_per_hour prorated over the billed seconds in the period
//!                    (prorate_elapsed: per second active, consecutive periods add up)
//! month, half_year : the part of total_for_term whose seconds fall in the period
//!                    (prorate_span: the parts of a term add up to its total)
//! ```
//!
//! A committed term bills its whole commitment whatever is used; only an
//! admin can end one early (a tenant cannot cancel it), and billing then
//! stops at the cancellation: ending it early is the admin's concession.

use chrono::{DateTime, Utc};
use reservoir_domain::{Currency, Money, Term, round_half_even};
use rust_decimal::Decimal;

use crate::amount::mul;
use crate::{PricingError, prorate_elapsed, prorate_span};

/// What billing needs of a reservation, as the contracts service stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationTerms {
    pub term: Term,
    pub currency: Currency,
    /// Exact price per hour (tier and term applied).
    pub price_per_hour: Decimal,
    /// Exact price of the whole term; `None` for an open-ended hourly contract.
    pub total_for_term: Option<Decimal>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl ReservationTerms {
    /// `[starts_at, end)` of what is billed; `None` when nothing is (cancelled
    /// before it started). The end is `None` for an open-ended contract.
    pub fn billed_span(&self) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        let end = match (self.ends_at, self.cancelled_at) {
            (Some(e), Some(c)) => Some(e.min(c)),
            (e, c) => e.or(c),
        };
        match end {
            Some(e) if e <= self.starts_at => None,
            _ => Some((self.starts_at, end)),
        }
    }
}

/// The exact fee (at the crate's 12 places, not yet rounded to the currency)
/// of `terms` for the instants `[from, to)`. Zero when the contract was not
/// billed then. Instants are taken to the whole second, as quotes are.
pub fn reservation_fee(
    terms: &ReservationTerms,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Money, PricingError> {
    let zero = Money::zero(terms.currency);
    let Some((start, end)) = terms.billed_span() else { return Ok(zero) };
    let a = from.max(start);
    let b = end.map_or(to, |e| to.min(e));
    if b <= a {
        return Ok(zero);
    }
    let from_second = (a - start).num_seconds();
    let to_second = (b - start).num_seconds();
    let amount = match (terms.term, terms.total_for_term, terms.ends_at) {
        (Term::Month | Term::HalfYear, Some(total), Some(term_end)) => {
            prorate_span(total, (term_end - start).num_seconds(), from_second, to_second)?
        }
        (Term::Month | Term::HalfYear, _, _) => {
            return Err(PricingError::request("reservation", "a committed term needs its end and its total"));
        }
        (Term::Hourly, _, _) => prorate_elapsed(terms.price_per_hour, from_second, to_second)?,
    };
    Ok(Money::new(amount, terms.currency))
}

/// An SLA credit: `share` (0 to 1) of the exact `fee`, rounded half to even
/// to the currency's minor unit, as the credit line of an invoice shows it.
pub fn credit_amount(fee: Money, share: Decimal) -> Result<Money, PricingError> {
    if share < Decimal::ZERO || share > Decimal::ONE {
        return Err(PricingError::request("credit share", format!("must be between 0 and 1, got {share}")));
    }
    let exact = mul(fee.amount, share, "credit")?;
    let mut rounded = round_half_even(exact, fee.currency.minor_unit_digits());
    rounded.rescale(fee.currency.minor_unit_digits());
    Ok(Money::new(rounded, fee.currency))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn at(m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap()
    }

    fn month_from(start: DateTime<Utc>, end: DateTime<Utc>, total: Decimal) -> ReservationTerms {
        ReservationTerms {
            term: Term::Month,
            currency: Currency::USD,
            price_per_hour: dec!(1),
            total_for_term: Some(total),
            starts_at: start,
            ends_at: Some(end),
            cancelled_at: None,
        }
    }

    #[test]
    fn a_month_term_across_two_calendar_months_splits_by_seconds_and_adds_up() {
        // 2026-11-16 .. 2026-12-16: 30 days, 15 in each month; total 720.
        let terms = month_from(at(11, 16, 0), at(12, 16, 0), dec!(720));
        let nov = reservation_fee(&terms, at(11, 1, 0), at(12, 1, 0)).unwrap();
        let dec_ = reservation_fee(&terms, at(12, 1, 0), Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()).unwrap();
        assert_eq!(nov.amount, dec!(360));
        assert_eq!(dec_.amount, dec!(360));
        // A period before the term bills nothing.
        assert_eq!(reservation_fee(&terms, at(10, 1, 0), at(11, 1, 0)).unwrap().amount, dec!(0));
    }

    #[test]
    fn thirds_of_a_term_add_up_to_the_total() {
        let terms = month_from(at(11, 1, 0), at(11, 1, 3), dec!(1));
        let parts: Decimal =
            (0..3).map(|h| reservation_fee(&terms, at(11, 1, h), at(11, 1, h + 1)).unwrap().amount).sum();
        assert_eq!(parts, dec!(1));
    }

    #[test]
    fn hourly_bills_the_seconds_active_until_cancelled() {
        let terms = ReservationTerms {
            term: Term::Hourly,
            currency: Currency::USD,
            price_per_hour: dec!(0.36),
            total_for_term: None,
            starts_at: at(11, 30, 22),
            ends_at: None,
            cancelled_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 1, 30, 0).unwrap()),
        };
        // Two hours in November, 1.5 in December.
        assert_eq!(reservation_fee(&terms, at(11, 1, 0), at(12, 1, 0)).unwrap().amount, dec!(0.72));
        assert_eq!(reservation_fee(&terms, at(12, 1, 0), at(12, 31, 0)).unwrap().amount, dec!(0.54));
    }

    #[test]
    fn cancelled_before_it_started_bills_nothing() {
        let mut terms = month_from(at(11, 16, 0), at(12, 16, 0), dec!(720));
        terms.cancelled_at = Some(at(11, 10, 0));
        assert_eq!(terms.billed_span(), None);
        assert_eq!(reservation_fee(&terms, at(11, 1, 0), at(12, 1, 0)).unwrap().amount, dec!(0));
    }

    #[test]
    fn an_admin_cancellation_ends_a_committed_term_early() {
        let mut terms = month_from(at(11, 1, 0), at(12, 1, 0), dec!(720));
        terms.cancelled_at = Some(at(11, 16, 0));
        assert_eq!(reservation_fee(&terms, at(11, 1, 0), at(12, 1, 0)).unwrap().amount, dec!(360));
    }

    #[test]
    fn credits_round_half_even_to_the_minor_unit() {
        let usd = |a| Money::new(a, Currency::USD);
        assert_eq!(credit_amount(usd(dec!(100.05)), dec!(0.10)).unwrap().amount.to_string(), "10.00");
        assert_eq!(credit_amount(usd(dec!(100.15)), dec!(0.10)).unwrap().amount.to_string(), "10.02");
        assert_eq!(credit_amount(usd(dec!(33.333333)), dec!(0.25)).unwrap().amount.to_string(), "8.33");
        assert_eq!(credit_amount(usd(dec!(42)), dec!(0)).unwrap().amount.to_string(), "0.00");
        let jpy = Money::new(dec!(1005), "JPY".parse().unwrap());
        assert_eq!(credit_amount(jpy, dec!(0.5)).unwrap().amount.to_string(), "502");
        assert!(credit_amount(usd(dec!(1)), dec!(1.5)).is_err());
        assert!(credit_amount(usd(dec!(1)), dec!(-0.1)).is_err());
    }
}
