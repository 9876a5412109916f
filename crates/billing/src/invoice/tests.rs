//! Hand-computed invoices: the arithmetic of each is written beside it.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use reservoir_domain::{Currency, ModelId, Period, Term, Tier};
use reservoir_pricing::{Catalog, ModelPrices, PriceTier, ReservationTerms, TierMode, TierTable};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use uuid::Uuid;

use super::*;
use crate::{ContractInput, CreditInput, LateUsage, UsageInput};

const MODEL: &str = "smollm2-135m-instruct";

fn model() -> ModelId {
    MODEL.parse().unwrap()
}

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn period(s: &str) -> Period {
    s.parse().unwrap()
}

fn currency(code: &str) -> Currency {
    code.parse().unwrap()
}

/// Version 1 is the built-in USD catalog (on-demand graduated 100 M @ 0.20,
/// 1000 M @ 0.15, open @ 0.10; spot volume 1000 M @ 0.05, open @ 0.04).
/// Version 2 raises on-demand's first tier to 0.30 and adds JPY and BHD
/// price lists with one-tier tables.
fn catalogs() -> BTreeMap<i64, Catalog> {
    let v1 = Catalog::builtin_default();
    let mut prices = ModelPrices::builtin_default();
    prices.on_demand_per_million.tiers[0].unit_price = dec!(0.30);
    let v2 = v1.with_model_prices(model(), prices).unwrap();
    let one_tier = |on_demand: Decimal, spot: Decimal| ModelPrices {
        reservation: TierTable { mode: TierMode::Graduated, tiers: vec![PriceTier::open(on_demand)] },
        on_demand_per_million: TierTable { mode: TierMode::Graduated, tiers: vec![PriceTier::open(on_demand)] },
        spot_per_million: TierTable { mode: TierMode::Volume, tiers: vec![PriceTier::open(spot)] },
    };
    let v3 = v2.with_model_prices_in(model(), currency("JPY"), one_tier(dec!(5), dec!(1))).unwrap();
    let v4 = v3.with_model_prices_in(model(), currency("BHD"), one_tier(dec!(0.065), dec!(0.075))).unwrap();
    [v1, v2, v3, v4].into_iter().map(|c| (c.version, c)).collect()
}

fn burst(millions: Decimal, version: i64) -> UsageInput {
    UsageInput {
        class: UsageClass::Burst,
        model: model(),
        catalog_version: version,
        contract: Some(Uuid::from_u128(7)),
        weighted_tokens: millions * dec!(1000000),
    }
}

fn spot(tokens: Decimal, version: i64) -> UsageInput {
    UsageInput {
        class: UsageClass::Spot,
        model: model(),
        catalog_version: version,
        contract: None,
        weighted_tokens: tokens,
    }
}

fn billed(usage: UsageInput, amount_exact: Decimal) -> crate::BilledUsage {
    crate::BilledUsage { usage, amount_exact }
}

fn hourly(id: u128, per_hour: Decimal, starts: DateTime<Utc>, cancelled: Option<DateTime<Utc>>) -> ContractInput {
    ContractInput {
        id: Uuid::from_u128(id),
        model: model(),
        tier: Tier::Standard,
        rate_tokens_per_s: 100,
        catalog_version: 1,
        terms: ReservationTerms {
            term: Term::Hourly,
            currency: Currency::USD,
            price_per_hour: per_hour,
            total_for_term: None,
            starts_at: starts,
            ends_at: None,
            cancelled_at: cancelled,
        },
    }
}

fn input<'a>(catalogs: &'a BTreeMap<i64, Catalog>, month: &str) -> InvoiceInput<'a> {
    InvoiceInput {
        currency: Currency::USD,
        period: period(month),
        contracts: Vec::new(),
        usage: Vec::new(),
        usage_billed_elsewhere: Vec::new(),
        credits: Vec::new(),
        late: Vec::new(),
        credit_balance: Decimal::ZERO,
        catalogs,
    }
}

fn amounts(draft: &Draft) -> Vec<(LineKind, String)> {
    draft.lines.iter().map(|l| (l.kind, l.amount.to_string())).collect()
}

#[test]
fn burst_is_graduated_across_three_tiers() {
    // 1,500 M weighted tokens: 100 x 0.20 + 900 x 0.15 + 500 x 0.10
    //                        = 20 + 135 + 50 = 205.00
    let c = catalogs();
    let mut i = input(&c, "2026-11");
    i.usage = vec![burst(dec!(1500), 1)];
    let d = rate_invoice(&i).unwrap();
    assert_eq!(amounts(&d), vec![(LineKind::Burst, "205.00".into())]);
    let tiers: Vec<(usize, String)> = d.lines[0].tiers.iter().map(|t| (t.tier_index, t.amount.to_string())).collect();
    assert_eq!(tiers, vec![(0, "20".into()), (1, "135".into()), (2, "50".into())]);
    assert_eq!(d.total.to_string(), "205.00");
}

