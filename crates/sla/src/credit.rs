//! The credit schedule: the share of a contract's reservation fee credited
//! for a month whose availability fell below the tier's thresholds.

use rust_decimal::Decimal;

use crate::{Availability, TierPolicy};

/// The share of the fee owed for `availability` under `policy`: the share
/// of the lowest threshold it is strictly below, 0 when it meets the target.
pub fn credit_share(policy: &TierPolicy, availability: &Availability) -> Decimal {
    policy
        .credit_schedule
        .iter()
        .filter(|(below, _)| availability.is_below(*below))
        .map(|(_, share)| *share)
        .max()
        .unwrap_or(Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use reservoir_domain::Tier;
    use rust_decimal_macros::dec;

    /// Availability of `good` out of 100,000 measured windows.
    fn of(good: u64) -> Availability {
        Availability { windows_in_term: 100_000, maintenance_windows: 0, bad_windows: 100_000 - good }
    }

    fn share(tier: Tier, good: u64) -> Decimal {
        credit_share(&TierPolicy::of(tier), &of(good))
    }

    #[test]
    fn standard_and_premium_at_every_boundary() {
        assert_eq!(share(Tier::Standard, 100_000), dec!(0));
        assert_eq!(share(Tier::Standard, 99_900), dec!(0), "exactly the target");
        assert_eq!(share(Tier::Standard, 99_899), dec!(0.10), "just below");
        assert_eq!(share(Tier::Standard, 99_000), dec!(0.10));
        assert_eq!(share(Tier::Standard, 98_999), dec!(0.25));
        assert_eq!(share(Tier::Standard, 95_000), dec!(0.25));
        assert_eq!(share(Tier::Standard, 94_999), dec!(1));
        assert_eq!(share(Tier::Standard, 0), dec!(1));
        assert_eq!(share(Tier::Premium, 99_950), dec!(0));
        assert_eq!(share(Tier::Premium, 99_949), dec!(0.10));
        assert_eq!(share(Tier::Premium, 98_999), dec!(0.25));
        assert_eq!(share(Tier::Premium, 94_999), dec!(1));
    }

    #[test]
    fn enterprise_at_every_boundary() {
        assert_eq!(share(Tier::Enterprise, 99_990), dec!(0));
        assert_eq!(share(Tier::Enterprise, 99_989), dec!(0.10));
        assert_eq!(share(Tier::Enterprise, 99_900), dec!(0.10));
        assert_eq!(share(Tier::Enterprise, 99_899), dec!(0.25));
        assert_eq!(share(Tier::Enterprise, 99_000), dec!(0.25));
        assert_eq!(share(Tier::Enterprise, 98_999), dec!(0.50));
        assert_eq!(share(Tier::Enterprise, 95_000), dec!(0.50));
        assert_eq!(share(Tier::Enterprise, 94_999), dec!(1));
    }

    #[test]
    fn nothing_measured_owes_nothing() {
        let none = Availability { windows_in_term: 12, maintenance_windows: 12, bad_windows: 0 };
        assert_eq!(credit_share(&TierPolicy::of(Tier::Enterprise), &none), dec!(0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Worse availability never earns a smaller credit, and the share is
        /// one of the schedule's.
        #[test]
        fn the_share_never_falls_as_availability_falls(measured in 1u64..20_000, bad in 0u64..20_000, tier in 0usize..3) {
            let policy = TierPolicy::of(Tier::ALL[tier]);
            let bad = bad.min(measured);
            let a = Availability { windows_in_term: measured, maintenance_windows: 0, bad_windows: bad };
            let worse = Availability { bad_windows: (bad + 1).min(measured), ..a };
            let s = credit_share(&policy, &a);
            prop_assert!(credit_share(&policy, &worse) >= s);
            prop_assert!(s == dec!(0) || policy.credit_schedule.iter().any(|(_, share)| *share == s));
            prop_assert_eq!(s > dec!(0), Decimal::from(measured - bad) / Decimal::from(measured) < policy.availability_target);
        }
    }
}
