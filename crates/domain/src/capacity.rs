//! The capacity ledger's arithmetic: reservations are intervals with a rate;
//! the pool is oversold when, at any instant, the rates of the intervals
//! covering it add up to more than the sellable capacity.
//!
//! Everything here is a sweep over interval end points: O(n log n) for n
//! holdings. Intervals are half-open `[start, end)`; `end = None` runs
//! forever (an hourly contract until cancelled).

use chrono::{DateTime, Utc};

use crate::TimeRange;

/// One reservation's hold on a model's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    pub range: TimeRange,
    pub rate_tokens_per_s: u64,
}

/// A piece of the step function "reserved rate over time".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub from: DateTime<Utc>,
    /// `None`: the step lasts forever.
    pub to: Option<DateTime<Utc>>,
    pub reserved_tokens_per_s: u64,
}

/// Sellable capacity: `floor(capacity x (1 - headroom))`, in whole weighted tokens/s.
pub fn sellable_tokens_per_s(capacity_tokens_per_s: u32, headroom: rust_decimal::Decimal) -> u32 {
    use rust_decimal::prelude::ToPrimitive;
    let sellable = rust_decimal::Decimal::from(capacity_tokens_per_s) * (rust_decimal::Decimal::ONE - headroom);
    sellable.floor().to_u32().unwrap_or(0)
}

/// The reserved rate over `window` as consecutive steps covering the whole
/// window (adjacent steps with the same rate are merged). Holdings outside
/// the window are ignored.
pub fn reserved_steps(holdings: &[Holding], window: TimeRange) -> Vec<Step> {
    // Rate changes inside the window: +rate at a start, -rate at an end.
    let mut changes: Vec<(DateTime<Utc>, i128)> = Vec::with_capacity(holdings.len() * 2);
    let mut at_start: i128 = 0;
    for h in holdings.iter().filter(|h| h.range.overlaps(&window)) {
        let rate = i128::from(h.rate_tokens_per_s);
        if h.range.start <= window.start {
            at_start += rate;
        } else {
            changes.push((h.range.start, rate));
        }
        if let Some(end) = h.range.end
            && window.end.is_none_or(|w| end < w)
        {
            changes.push((end, -rate));
        }
    }
    changes.sort_by_key(|(t, _)| *t);

    let mut steps: Vec<Step> = Vec::new();
    let mut current = at_start;
    let mut from = window.start;
    let mut i = 0;
    while i < changes.len() {
        let t = changes[i].0;
        let mut next = current;
        while i < changes.len() && changes[i].0 == t {
            next += changes[i].1;
            i += 1;
        }
        if next != current && t > from {
            push_merged(&mut steps, from, Some(t), current);
            from = t;
        }
        current = next;
    }
    push_merged(&mut steps, from, window.end, current);
    steps
}

/// The most reserved at any instant of each bucket of `bucket` length from
/// `from` until `to` (the last bucket may be shorter), from `steps` as
/// [`reserved_steps`] gives them (sorted, consecutive). One pass over both.
pub fn peak_per_bucket(steps: &[Step], from: DateTime<Utc>, to: DateTime<Utc>, bucket: chrono::Duration) -> Vec<Step> {
    let mut peaks = Vec::new();
    if bucket <= chrono::Duration::zero() {
        return peaks;
    }
    let mut first = 0;
    let mut start = from;
    while start < to {
        let end = (start + bucket).min(to);
        // Steps that ended by this bucket's start are behind every later one too.
        while first < steps.len() && steps[first].to.is_some_and(|t| t <= start) {
            first += 1;
        }
        let peak =
            steps[first..].iter().take_while(|s| s.from < end).map(|s| s.reserved_tokens_per_s).max().unwrap_or(0);
        peaks.push(Step { from: start, to: Some(end), reserved_tokens_per_s: peak });
        start = end;
    }
    peaks
}

fn push_merged(steps: &mut Vec<Step>, from: DateTime<Utc>, to: Option<DateTime<Utc>>, rate: i128) {
    // A sum of u64 rates never goes negative: every end follows its start.
    let rate = u64::try_from(rate.max(0)).unwrap_or(u64::MAX);
    if let Some(last) = steps.last_mut()
        && last.reserved_tokens_per_s == rate
    {
        last.to = to;
        return;
    }
    steps.push(Step { from, to, reserved_tokens_per_s: rate });
}