#[test]
fn burst_under_two_catalog_versions_shares_the_month_tiers() {
    // v1: 80 M, all in tier 1 at 0.20 = 16.00
    // v2: the next 50 M: 20 left in tier 1 at v2's 0.30 = 6, 30 in tier 2 at 0.15 = 4.50 -> 10.50
    let c = catalogs();
    let mut i = input(&c, "2026-11");
    i.usage = vec![burst(dec!(50), 2), burst(dec!(80), 1)];
    let d = rate_invoice(&i).unwrap();
    assert_eq!(amounts(&d), vec![(LineKind::Burst, "16.00".into()), (LineKind::Burst, "10.50".into())]);
    assert_eq!(d.lines[1].catalog_version, Some(2));
    assert_eq!(d.total, dec!(26.50));
}

#[test]
fn spot_volume_exactly_at_a_boundary_stays_in_the_lower_tier() {
    // 1,000 M tokens: the bound is inclusive, 1000 x 0.05 = 50.00.
    // 1,000,000,001 tokens = 1000.000001 M: all at 0.04 = 40.00000004 -> 40.00.
    let c = catalogs();
    let mut i = input(&c, "2026-11");
    i.usage = vec![spot(dec!(1000000000), 1)];
    assert_eq!(rate_invoice(&i).unwrap().total.to_string(), "50.00");
    i.usage = vec![spot(dec!(1000000001), 1)];
    let d = rate_invoice(&i).unwrap();
    assert_eq!(d.lines[0].amount_exact, dec!(40.00000004));
    assert_eq!(d.total.to_string(), "40.00");
}

#[test]
fn hourly_contracts_prorate_over_months_of_every_length() {
    // 0.36 per hour, active all month:
    // Feb 2026: 28 x 24 = 672 h -> 241.92; Feb 2028: 29 x 24 = 696 h -> 250.56
    // Nov 2026: 30 x 24 = 720 h -> 259.20; Dec 2026: 31 x 24 = 744 h -> 267.84
    let c = catalogs();
    for (month, seconds, amount) in [
        ("2026-02", 672 * 3600, "241.92"),
        ("2028-02", 696 * 3600, "250.56"),
        ("2026-11", 720 * 3600, "259.20"),
        ("2026-12", 744 * 3600, "267.84"),
    ] {
        let mut i = input(&c, month);
        i.contracts = vec![hourly(1, dec!(0.36), at(2025, 6, 1, 0), None)];
        let d = rate_invoice(&i).unwrap();
        assert_eq!(amounts(&d), vec![(LineKind::Reservation, amount.to_owned())], "{month}");
        assert_eq!(d.lines[0].quantity, Decimal::from(seconds), "{month}");
    }
}

#[test]
fn a_month_term_across_february_splits_by_seconds() {
    // 2026-02-15 .. 2026-03-15 is 28 days, 14 in each month; total 672.00.
    // February: 672 x 14/28 = 336.00, March the other 336.00.
    let c = catalogs();
    let mut contract = hourly(2, dec!(1), at(2026, 2, 15, 0), None);
    contract.terms.term = Term::Month;
    contract.terms.ends_at = Some(at(2026, 3, 15, 0));
    contract.terms.total_for_term = Some(dec!(672));
    for month in ["2026-02", "2026-03"] {
        let mut i = input(&c, month);
        i.contracts = vec![contract.clone()];
        assert_eq!(rate_invoice(&i).unwrap().total.to_string(), "336.00", "{month}");
    }
    // A month term bills its commitment even with no usage, and nothing
    // outside its term.
    let mut i = input(&c, "2026-04");
    i.contracts = vec![contract];
    assert!(rate_invoice(&i).unwrap().lines.is_empty());
}

#[test]
fn a_contract_cancelled_mid_period_bills_until_the_cancellation() {
    // From 2026-11-01 to its cancellation on 2026-11-11: 240 h x 0.36 = 86.40.
    let c = catalogs();
    let mut i = input(&c, "2026-11");
    i.contracts = vec![hourly(3, dec!(0.36), at(2026, 11, 1, 0), Some(at(2026, 11, 11, 0)))];
    let d = rate_invoice(&i).unwrap();
    assert_eq!(amounts(&d), vec![(LineKind::Reservation, "86.40".into())]);
    assert_eq!((d.lines[0].usage_from, d.lines[0].usage_to), (at(2026, 11, 1, 0), at(2026, 11, 11, 0)));
}

