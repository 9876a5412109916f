//! What each SLA tier promises (the guide's domain defaults).
//!
//! | tier       | availability | TTFT base | decode floor | credits below (share)                        |
//! |------------|--------------|-----------|--------------|----------------------------------------------|
//! | standard   | 99.9%        | 2 s       | 4 tok/s      | 99.9 (10%), 99.0 (25%), 95.0 (100%)          |
//! | premium    | 99.95%       | 1 s       | 6 tok/s      | 99.95 (10%), 99.0 (25%), 95.0 (100%)         |
//! | enterprise | 99.99%       | 500 ms    | 8 tok/s      | 99.99 (10%), 99.9 (25%), 99.0 (50%), 95 (100%) |
//!
//! Decode floors are for the CPU pool; a GPU pool would set its own per model.

use reservoir_domain::Tier;
use rust_decimal::Decimal;

/// One tier's promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierPolicy {
    pub tier: Tier,
    /// Monthly availability promised, as a fraction (0.999).
    pub availability_target: Decimal,
    /// TTFT target of a request = this + prompt tokens / the model's prefill rate.
    pub ttft_base_ms: u32,
    /// The median decode speed of a window must not fall below this.
    pub decode_floor_tokens_per_s: Decimal,
    /// `(availability below which it applies, share of the fee)`, from the
    /// highest threshold down; the lowest threshold the availability is
    /// below gives the share.
    pub credit_schedule: &'static [(Decimal, Decimal)],
}

const fn d(num: i64, scale: u32) -> Decimal {
    Decimal::from_parts(num as u32, 0, 0, false, scale)
}

const STANDARD_CREDITS: &[(Decimal, Decimal)] = &[(d(999, 3), d(10, 2)), (d(990, 3), d(25, 2)), (d(950, 3), d(1, 0))];
const PREMIUM_CREDITS: &[(Decimal, Decimal)] = &[(d(9995, 4), d(10, 2)), (d(990, 3), d(25, 2)), (d(950, 3), d(1, 0))];
const ENTERPRISE_CREDITS: &[(Decimal, Decimal)] =
    &[(d(9999, 4), d(10, 2)), (d(999, 3), d(25, 2)), (d(990, 3), d(50, 2)), (d(950, 3), d(1, 0))];

impl TierPolicy {
    /// A request's TTFT target in milliseconds: the tier's base plus its
    /// prompt at the model's measured prefill rate (0: not measured, the
    /// base alone), so a long prompt is not a breach by itself. The same
    /// rule metering applies when it counts misses (`metering::store::windows`).
    pub fn ttft_target_ms(&self, prompt_tokens: u64, prefill_tokens_per_s: u32) -> u64 {
        let prefill_ms = if prefill_tokens_per_s == 0 {
            0
        } else {
            prompt_tokens.saturating_mul(1000) / u64::from(prefill_tokens_per_s)
        };
        u64::from(self.ttft_base_ms).saturating_add(prefill_ms)
    }

    pub fn of(tier: Tier) -> TierPolicy {
        match tier {
            Tier::Standard => TierPolicy {
                tier,
                availability_target: d(999, 3),
                ttft_base_ms: 2000,
                decode_floor_tokens_per_s: d(4, 0),
                credit_schedule: STANDARD_CREDITS,
            },
            Tier::Premium => TierPolicy {
                tier,
                availability_target: d(9995, 4),
                ttft_base_ms: 1000,
                decode_floor_tokens_per_s: d(6, 0),
                credit_schedule: PREMIUM_CREDITS,
            },
            Tier::Enterprise => TierPolicy {
                tier,
                availability_target: d(9999, 4),
                ttft_base_ms: 500,
                decode_floor_tokens_per_s: d(8, 0),
                credit_schedule: ENTERPRISE_CREDITS,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn the_ttft_target_allows_the_prompt_at_the_prefill_rate() {
        let premium = TierPolicy::of(Tier::Premium);
        assert_eq!(premium.ttft_target_ms(4000, 0), 1000, "rate not measured: the base alone");
        assert_eq!(premium.ttft_target_ms(4000, 2000), 3000, "4000 tokens at 2000/s: 2 s more");
        assert_eq!(premium.ttft_target_ms(1, 3), 1333, "whole milliseconds, rounded down as metering does");
        assert_eq!(TierPolicy::of(Tier::Enterprise).ttft_target_ms(u64::MAX, 1), u64::MAX, "saturates");
    }

    #[test]
    fn the_tiers_are_the_guides_defaults() {
        let s = TierPolicy::of(Tier::Standard);
        assert_eq!((s.availability_target, s.ttft_base_ms, s.decode_floor_tokens_per_s), (dec!(0.999), 2000, dec!(4)));
        let p = TierPolicy::of(Tier::Premium);
        assert_eq!((p.availability_target, p.ttft_base_ms, p.decode_floor_tokens_per_s), (dec!(0.9995), 1000, dec!(6)));
        let e = TierPolicy::of(Tier::Enterprise);
        assert_eq!((e.availability_target, e.ttft_base_ms, e.decode_floor_tokens_per_s), (dec!(0.9999), 500, dec!(8)));
        assert_eq!(e.credit_schedule[1], (dec!(0.999), dec!(0.25)));
        for tier in Tier::ALL {
            let policy = TierPolicy::of(*tier);
            // The first threshold is the target; thresholds fall, shares rise.
            assert_eq!(policy.credit_schedule[0].0, policy.availability_target);
            for pair in policy.credit_schedule.windows(2) {
                assert!(pair[0].0 > pair[1].0 && pair[0].1 < pair[1].1);
            }
        }
    }
}