/// The highest reserved rate at any instant of `window`.
pub fn peak_reserved(holdings: &[Holding], window: TimeRange) -> u64 {
    reserved_steps(holdings, window).iter().map(|s| s.reserved_tokens_per_s).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    fn hold(start: i64, end: Option<i64>, rate: u64) -> Holding {
        Holding { range: TimeRange::new(t(start), end.map(t)).unwrap(), rate_tokens_per_s: rate }
    }

    #[test]
    fn steps_follow_starts_and_ends() {
        let holdings = [hold(1, Some(3), 10), hold(2, None, 5), hold(5, Some(6), 7)];
        let window = TimeRange::new(t(0), Some(t(8))).unwrap();
        let steps = reserved_steps(&holdings, window);
        let rates: Vec<_> = steps.iter().map(|s| (s.from, s.to, s.reserved_tokens_per_s)).collect();
        assert_eq!(
            rates,
            vec![
                (t(0), Some(t(1)), 0),
                (t(1), Some(t(2)), 10),
                (t(2), Some(t(3)), 15),
                (t(3), Some(t(5)), 5),
                (t(5), Some(t(6)), 12),
                (t(6), Some(t(8)), 5),
            ]
        );
        assert_eq!(peak_reserved(&holdings, window), 15);
    }

    #[test]
    fn each_bucket_holds_the_peak_of_the_steps_it_overlaps() {
        let holdings = [hold(1, Some(3), 10), hold(2, None, 5), hold(5, Some(6), 7)];
        let window = TimeRange::new(t(0), Some(t(8))).unwrap();
        let steps = reserved_steps(&holdings, window);
        let peaks: Vec<_> = peak_per_bucket(&steps, t(0), t(7), Duration::hours(2))
            .iter()
            .map(|s| (s.from, s.to, s.reserved_tokens_per_s))
            .collect();
        assert_eq!(
            peaks,
            vec![(t(0), Some(t(2)), 10), (t(2), Some(t(4)), 15), (t(4), Some(t(6)), 12), (t(6), Some(t(7)), 5),],
            "the last bucket is cut at the end"
        );
        assert!(peak_per_bucket(&steps, t(0), t(7), Duration::zero()).is_empty());
    }

    #[test]
    fn back_to_back_holdings_do_not_add_up() {
        let holdings = [hold(0, Some(2), 10), hold(2, Some(4), 10)];
        let window = TimeRange::new(t(0), None).unwrap();
        assert_eq!(peak_reserved(&holdings, window), 10);
    }

    #[test]
    fn sellable_capacity_rounds_down() {
        use rust_decimal_macros::dec;
        assert_eq!(sellable_tokens_per_s(1000, dec!(0.10)), 900);
        assert_eq!(sellable_tokens_per_s(999, dec!(0.10)), 899);
        assert_eq!(sellable_tokens_per_s(1000, dec!(0)), 1000);
    }

    proptest! {
        /// The sweep agrees with summing the holdings that cover each instant.
        #[test]
        fn sweep_matches_brute_force(
            raw in proptest::collection::vec((0i64..20, proptest::option::of(1i64..10), 1u64..100), 0..12),
            w_start in 0i64..20, w_len in 1i64..20,
        ) {
            let holdings: Vec<Holding> =
                raw.iter().map(|&(s, len, r)| hold(s, len.map(|l| s + l), r)).collect();
            let window = TimeRange::new(t(w_start), Some(t(w_start + w_len))).unwrap();
            let steps = reserved_steps(&holdings, window);
            prop_assert_eq!(steps.first().map(|s| s.from), Some(window.start));
            prop_assert_eq!(steps.last().and_then(|s| s.to), window.end);
            for h in w_start..w_start + w_len {
                let instant = t(h);
                let expected: u64 = holdings.iter()
                    .filter(|x| x.range.contains(instant))
                    .map(|x| x.rate_tokens_per_s).sum();
                let step = steps.iter().find(|s| s.from <= instant && s.to.is_none_or(|e| instant < e));
                prop_assert_eq!(step.map(|s| s.reserved_tokens_per_s), Some(expected));
            }
        }
    }
}