#[test]
fn yen_and_dinar_round_half_even_at_their_minor_units() {
    let c = catalogs();
    // JPY, no minor unit: 0.5 M at 5 yen = 2.5 -> 2 (half to even);
    //                     0.7 M at 5 yen = 3.5 -> 4.
    let mut i = input(&c, "2026-11");
    i.currency = currency("JPY");
    i.usage = vec![burst(dec!(0.5), 3)];
    let d = rate_invoice(&i).unwrap();
    assert_eq!((d.lines[0].amount_exact, d.total.to_string()), (dec!(2.5), "2".to_owned()));
    i.usage = vec![burst(dec!(0.7), 3)];
    assert_eq!(rate_invoice(&i).unwrap().total.to_string(), "4");
    // BHD, three places: 0.1 M at 0.065 = 0.0065 -> 0.006 (half to even);
    //                    0.1 M spot at 0.075 = 0.0075 -> 0.008.
    i.currency = currency("BHD");
    i.usage = vec![burst(dec!(0.1), 4), spot(dec!(100000), 4)];
    let d = rate_invoice(&i).unwrap();
    assert_eq!(amounts(&d), vec![(LineKind::Burst, "0.006".into()), (LineKind::Spot, "0.008".into())]);
    assert_eq!(d.total.to_string(), "0.014");
    // A tenant whose currency the catalog version does not price is refused.
    i.usage = vec![burst(dec!(0.1), 1)];
    assert!(rate_invoice(&i).unwrap_err().to_string().contains("no prices in BHD"));
}

#[test]
fn a_credit_larger_than_the_invoice_is_carried_to_the_next() {
    // November: fee 86.40 (see above), SLA credit 100.00:
    //   subtotal 86.40 - 100.00 = -13.60, carried +13.60, total 0.00.
    let c = catalogs();
    let mut nov = input(&c, "2026-11");
    nov.contracts = vec![hourly(3, dec!(0.36), at(2026, 11, 1, 0), Some(at(2026, 11, 11, 0)))];
    let credit = Uuid::from_u128(99);
    nov.credits =
        vec![CreditInput { id: credit, contract: Uuid::from_u128(3), period: period("2026-11"), amount: dec!(100) }];
    let d = rate_invoice(&nov).unwrap();
    assert_eq!(
        amounts(&d),
        vec![
            (LineKind::Reservation, "86.40".into()),
            (LineKind::SlaCredit, "-100.00".into()),
            (LineKind::CreditCarried, "13.60".into())
        ]
    );
    assert_eq!(d.lines[1].source, Some(format!("sla_credit:{credit}")));
    assert_eq!((d.subtotal, d.total.to_string(), d.credit_balance_after), (dec!(-13.60), "0.00".into(), dec!(13.60)));
    // December: 50 M of burst at 0.20 = 10.00; the balance of 13.60 takes
    // all of it, 3.60 stays.
    let mut dec_ = input(&c, "2026-12");
    dec_.usage = vec![burst(dec!(50), 1)];
    dec_.credit_balance = d.credit_balance_after;
    let d = rate_invoice(&dec_).unwrap();
    assert_eq!(amounts(&d), vec![(LineKind::Burst, "10.00".into()), (LineKind::CreditApplied, "-10.00".into())]);
    assert_eq!((d.total.to_string(), d.credit_balance_after), ("0.00".into(), dec!(3.60)));
}

#[test]
fn late_usage_is_priced_where_the_month_now_stands() {
    // October billed 100 M of burst (100 x 0.20 = 20.00). 50 M more arrived
    // after: they fall in tier 2, 50 x 0.15 = 7.50 on November's invoice.
    let c = catalogs();
    let mut i = input(&c, "2026-11");
    i.late = vec![LateUsage {
        period: period("2026-10"),
        billed: vec![billed(burst(dec!(100), 1), dec!(20))],
        now: vec![burst(dec!(150), 1)],
    }];
    let d = rate_invoice(&i).unwrap();
    assert_eq!(amounts(&d), vec![(LineKind::LateUsage, "7.50".into())]);
    let line = &d.lines[0];
    assert_eq!((line.quantity, line.usage_from), (dec!(50), at(2026, 10, 1, 0)));
    assert!(line.description.starts_with("Late usage of 2026-10"), "{}", line.description);
    // Nothing changed: no line.
    i.late[0].now = vec![burst(dec!(100), 1)];
    assert!(rate_invoice(&i).unwrap().lines.is_empty());
    // October invoiced only now, after November took 50 M of it as late
    // usage: October bills the rest, 150 M priced 100 x 0.20 + 50 x 0.15 =
    // 27.50, minus the 7.50 November billed: 20.00.
    let mut oct = input(&c, "2026-10");
    oct.usage = vec![burst(dec!(150), 1)];
    oct.usage_billed_elsewhere = vec![billed(burst(dec!(50), 1), dec!(7.50))];
    let d = rate_invoice(&oct).unwrap();
    assert_eq!(amounts(&d), vec![(LineKind::Burst, "20.00".into())]);
    // Late usage of the invoiced month itself is refused.
    i.late[0].period = period("2026-11");
    assert!(rate_invoice(&i).is_err());
}

