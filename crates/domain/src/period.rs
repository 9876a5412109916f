//! Calendar months, the period that SLA availability, credits and invoices
//! are reckoned over. Written `YYYY-MM` on the wire; a month is the half-open
//! UTC range from its first midnight to the next month's.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A calendar month in UTC, such as `2026-11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Period {
    year: i32,
    month: u32,
}

/// Years a period may name: far enough for any contract, small enough that
/// every instant of them fits `DateTime<Utc>` and PostgreSQL.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=2999;

impl Period {
    pub fn new(year: i32, month: u32) -> Result<Self, DomainError> {
        if !YEARS.contains(&year) || !(1..=12).contains(&month) {
            return Err(DomainError::invalid(
                "period",
                format!("{year:04}-{month:02} is not a month of years 2000 to 2999"),
            ));
        }
        Ok(Period { year, month })
    }

    /// The month holding `t`.
    pub fn containing(t: DateTime<Utc>) -> Result<Self, DomainError> {
        Period::new(t.year(), t.month())
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    pub fn month(&self) -> u32 {
        self.month
    }

    /// Midnight UTC of the month's first day.
    pub fn start(&self) -> DateTime<Utc> {
        midnight(self.year, self.month)
    }

    /// Midnight UTC of the next month's first day (exclusive end).
    pub fn end(&self) -> DateTime<Utc> {
        self.next().map_or_else(|| midnight(self.year + 1, 1), |p| p.start())
    }

    /// The following month, `None` after 2999-12.
    pub fn next(&self) -> Option<Period> {
        let (year, month) = if self.month == 12 { (self.year + 1, 1) } else { (self.year, self.month + 1) };
        Period::new(year, month).ok()
    }

    /// The month before, `None` before 2000-01.
    pub fn previous(&self) -> Option<Period> {
        let (year, month) = if self.month == 1 { (self.year - 1, 12) } else { (self.year, self.month - 1) };
        Period::new(year, month).ok()
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start() <= t && t < self.end()
    }
}

fn midnight(year: i32, month: u32) -> DateTime<Utc> {
    // Valid by construction: month in 1..=12, year in YEARS (or one past).
    let date = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN);
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

impl FromStr for Period {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || DomainError::invalid("period", format!("{s:?} is not a month written YYYY-MM"));
        let (year, month) = s.split_once('-').ok_or_else(invalid)?;
        if year.len() != 4 || month.len() != 2 || !(year.bytes().chain(month.bytes())).all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        Period::new(year.parse().map_err(|_| invalid())?, month.parse().map_err(|_| invalid())?)
    }
}

impl TryFrom<String> for Period {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Period> for String {
    fn from(p: Period) -> String {
        p.to_string()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_print_and_bound() {
        let p: Period = "2026-11".parse().unwrap();
        assert_eq!(p.to_string(), "2026-11");
        assert_eq!(p.start(), Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
        assert_eq!(p.end(), Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        let dec: Period = "2026-12".parse().unwrap();
        assert_eq!(dec.end(), Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(dec.next().unwrap().to_string(), "2027-01");
        assert_eq!("2027-01".parse::<Period>().unwrap().previous(), Some(dec));
        assert!(p.contains(p.start()) && !p.contains(p.end()));
        assert_eq!("2999-12".parse::<Period>().unwrap().next(), None);
        assert_eq!("2999-12".parse::<Period>().unwrap().end(), Utc.with_ymd_and_hms(3000, 1, 1, 0, 0, 0).unwrap());
    }

    #[test]
    fn malformed_months_are_refused() {
        for bad in
            ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "2026-11-01", "", "+026-11", "1999-12", "3000-01"]
        {
            assert!(bad.parse::<Period>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_month_of_an_instant() {
        let t = Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 59).unwrap();
        assert_eq!(Period::containing(t).unwrap().to_string(), "2026-02");
    }
}
