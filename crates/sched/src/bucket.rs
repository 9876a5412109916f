//! A contract's token bucket: it holds at most `rate x burst window`
//! weighted tokens and refills at the reserved rate. Integer arithmetic in
//! milli-tokens with the remainder carried, so refills never drift.

use crate::{MICROS_PER_S, Micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractBucket {
    /// Refill rate, milli-tokens per second (reserved rate x 1000).
    rate_milli_per_s: u64,
    /// Most the bucket holds, milli-tokens.
    capacity_milli: u64,
    level_milli: u64,
    /// Time of the last refill.
    last: Micros,
    /// Refill owed but not yet a whole milli-token, in milli-token-micros.
    carry: u128,
}

impl ContractBucket {
    /// A full bucket for `rate_tokens_per_s` with a burst window of
    /// `burst_window_s` seconds.
    pub fn new(rate_tokens_per_s: u32, burst_window_s: u32, now: Micros) -> Self {
        let rate_milli_per_s = u64::from(rate_tokens_per_s) * 1000;
        let capacity_milli = rate_milli_per_s * u64::from(burst_window_s.max(1));
        Self { rate_milli_per_s, capacity_milli, level_milli: capacity_milli, last: now, carry: 0 }
    }

    pub fn capacity_milli(&self) -> u64 {
        self.capacity_milli
    }

    fn refill(&mut self, now: Micros) {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        if self.level_milli >= self.capacity_milli {
            self.carry = 0;
            return;
        }
        let owed = u128::from(elapsed) * u128::from(self.rate_milli_per_s) + self.carry;
        let whole = owed / u128::from(MICROS_PER_S);
        self.carry = owed % u128::from(MICROS_PER_S);
        let room = self.capacity_milli - self.level_milli;
        self.level_milli += u64::try_from(whole).unwrap_or(u64::MAX).min(room);
        if self.level_milli == self.capacity_milli {
            self.carry = 0;
        }
    }

    /// The level at `now`, in milli-tokens.
    pub fn level_milli(&mut self, now: Micros) -> u64 {
        self.refill(now);
        self.level_milli
    }

    /// Takes `cost_milli` if the bucket holds it; otherwise takes nothing.
    pub fn try_take(&mut self, cost_milli: u64, now: Micros) -> bool {
        self.refill(now);
        if cost_milli <= self.level_milli {
            self.level_milli -= cost_milli;
            true
        } else {
            false
        }
    }

    /// Corrects an admission-time estimate once the real cost is known:
    /// refunds what was over-estimated (up to the capacity), or takes what
    /// was under-estimated (down to empty).
    pub fn settle(&mut self, estimated_milli: u64, actual_milli: u64, now: Micros) {
        self.refill(now);
        if actual_milli < estimated_milli {
            let refund = estimated_milli - actual_milli;
            self.level_milli = self.level_milli.saturating_add(refund).min(self.capacity_milli);
        } else {
            self.level_milli = self.level_milli.saturating_sub(actual_milli - estimated_milli);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn starts_full_and_refills_at_the_rate() {
        // 10 tokens/s, 2 s window: holds 20 tokens.
        let mut b = ContractBucket::new(10, 2, 0);
        assert_eq!(b.level_milli(0), 20_000);
        assert!(b.try_take(20_000, 0));
        assert!(!b.try_take(1, 0));
        assert_eq!(b.level_milli(500_000), 5_000, "half a second refills 5 tokens");
        assert_eq!(b.level_milli(10 * MICROS_PER_S), 20_000, "never above capacity");
    }

    #[test]
    fn refills_in_tiny_steps_lose_nothing() {
        // 3 tokens/s refilled every microsecond for one second: exactly 3 tokens.
        let mut b = ContractBucket::new(3, 1, 0);
        assert!(b.try_take(3000, 0));
        for t in 1..=MICROS_PER_S {
            b.refill(t);
        }
        assert_eq!(b.level_milli(MICROS_PER_S), 3000);
    }

    #[test]
    fn settle_refunds_and_charges() {
        let mut b = ContractBucket::new(10, 1, 0);
        assert!(b.try_take(8_000, 0));
        b.settle(8_000, 3_000, 0);
        assert_eq!(b.level_milli(0), 7_000);
        b.settle(1_000, 50_000, 0);
        assert_eq!(b.level_milli(0), 0, "an under-estimate empties the bucket, no debt below zero");
    }

    proptest! {
        #[test]
        fn level_stays_within_capacity(
            rate in 1u32..10_000, window in 1u32..10,
            ops in proptest::collection::vec((0u64..2_000_000, 0u64..50_000_000, any::<bool>()), 1..50),
        ) {
            let mut b = ContractBucket::new(rate, window, 0);
            let mut now = 0;
            for (dt, cost, take) in ops {
                now += dt;
                let before = b.level_milli(now);
                if take {
                    let took = b.try_take(cost, now);
                    prop_assert_eq!(took, cost <= before);
                } else {
                    b.settle(cost, cost / 2, now);
                }
                prop_assert!(b.level_milli(now) <= b.capacity_milli());
            }
        }
    }
}