/// Usage (class, tokens, version), hourly contracts (id, cents per hour,
/// start day), credits in cents, credit balance in cents, currency.
type RawInput = (Vec<(u8, u64, i64)>, Vec<(u128, u32, u32)>, Vec<u32>, u32, u8);

fn arbitrary_input() -> impl Strategy<Value = RawInput> {
    (
        // usage: class, tokens, version
        proptest::collection::vec((0u8..2, 0u64..3_000_000_000_000, 1i64..3), 0..8),
        // hourly contracts: id, price per hour in cents, start day
        proptest::collection::vec((1u128..1000, 0u32..100_000, 1u32..40), 0..4),
        // credits in cents
        proptest::collection::vec(1u32..2_000_000, 0..3),
        // credit balance in cents
        0u32..5_000_000,
        // currency
        0u8..4,
    )
}

fn build<'a>(c: &'a BTreeMap<i64, Catalog>, (usage, contracts, credits, balance, cur): &RawInput) -> InvoiceInput<'a> {
    let (code, version) = [("USD", 0), ("JPY", 3), ("BHD", 4), ("USD", 0)][usize::from(*cur)];
    let mut i = input(c, "2026-11");
    i.currency = currency(code);
    i.usage = usage
        .iter()
        .map(|(class, tokens, v)| {
            let mut u = if *class == 0 { burst(Decimal::ZERO, *v) } else { spot(Decimal::ZERO, *v) };
            u.weighted_tokens = Decimal::from(*tokens);
            u.catalog_version = if version > 0 { version } else { *v };
            u
        })
        .collect();
    i.contracts = contracts
        .iter()
        .map(|(id, cents, day)| {
            let mut contract = hourly(
                *id,
                Decimal::new(i64::from(*cents), 2),
                at(2026, 10, 1, 0) + chrono::TimeDelta::days(i64::from(*day)),
                None,
            );
            contract.terms.currency = i.currency;
            contract
        })
        .collect();
    i.credits = credits
        .iter()
        .enumerate()
        .map(|(n, cents)| CreditInput {
            id: Uuid::from_u128(n as u128 + 1),
            contract: Uuid::from_u128(1),
            period: period("2026-11"),
            amount: rounded_to_minor_unit(Decimal::new(i64::from(*cents), 2), i.currency).max(Decimal::ONE),
        })
        .collect();
    i.credit_balance = rounded_to_minor_unit(Decimal::new(i64::from(*balance), 2), i.currency);
    i
}

proptest! {
    /// The total is the sum of the rounded lines, every line is rounded to
    /// the minor unit, the total is never negative, and credit is neither
    /// made nor lost.
    #[test]
    fn totals_are_sums_of_rounded_lines(raw in arbitrary_input()) {
        let c = catalogs();
        let i = build(&c, &raw);
        let d = rate_invoice(&i).unwrap();
        let digits = i.currency.minor_unit_digits();
        let sum: Decimal = d.lines.iter().map(|l| l.amount).sum();
        prop_assert_eq!(d.total, sum);
        prop_assert!(d.total >= Decimal::ZERO);
        for line in &d.lines {
            prop_assert_eq!(line.amount.scale(), digits);
            prop_assert_eq!(line.amount, rounded_to_minor_unit(line.amount_exact, i.currency));
        }
        let applied: Decimal = d.lines.iter().filter(|l| l.kind == LineKind::CreditApplied).map(|l| -l.amount).sum();
        let carried: Decimal = d.lines.iter().filter(|l| l.kind == LineKind::CreditCarried).map(|l| l.amount).sum();
        prop_assert_eq!(d.credit_balance_after, i.credit_balance - applied + carried);
        prop_assert!(d.credit_balance_after >= Decimal::ZERO);
    }

    /// Recomputing a draft from the same inputs, in any order, gives the
    /// same bytes.
    #[test]
    fn recomputing_gives_identical_bytes(raw in arbitrary_input(), seed in any::<u64>()) {
        let c = catalogs();
        let i = build(&c, &raw);
        let first = serde_json::to_vec(&rate_invoice(&i).unwrap()).unwrap();
        let mut shuffled = i.clone();
        let n = shuffled.usage.len().max(1);
        shuffled.usage.rotate_left((seed as usize) % n);
        shuffled.usage.reverse();
        shuffled.contracts.reverse();
        shuffled.credits.reverse();
        let second = serde_json::to_vec(&rate_invoice(&shuffled).unwrap()).unwrap();
        prop_assert_eq!(first, second);
    }
}
