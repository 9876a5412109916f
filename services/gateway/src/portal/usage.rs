//! A tenant's usage by day and class, as the portal shows it: a table with
//! a row per day and a stacked bar chart of the same figures.

use chrono::{DateTime, NaiveDate, Utc};
use reservoir_domain::PriorityClass;
use reservoir_proto::enums::class_from_pb;
use reservoir_proto::time::instant;
use reservoir_proto::v1 as pb;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// One day's usage: weighted tokens per class, and requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayUsage {
    pub day: NaiveDate,
    pub requests: u64,
    pub reserved: Decimal,
    pub burst: Decimal,
    pub spot: Decimal,
}

impl DayUsage {
    pub fn total(&self) -> Decimal {
        self.reserved + self.burst + self.spot
    }
}

/// Every day from `from` to `to` (the last one included when it has
/// started), with metering's totals grouped by day added up per class; a
/// day without usage is a row of zeros.
pub fn by_day(totals: &[pb::UsageTotal], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DayUsage> {
    let mut days: Vec<DayUsage> = from
        .date_naive()
        .iter_days()
        .take_while(|d| d.and_hms_opt(0, 0, 0).is_some_and(|midnight| midnight.and_utc() < to))
        .map(|day| DayUsage { day, requests: 0, reserved: Decimal::ZERO, burst: Decimal::ZERO, spot: Decimal::ZERO })
        .collect();
    for t in totals {
        let Some(day) = t.day.as_ref().and_then(instant).map(|d| d.date_naive()) else { continue };
        let Some(row) = days.iter_mut().find(|d| d.day == day) else { continue };
        // Metering writes these; one it cannot read counts as nothing rather
        // than hiding the whole table.
        let weighted: Decimal = t.weighted_tokens.parse().unwrap_or_default();
        row.requests += t.requests;
        match class_from_pb("class", t.class) {
            Ok(PriorityClass::Reserved) => row.reserved += weighted,
            Ok(PriorityClass::Burst) => row.burst += weighted,
            Ok(PriorityClass::Spot) => row.spot += weighted,
            Err(_) => {}
        }
    }
    days
}

/// The stacked bar chart of `days` (an empty string when it cannot be drawn:
/// the table beside it still shows every figure).
pub fn chart(days: &[DayUsage]) -> String {
    let categories: Vec<String> = days.iter().map(|d| d.day.format("%m-%d").to_string()).collect();
    let series = |label: &str, pick: fn(&DayUsage) -> Decimal| reservoir_charts::Series {
        label: label.to_owned(),
        values: days.iter().map(|d| pick(d).to_f64().unwrap_or(0.0)).collect(),
    };
    let all = [series("reserved", |d| d.reserved), series("burst", |d| d.burst), series("spot", |d| d.spot)];
    reservoir_charts::stacked_bars("Weighted tokens by day and class", "weighted tokens", &categories, &all)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "usage chart");
            String::new()
        })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use reservoir_proto::time::timestamp;

    use super::*;

    fn total(day: DateTime<Utc>, class: pb::PriorityClass, weighted: &str, requests: u64) -> pb::UsageTotal {
        pb::UsageTotal {
            class: class.into(),
            weighted_tokens: weighted.into(),
            requests,
            day: Some(timestamp(day)),
            ..Default::default()
        }
    }

    #[test]
    fn usage_is_added_up_per_day_and_class_with_empty_days_kept() {
        let from = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("instant");
        let to = Utc.with_ymd_and_hms(2026, 11, 3, 12, 0, 0).single().expect("instant");
        let second = from + chrono::Duration::days(1);
        let totals = [
            total(from, pb::PriorityClass::Reserved, "10.5", 2),
            total(from, pb::PriorityClass::Reserved, "1.5", 1),
            total(from, pb::PriorityClass::Spot, "4", 1),
            total(second, pb::PriorityClass::Burst, "0.25", 1),
        ];
        let days = by_day(&totals, from, to);
        assert_eq!(days.len(), 3, "the 1st, 2nd and 3rd (begun)");
        assert_eq!((days[0].reserved, days[0].spot, days[0].requests), (Decimal::new(12, 0), Decimal::new(4, 0), 4));
        assert_eq!(days[1].burst, Decimal::new(25, 2));
        assert_eq!(days[2].total(), Decimal::ZERO);
        assert!(chart(&days).contains("<svg"));
    }
}
