//! Time ranges of reservations. All instants are UTC; a range is half-open
//! `[start, end)`, and `end = None` means open-ended (an hourly contract
//! running until cancelled).

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::{DomainError, Term};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl TimeRange {
    pub fn new(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Result<Self, DomainError> {
        if let Some(end) = end
            && end <= start
        {
            return Err(DomainError::invalid("time range", "ends_at must be after starts_at"));
        }
        Ok(Self { start, end })
    }

    /// Whether two half-open ranges share at least one instant.
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        let self_before_other_ends = other.end.is_none_or(|e| self.start < e);
        let other_before_self_ends = self.end.is_none_or(|e| other.start < e);
        self_before_other_ends && other_before_self_ends
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && self.end.is_none_or(|e| t < e)
    }
}

/// The end of a term that starts at `start`: `start` plus the term's calendar
/// months (clamped to the month's last day, as chrono does), or `None` for
/// hourly contracts.
pub fn term_end(term: Term, start: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, DomainError> {
    match term.months() {
        None => Ok(None),
        Some(m) => start
            .checked_add_months(Months::new(m))
            .map(Some)
            .ok_or_else(|| DomainError::invalid("starts_at", "too far in the future")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn month_terms_end_on_the_same_day_next_month() {
        assert_eq!(term_end(Term::Month, at(2026, 1, 15)).unwrap(), Some(at(2026, 2, 15)));
        assert_eq!(term_end(Term::Month, at(2026, 1, 31)).unwrap(), Some(at(2026, 2, 28)));
        assert_eq!(term_end(Term::HalfYear, at(2026, 1, 1)).unwrap(), Some(at(2026, 7, 1)));
        assert_eq!(term_end(Term::Hourly, at(2026, 1, 1)).unwrap(), None);
    }

    #[test]
    fn ranges_are_half_open() {
        let a = TimeRange::new(at(2026, 1, 1), Some(at(2026, 2, 1))).unwrap();
        let b = TimeRange::new(at(2026, 2, 1), None).unwrap();
        assert!(!a.overlaps(&b));
        assert!(!b.overlaps(&a));
        let c = TimeRange::new(at(2026, 1, 31), Some(at(2026, 3, 1))).unwrap();
        assert!(a.overlaps(&c) && c.overlaps(&a));
        assert!(TimeRange::new(at(2026, 1, 1), Some(at(2026, 1, 1))).is_err());
    }
}
