//! A contract's token bucket: it holds at most `rate x burst window`
//! weighted tokens and refills at the reserved rate. A request is admitted
//! against it while the bucket has tokens at all, and its whole estimated
//! cost is taken, which may leave the bucket in debt: a request larger than
//! the burst window (a long completion on a small contract) is still served
//! as reserved, and the debt holds the contract's next requests back until
//! the rate has paid it off, so over any span a contract is never served
//! more than its rate plus one window plus one request. Integer arithmetic in
//! milli-tokens with the remainder carried, so refills never drift.

use crate::{MICROS_PER_S, Micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractBucket {
    /// Refill rate, milli-tokens per second (reserved rate x 1000).
    rate_milli_per_s: u64,
    /// Most the bucket holds, milli-tokens.
    capacity_milli: i64,
    /// Below zero: debt.
    level_milli: i64,
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
        let capacity_milli = i64::try_from(rate_milli_per_s * u64::from(burst_window_s.max(1))).unwrap_or(i64::MAX);
        Self { rate_milli_per_s, capacity_milli, level_milli: capacity_milli, last: now, carry: 0 }
    }

    pub fn capacity_milli(&self) -> i64 {
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
        let whole = i64::try_from(whole).unwrap_or(i64::MAX);
        self.level_milli = self.level_milli.saturating_add(whole).min(self.capacity_milli);
        if self.level_milli == self.capacity_milli {
            self.carry = 0;
        }
    }

    /// The level at `now`, in milli-tokens (negative: in debt).
    pub fn level_milli(&mut self, now: Micros) -> i64 {
        self.refill(now);
        self.level_milli
    }

    /// Takes `cost_milli` if the bucket has tokens (its level is above zero),
    /// into debt if need be; otherwise takes nothing.
    pub fn try_take(&mut self, cost_milli: u64, now: Micros) -> bool {
        self.refill(now);
        if self.level_milli > 0 {
            self.level_milli = self.level_milli.saturating_sub(i64::try_from(cost_milli).unwrap_or(i64::MAX));
            true
        } else {
            false
        }
    }

    /// Corrects an admission-time estimate once the real cost is known:
    /// refunds what was over-estimated (up to the capacity), or takes what
    /// was under-estimated (into debt if need be).
    pub fn settle(&mut self, estimated_milli: u64, actual_milli: u64, now: Micros) {
        self.refill(now);
        let difference = i128::from(estimated_milli) - i128::from(actual_milli);
        let level =
            (i128::from(self.level_milli) + difference).clamp(i128::from(i64::MIN), i128::from(self.capacity_milli));
        self.level_milli = i64::try_from(level).unwrap_or(i64::MIN);
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
        assert_eq!(b.level_milli(0), -42_000, "an under-estimate is taken in full, into debt");
        b.settle(0, 0, 0);
        b.settle(100_000, 0, 0);
        assert_eq!(b.level_milli(0), 10_000, "a refund never fills past the capacity");
    }

    #[test]
    fn a_request_larger_than_the_window_goes_into_debt_that_the_rate_pays_off() {
        // 10 tokens/s, 2 s window: 20 tokens. A 50-token request is taken whole.
        let mut b = ContractBucket::new(10, 2, 0);
        assert!(b.try_take(50_000, 0));
        assert_eq!(b.level_milli(0), -30_000);
        assert!(!b.try_take(1, 0), "in debt: nothing more until it is paid off");
        assert!(!b.try_take(1, 3 * MICROS_PER_S), "3 s pay 30 tokens: level 0, still no tokens");
        assert!(b.try_take(1_000, 3 * MICROS_PER_S + 1_000), "the next refill has tokens again");
    }

    proptest! {
        #[test]
        fn level_stays_within_capacity_and_debt_within_what_was_taken(
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
                    prop_assert_eq!(took, before > 0);
                    if took {
                        prop_assert!(b.level_milli(now) >= before - i64::try_from(cost).unwrap());
                    }
                } else {
                    b.settle(cost, cost / 2, now);
                }
                prop_assert!(b.level_milli(now) <= b.capacity_milli());
            }
        }
    }
}
