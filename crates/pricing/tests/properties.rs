//! Property tests of the pricing crate: the promises that must hold for every
//! table, quantity, split and request, not just the worked examples.

// A failed unwrap is a failed test, with the value in the message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use reservoir_domain::{Currency, ModelId, Term, Tier};
use reservoir_pricing::{
    Catalog, ModelPrices, PriceTier, QuoteRequest, TierMode, TierTable, price_tokens, prorate, prorate_elapsed,
    prorate_span, prorate_span_to_scale, quote,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

/// A non-negative decimal `mantissa x 10^-scale`; trailing zeros are kept
/// (`Decimal::new(100, 4)` is `0.0100`) so round trips are tested on them.
fn decimal(max_mantissa: i64, max_scale: u32) -> impl Strategy<Value = Decimal> {
    (0..=max_mantissa, 0..=max_scale).prop_map(|(m, s)| Decimal::new(m, s))
}

/// Any decimal at all, huge, tiny, negative or with 28 places.
fn any_decimal() -> impl Strategy<Value = Decimal> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>(), 0u32..=28)
        .prop_map(|(lo, mid, hi, negative, scale)| Decimal::from_parts(lo, mid, hi, negative, scale))
}

/// Valid tiers: positive strictly increasing bounds, open last tier.
fn valid_tiers(max_tiers: usize) -> impl Strategy<Value = Vec<PriceTier>> {
    prop::collection::vec((decimal(1_000_000, 3), decimal(100_000, 4), decimal(10_000, 2)), 1..=max_tiers).prop_map(
        |raw| {
            let last = raw.len() - 1;
            let mut bound = Decimal::ZERO;
            raw.into_iter()
                .enumerate()
                .map(|(i, (step, unit_price, flat_fee))| {
                    bound += if step.is_zero() { Decimal::ONE } else { step };
                    PriceTier { up_to: (i < last).then_some(bound), unit_price, flat_fee }
                })
                .collect()
        },
    )
}

fn table(mode: TierMode, max_tiers: usize) -> impl Strategy<Value = TierTable> {
    valid_tiers(max_tiers).prop_map(move |tiers| TierTable { mode, tiers })
}

fn any_mode() -> impl Strategy<Value = TierMode> {
    prop_oneof![Just(TierMode::Graduated), Just(TierMode::Volume)]
}

/// Quantities around the generated bounds (up to ~6,000), with up to 6 places.
fn quantity() -> impl Strategy<Value = Decimal> {
    prop_oneof![decimal(10_000, 0), decimal(10_000_000_000, 6), decimal(100, 0)]
}

fn model_prices() -> impl Strategy<Value = ModelPrices> {
    (table(TierMode::Graduated, 5), table(TierMode::Graduated, 5), table(TierMode::Volume, 5)).prop_map(
        |(reservation, on_demand_per_million, spot_per_million)| ModelPrices {
            reservation,
            on_demand_per_million,
            spot_per_million,
        },
    )
}

fn catalog() -> impl Strategy<Value = Catalog> {
    let multipliers = prop::collection::vec(decimal(100_000, 4), 3);
    // Fractions in [0, 1) written with 4 to 8 places (trailing zeros included).
    let discounts = prop::collection::vec((0i64..10_000, 4u32..=8).prop_map(|(m, s)| Decimal::new(m, s)), 3);
    let currency = prop::sample::select(vec!["USD", "EUR", "JPY", "KWD"]);
    let models = prop::collection::btree_map("[a-z][a-z0-9-]{0,20}", model_prices(), 1..=3);
    (1..=i64::MAX, currency, multipliers, discounts, models).prop_map(|(version, currency, m, d, models)| Catalog {
        version,
        currency: currency.parse().unwrap(),
        // Zero multipliers are invalid; 0 + 1 keeps the strategy simple.
        tier_multipliers: Tier::ALL.iter().copied().zip(m.into_iter().map(|x| x + Decimal::ONE)).collect(),
        term_discounts: Term::ALL.iter().copied().zip(d).collect(),
        models: models.into_iter().map(|(k, v)| (k.parse::<ModelId>().unwrap(), v)).collect::<BTreeMap<_, _>>(),
        other_currencies: BTreeMap::new(),
    })
}

