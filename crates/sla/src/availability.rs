//! Monthly availability of a contract: good windows / windows of its active
//! term in the month, scheduled maintenance excluded.
//!
//! Windows are `window_s` long and aligned to the UTC epoch. A window counts
//! for the term when it overlaps the active part of the term at all (a
//! contract starting at 10:02 owns the 10:00 window), and is excluded when
//! it overlaps a scheduled maintenance: maintenance is announced, so it is
//! shown as maintenance, not as downtime. A window without a bad verdict is
//! good (no traffic is good).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// A scheduled maintenance of a model: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Starts (epoch seconds) of the aligned windows overlapping `[from, to)`.
pub fn windows_overlapping(from: DateTime<Utc>, to: DateTime<Utc>, window_s: u32) -> impl Iterator<Item = i64> {
    let w = i64::from(window_s.max(1));
    let first = from.timestamp().div_euclid(w) * w;
    let end = to.timestamp();
    (0..).map(move |k| first + k * w).take_while(move |start| *start < end && from < to)
}

/// The counts availability is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Availability {
    /// Windows overlapping the active term in the month.
    pub windows_in_term: u64,
    /// Of those, windows overlapping a scheduled maintenance.
    pub maintenance_windows: u64,
    /// Of the rest, windows classified bad.
    pub bad_windows: u64,
}

impl Availability {
    /// Counts the windows of `[active_from, active_to)`: `bad` holds the
    /// starts (epoch seconds) of the contract's bad windows.
    pub fn count(
        active_from: DateTime<Utc>,
        active_to: DateTime<Utc>,
        window_s: u32,
        bad: &BTreeSet<i64>,
        maintenance: &[Maintenance],
    ) -> Availability {
        let w = i64::from(window_s.max(1));
        let mut counts = Availability::default();
        for start in windows_overlapping(active_from, active_to, window_s) {
            counts.windows_in_term += 1;
            let in_maintenance =
                maintenance.iter().any(|m| m.start.timestamp() < start + w && start < m.end.timestamp());
            if in_maintenance {
                counts.maintenance_windows += 1;
            } else if bad.contains(&start) {
                counts.bad_windows += 1;
            }
        }
        counts
    }

    /// Windows availability is measured over.
    pub fn measured_windows(&self) -> u64 {
        self.windows_in_term - self.maintenance_windows
    }

    pub fn good_windows(&self) -> u64 {
        self.measured_windows() - self.bad_windows
    }

    /// Whether availability is strictly below `threshold` (a fraction):
    /// `good < threshold x measured`, exactly. Nothing measured is 100%.
    pub fn is_below(&self, threshold: Decimal) -> bool {
        Decimal::from(self.good_windows()) < threshold * Decimal::from(self.measured_windows())
    }

    /// good / measured as a fraction rounded half to even to 6 places (for
    /// display: 99.9653% is 0.999653); 1 when nothing was measured.
    /// Decisions use [`Availability::is_below`], never this rounded figure.
    pub fn ratio(&self) -> Decimal {
        if self.measured_windows() == 0 {
            return Decimal::ONE;
        }
        (Decimal::from(self.good_windows()) / Decimal::from(self.measured_windows()))
            .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointNearestEven)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn t(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    const NOV: (u32, u32) = (1, 0);

    fn november(bad: &[i64], maintenance: &[Maintenance]) -> Availability {
        let bad: BTreeSet<i64> = bad.iter().copied().collect();
        Availability::count(
            t(NOV.0, NOV.1, 0),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            300,
            &bad,
            maintenance,
        )
    }

    #[test]
    fn a_whole_month_has_a_window_every_five_minutes() {
        let a = november(&[], &[]);
        assert_eq!(a.windows_in_term, 30 * 24 * 12);
        assert_eq!(a.ratio(), dec!(1));
        assert!(!a.is_below(dec!(0.9999)));
    }

    #[test]
    fn exactly_at_the_target_is_not_below_it() {
        // 8640 windows; 99.95% allows 4.32 bad windows: 4 is above, 5 below.
        let starts: Vec<i64> = windows_overlapping(t(2, 0, 0), t(2, 1, 0), 300).collect();
        assert!(!november(&starts[..4], &[]).is_below(dec!(0.9995)));
        assert!(november(&starts[..5], &[]).is_below(dec!(0.9995)));
        // 99.0% of 8640 is 8553.6 good windows: 86 bad leaves 8554, 87 leaves 8553.
        let day: Vec<i64> = windows_overlapping(t(3, 0, 0), t(4, 0, 0), 300).collect();
        assert!(!november(&day[..86], &[]).is_below(dec!(0.99)));
        assert!(november(&day[..87], &[]).is_below(dec!(0.99)));
        assert_eq!(november(&day[..87], &[]).ratio(), dec!(0.989931));
    }

    #[test]
    fn a_contract_starting_mid_month_counts_from_its_start_window() {
        let bad = BTreeSet::from([t(16, 10, 0).timestamp()]);
        // Starts 10:02: owns the 10:00 window, and it was bad.
        let a = Availability::count(t(16, 10, 2), t(16, 11, 0), 300, &bad, &[]);
        assert_eq!((a.windows_in_term, a.bad_windows), (12, 1));
        // A bad window before the contract started does not count.
        let later = Availability::count(t(16, 10, 5), t(16, 11, 0), 300, &bad, &[]);
        assert_eq!((later.windows_in_term, later.bad_windows), (11, 0));
    }

    #[test]
    fn maintenance_windows_are_excluded_not_bad() {
        let bad = BTreeSet::from([t(16, 10, 0).timestamp(), t(16, 10, 5).timestamp(), t(16, 10, 20).timestamp()]);
        // 10:02 .. 10:10 overlaps the 10:00 and 10:05 windows.
        let m = [Maintenance { start: t(16, 10, 2), end: t(16, 10, 10) }];
        let a = Availability::count(t(16, 10, 0), t(16, 11, 0), 300, &bad, &m);
        assert_eq!((a.windows_in_term, a.maintenance_windows, a.bad_windows), (12, 2, 1));
        assert_eq!(a.good_windows(), 9);
        // Entirely in maintenance: nothing measured, 100%.
        let all = [Maintenance { start: t(16, 9, 0), end: t(16, 12, 0) }];
        let b = Availability::count(t(16, 10, 0), t(16, 11, 0), 300, &bad, &all);
        assert_eq!((b.measured_windows(), b.ratio()), (0, dec!(1)));
        assert!(!b.is_below(dec!(0.9999)));
    }

    #[test]
    fn an_empty_term_has_no_windows() {
        assert_eq!(windows_overlapping(t(2, 0, 0), t(2, 0, 0), 300).count(), 0);
        assert_eq!(windows_overlapping(t(2, 0, 1), t(2, 0, 2), 300).collect::<Vec<_>>(), vec![t(2, 0, 0).timestamp()]);
    }
}
