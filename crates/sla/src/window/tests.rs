use super::*;
use proptest::prelude::*;
use reservoir_domain::Tier;
use rust_decimal_macros::dec;

fn premium() -> TierPolicy {
    TierPolicy::of(Tier::Premium)
}

/// 100 eligible requests, all served in full at a good speed.
fn healthy() -> WindowFigures {
    WindowFigures {
        eligible_requests: 100,
        platform_errors: 0,
        ttft_missed: 0,
        decode_tokens_per_s_median: Some(dec!(20)),
        demand_weighted_tokens: dec!(1000),
        delivered_weighted_tokens: dec!(1000),
    }
}

fn reasons(f: &WindowFigures) -> Vec<BadReason> {
    // 10 tokens/s x 300 s = 3000 reserved: demand (1000) is what is owed.
    classify(f, &premium(), 10, 300).reasons
}

#[test]
fn no_traffic_is_good() {
    assert_eq!(reasons(&WindowFigures::default()), vec![]);
    // Even with figures that would be bad if anyone had been eligible.
    let f = WindowFigures { decode_tokens_per_s_median: Some(dec!(0)), ..WindowFigures::default() };
    assert!(!classify(&f, &premium(), 10, 300).is_bad());
}

#[test]
fn five_percent_of_errors_is_good_and_one_more_is_bad() {
    assert_eq!(reasons(&WindowFigures { platform_errors: 5, ..healthy() }), vec![]);
    assert_eq!(reasons(&WindowFigures { platform_errors: 6, ..healthy() }), vec![BadReason::PlatformErrors]);
    // 1 of 20 is exactly 5%; 1 of 19 is more.
    let few = WindowFigures { eligible_requests: 20, platform_errors: 1, ..healthy() };
    assert_eq!(reasons(&few), vec![]);
    assert_eq!(reasons(&WindowFigures { eligible_requests: 19, ..few }), vec![BadReason::PlatformErrors]);
}

#[test]
fn ttft_misses_at_five_percent_are_good_above_bad() {
    assert_eq!(reasons(&WindowFigures { ttft_missed: 5, ..healthy() }), vec![]);
    assert_eq!(reasons(&WindowFigures { ttft_missed: 6, ..healthy() }), vec![BadReason::TtftMissed]);
}

#[test]
fn decode_speed_exactly_at_the_floor_is_good() {
    let at_floor = WindowFigures { decode_tokens_per_s_median: Some(dec!(6)), ..healthy() };
    assert_eq!(reasons(&at_floor), vec![]);
    let below = WindowFigures { decode_tokens_per_s_median: Some(dec!(5.999)), ..healthy() };
    assert_eq!(reasons(&below), vec![BadReason::DecodeBelowFloor]);
    // No request long enough to measure decode: not a breach.
    assert_eq!(reasons(&WindowFigures { decode_tokens_per_s_median: None, ..healthy() }), vec![]);
    // The enterprise floor is higher.
    assert!(classify(&at_floor, &TierPolicy::of(Tier::Enterprise), 10, 300).is_bad());
}

#[test]
fn delivered_at_95_percent_of_what_was_owed_is_good() {
    let owed_demand = WindowFigures { delivered_weighted_tokens: dec!(950), ..healthy() };
    assert_eq!(reasons(&owed_demand), vec![]);
    let short = WindowFigures { delivered_weighted_tokens: dec!(949.999), ..healthy() };
    assert_eq!(reasons(&short), vec![BadReason::ThroughputShort]);
    // Demand above the reservation: only the reserved rate x window is owed.
    let over =
        WindowFigures { demand_weighted_tokens: dec!(10000), delivered_weighted_tokens: dec!(2850), ..healthy() };
    assert_eq!(reasons(&over), vec![]);
    let over_short = WindowFigures { delivered_weighted_tokens: dec!(2849.9), ..over };
    assert_eq!(reasons(&over_short), vec![BadReason::ThroughputShort]);
}

#[test]
fn every_reason_is_reported() {
    let awful = WindowFigures {
        eligible_requests: 10,
        platform_errors: 10,
        ttft_missed: 10,
        decode_tokens_per_s_median: Some(dec!(1)),
        demand_weighted_tokens: dec!(100),
        delivered_weighted_tokens: dec!(0),
    };
    assert_eq!(
        reasons(&awful),
        vec![BadReason::PlatformErrors, BadReason::TtftMissed, BadReason::DecodeBelowFloor, BadReason::ThroughputShort]
    );
    for r in BadReason::ALL {
        assert_eq!(BadReason::parse(r.as_str()), Some(r));
    }
}

#[test]
fn a_pool_is_down_when_half_its_measured_contracts_are_bad_or_no_worker_serves() {
    let pool = |measured, bad, live| {
        classify_pool(PoolFigures { contracts_measured: measured, contracts_bad: bad, workers_live: live })
    };
    assert_eq!(pool(0, 0, None), (PoolVerdict::Operational, vec![]));
    assert_eq!(pool(4, 1, Some(2)), (PoolVerdict::Degraded, vec![]));
    assert_eq!(pool(4, 2, Some(2)), (PoolVerdict::Outage, vec![BadReason::ContractsBreached]));
    assert_eq!(pool(1, 1, None), (PoolVerdict::Outage, vec![BadReason::ContractsBreached]));
    assert_eq!(pool(0, 0, Some(0)), (PoolVerdict::Outage, vec![BadReason::WorkersDown]));
    for v in [PoolVerdict::Operational, PoolVerdict::Degraded, PoolVerdict::Outage] {
        assert_eq!(PoolVerdict::parse(v.as_str()), Some(v));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The error rule agrees with the rational comparison errors/eligible > 5/100.
    #[test]
    fn the_error_threshold_is_exact(eligible in 1u64..10_000, errors_permille in 0u64..=1000) {
        let errors = eligible * errors_permille / 1000;
        let f = WindowFigures { eligible_requests: eligible, platform_errors: errors, ..healthy() };
        let bad = reasons(&f).contains(&BadReason::PlatformErrors);
        prop_assert_eq!(bad, Decimal::from(errors) / Decimal::from(eligible) > dec!(0.05));
    }

    /// More failures never turn a bad window good; delivering more never
    /// turns a good window bad.
    #[test]
    fn classification_is_monotone(
        eligible in 1u64..1000, errors in 0u64..1000, missed in 0u64..1000,
        demand in 0u64..100_000, delivered in 0u64..100_000, rate in 1u32..1000,
    ) {
        let errors = errors.min(eligible);
        let missed = missed.min(eligible);
        let base = WindowFigures {
            eligible_requests: eligible,
            platform_errors: errors,
            ttft_missed: missed,
            decode_tokens_per_s_median: None,
            demand_weighted_tokens: Decimal::from(demand),
            delivered_weighted_tokens: Decimal::from(delivered),
        };
        let bad = classify(&base, &premium(), rate, 300).is_bad();
        let worse = WindowFigures { platform_errors: (errors + 1).min(eligible), ..base.clone() };
        prop_assert!(!bad || classify(&worse, &premium(), rate, 300).is_bad());
        let more = WindowFigures { delivered_weighted_tokens: Decimal::from(delivered + 1), ..base.clone() };
        let more_reasons = classify(&more, &premium(), rate, 300).reasons;
        prop_assert!(bad || more_reasons.is_empty());
    }
}