fn request() -> impl Strategy<Value = QuoteRequest> {
    let tier = prop::sample::select(Tier::ALL.to_vec());
    let term = prop::sample::select(Term::ALL.to_vec());
    // 2000-01-01 .. 2100-01-01, with sub-second parts.
    let start = (946_684_800i64..4_102_444_800, 0u32..1_000_000_000);
    let hourly_end = prop::option::of(1i64..100_000_000);
    (1u32..=2_000_000, tier, term, start, hourly_end).prop_map(|(rate, tier, term, (s, ns), end)| {
        let starts_at: DateTime<Utc> = Utc.timestamp_opt(s, ns).unwrap();
        let ends_at = match term {
            Term::Hourly => end.map(|secs| starts_at + chrono::Duration::seconds(secs)),
            _ => None,
        };
        QuoteRequest {
            model: "smollm2-135m-instruct".parse().unwrap(),
            rate_tokens_per_s: rate,
            tier,
            term,
            starts_at,
            ends_at,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn graduated_total_is_monotone_in_quantity(t in table(TierMode::Graduated, 6), a in quantity(), b in quantity()) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let lo_total = t.price(lo).unwrap().total;
        let hi_total = t.price(hi).unwrap().total;
        prop_assert!(lo_total <= hi_total, "price({lo}) = {lo_total} > price({hi}) = {hi_total}");
    }

    #[test]
    fn lines_add_up_to_the_total_and_the_quantity(t in table(TierMode::Graduated, 6), mode in any_mode(), q in quantity()) {
        let t = TierTable { mode, ..t };
        let c = t.price(q).unwrap();
        prop_assert_eq!(c.lines.iter().map(|l| l.amount).sum::<Decimal>(), c.total);
        let priced: Decimal = c.lines.iter().map(|l| l.quantity).sum();
        prop_assert_eq!(priced, q);
        if mode == TierMode::Volume && !q.is_zero() {
            prop_assert_eq!(c.lines.len(), 1);
        }
        // Every line's quantity lies within its tier.
        for l in &c.lines {
            prop_assert!(l.up_to.is_none_or(|b| l.quantity <= b));
        }
    }

    #[test]
    fn volume_and_graduated_agree_on_a_single_tier(price in decimal(1_000_000, 6), fee in decimal(10_000, 2), q in quantity()) {
        let tiers = vec![PriceTier::open(price).with_flat_fee(fee)];
        let graduated = TierTable { mode: TierMode::Graduated, tiers: tiers.clone() }.price(q).unwrap();
        let volume = TierTable { mode: TierMode::Volume, tiers }.price(q).unwrap();
        prop_assert_eq!(graduated.total, volume.total);
        prop_assert_eq!(graduated.lines, volume.lines);
    }

    #[test]
    fn tokens_are_priced_as_exact_millions(
        t in table(TierMode::Volume, 4),
        tokens in prop_oneof![any::<u64>(), 0u64..10_000_000_000],
    ) {
        let millions = Decimal::from(tokens) / Decimal::from(1_000_000u32);
        // The same answer either way, overflow included (u64::MAX tokens at
        // a high price reach the 10^16 limit).
        prop_assert_eq!(price_tokens(&t, tokens), t.price(millions));
    }

    /// Whatever a table or quantity holds, pricing returns; it never panics.
    #[test]
    fn arbitrary_tables_and_quantities_never_panic(
        tiers in prop::collection::vec((prop::option::of(any_decimal()), any_decimal(), any_decimal()), 0..=6),
        mode in any_mode(),
        q in any_decimal(),
    ) {
        let t = TierTable {
            mode,
            tiers: tiers.into_iter().map(|(up_to, unit_price, flat_fee)| PriceTier { up_to, unit_price, flat_fee }).collect(),
        };
        if let Ok(c) = t.price(q) {
            prop_assert!(t.validate().is_ok());
            prop_assert!(c.total >= Decimal::ZERO);
        }
    }

    #[test]
    fn consecutive_parts_add_up_exactly_to_the_whole(
        // Any total below the 10^16 limit, with up to 12 places.
        mantissa in -9_999_999_999_999_999i64..=9_999_999_999_999_999,
        scale in 0u32..=12,
        period in 1i64..=20_000_000,
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let total = Decimal::new(mantissa, scale);
        let mut points: Vec<i64> = cuts.iter().map(|c| c.index(period as usize + 1) as i64).collect();
        points.extend([0, period]);
        points.sort_unstable();
        let mut sum = Decimal::ZERO;
        for w in points.windows(2) {
            sum += prorate_span(total, period, w[0], w[1]).unwrap();
        }
        prop_assert_eq!(sum, total);
        // The same at a currency's minor unit, for an already rounded total.
        let cents = total.round_dp(2);
        let mut sum = Decimal::ZERO;
        for w in points.windows(2) {
            sum += prorate_span_to_scale(cents, period, w[0], w[1], 2).unwrap();
        }
        prop_assert_eq!(sum, cents);
    }

    #[test]
    fn elapsed_parts_add_up_for_open_ended_contracts(
        per_hour in decimal(100_000_000, 8),
        mut seconds in prop::collection::vec(0i64..=400_000_000, 3),
    ) {
        seconds.sort_unstable();
        let (a, b, c) = (seconds[0], seconds[1], seconds[2]);
        let parts = prorate(per_hour, a).unwrap() + prorate_elapsed(per_hour, a, b).unwrap()
            + prorate_elapsed(per_hour, b, c).unwrap();
        prop_assert_eq!(parts, prorate(per_hour, c).unwrap());
    }

    #[test]
    fn quotes_are_deterministic(req in request()) {
        let catalog = Catalog::builtin_default();
        let first = quote(&catalog, &req).unwrap();
        let again = quote(&catalog, &req).unwrap();
        prop_assert_eq!(&first, &again);
        // Same version re-read from its JSON document: same quote, same bytes.
        let reread: Catalog = serde_json::from_str(&serde_json::to_string(&catalog).unwrap()).unwrap();
        let from_json = quote(&reread, &req).unwrap();
        prop_assert_eq!(serde_json::to_string(&first).unwrap(), serde_json::to_string(&from_json).unwrap());
        // The breakdown is consistent with itself.
        let tier_sum: Decimal = first.rate_tiers.iter().map(|l| l.amount).sum();
        prop_assert_eq!(tier_sum, first.base_price_per_hour);
        prop_assert_eq!(first.price_per_hour,
            first.base_price_per_hour * first.tier_multiplier * (Decimal::ONE - first.term_discount));
        if let Some(total) = first.total_for_term {
            prop_assert_eq!(first.total_for_term_rounded.unwrap(), total.rounded());
        }
    }

    #[test]
    fn catalog_json_round_trip_preserves_every_decimal(c in catalog()) {
        prop_assert!(c.validate().is_ok(), "{:?}", c.validate());
        let json = serde_json::to_string(&c).unwrap();
        let back: Catalog = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &c);
        // Equality of decimals ignores trailing zeros; the text does not.
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}

#[test]
fn the_default_catalog_prices_in_usd() {
    assert_eq!(Catalog::builtin_default().currency, Currency::USD);
    // A sanity anchor for the properties above: 1 token/s standard hourly is 0.01/h.
    let req = QuoteRequest {
        model: "smollm2-135m-instruct".parse().unwrap(),
        rate_tokens_per_s: 1,
        tier: Tier::Standard,
        term: Term::Hourly,
        starts_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        ends_at: None,
    };
    assert_eq!(quote(&Catalog::builtin_default(), &req).unwrap().price_per_hour, dec!(0.01));
}
