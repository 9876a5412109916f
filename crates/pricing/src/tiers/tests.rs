use super::*;
use rust_decimal_macros::dec;

/// The built-in reservation table: 100 @ 0.0100, 1000 @ 0.0090, open @ 0.0080.
fn reservation() -> TierTable {
    TierTable::graduated(vec![
        PriceTier::up_to(dec!(100), dec!(0.0100)),
        PriceTier::up_to(dec!(1000), dec!(0.0090)),
        PriceTier::open(dec!(0.0080)),
    ])
    .unwrap()
}

/// The built-in spot table: 1000 @ 0.05, open @ 0.04 (volume).
fn spot() -> TierTable {
    TierTable::volume(vec![PriceTier::up_to(dec!(1000), dec!(0.05)), PriceTier::open(dec!(0.04))]).unwrap()
}

fn amounts(charge: &TieredCharge) -> Vec<(usize, Decimal, Decimal)> {
    charge.lines.iter().map(|l| (l.tier_index, l.quantity, l.amount)).collect()
}

#[test]
fn graduated_inside_the_first_tier() {
    // 50 x 0.0100 = 0.5
    let c = reservation().price(dec!(50)).unwrap();
    assert_eq!(amounts(&c), vec![(0, dec!(50), dec!(0.5))]);
    assert_eq!(c.total, dec!(0.5));
}

#[test]
fn graduated_exactly_at_a_bound_stays_in_that_tier() {
    // 100 x 0.0100 = 1.00; tier 1 is not entered.
    let c = reservation().price(dec!(100)).unwrap();
    assert_eq!(amounts(&c), vec![(0, dec!(100), dec!(1))]);
    // 100 x 0.0100 + 900 x 0.0090 = 1 + 8.1 = 9.1; tier 2 is not entered.
    let c = reservation().price(dec!(1000)).unwrap();
    assert_eq!(amounts(&c), vec![(0, dec!(100), dec!(1)), (1, dec!(900), dec!(8.1))]);
    assert_eq!(c.total, dec!(9.1));
}

#[test]
fn graduated_just_above_a_bound_enters_the_next_tier() {
    // 100 x 0.0100 + 1 x 0.0090 = 1.009
    let c = reservation().price(dec!(101)).unwrap();
    assert_eq!(amounts(&c), vec![(0, dec!(100), dec!(1)), (1, dec!(1), dec!(0.009))]);
    assert_eq!(c.total, dec!(1.009));
    // Fractional: 100 x 0.0100 + 0.5 x 0.0090 = 1 + 0.0045 = 1.0045
    assert_eq!(reservation().price(dec!(100.5)).unwrap().total, dec!(1.0045));
    // Smallest step above the bound: 0.000000000001 x 0.0090 = 9e-15, which
    // rounds to 0 at 12 places; the tier is still entered (a line of 0).
    let c = reservation().price(dec!(100.000000000001)).unwrap();
    assert_eq!(c.lines.len(), 2);
    assert_eq!(c.total, dec!(1));
}

#[test]
fn graduated_across_all_tiers() {
    // 100 x 0.0100 + 900 x 0.0090 + 500 x 0.0080 = 1 + 8.1 + 4 = 13.1
    let c = reservation().price(dec!(1500)).unwrap();
    assert_eq!(amounts(&c), vec![(0, dec!(100), dec!(1)), (1, dec!(900), dec!(8.1)), (2, dec!(500), dec!(4))]);
    assert_eq!(c.total, dec!(13.1));
    assert_eq!(c.lines[2].up_to, None);
}

#[test]
fn graduated_flat_fees_are_charged_once_per_tier_entered() {
    let table = TierTable::graduated(vec![
        PriceTier::up_to(dec!(10), dec!(1)).with_flat_fee(dec!(5)),
        PriceTier::open(dec!(0.5)).with_flat_fee(dec!(20)),
    ])
    .unwrap();
    // 10 x 1 + 5 = 15; tier 1 not entered, its fee not charged.
    assert_eq!(table.price(dec!(10)).unwrap().total, dec!(15));
    // 15 + (1 x 0.5 + 20) = 35.5
    assert_eq!(table.price(dec!(11)).unwrap().total, dec!(35.5));
    // 0.1 x 1 + 5 = 5.1
    assert_eq!(table.price(dec!(0.1)).unwrap().total, dec!(5.1));
    // Zero enters no tier: no fee at all.
    let zero = table.price(dec!(0)).unwrap();
    assert_eq!(zero.total, dec!(0));
    assert!(zero.lines.is_empty());
}

#[test]
fn volume_prices_all_units_at_the_tier_of_the_total() {
    // At the bound: 1000 x 0.05 = 50
    let c = spot().price(dec!(1000)).unwrap();
    assert_eq!(amounts(&c), vec![(0, dec!(1000), dec!(50))]);
    // Just above: 1001 x 0.04 = 40.04 (the volume cliff)
    let c = spot().price(dec!(1001)).unwrap();
    assert_eq!(amounts(&c), vec![(1, dec!(1001), dec!(40.04))]);
    // 2.5 x 0.05 = 0.125
    assert_eq!(spot().price(dec!(2.5)).unwrap().total, dec!(0.125));
}

#[test]
fn volume_adds_the_flat_fee_of_its_tier_only() {
    let table = TierTable::volume(vec![
        PriceTier::up_to(dec!(10), dec!(2)).with_flat_fee(dec!(3)),
        PriceTier::open(dec!(1)).with_flat_fee(dec!(7)),
    ])
    .unwrap();
    // 10 x 2 + 3 = 23
    assert_eq!(table.price(dec!(10)).unwrap().total, dec!(23));
    // 10.5 x 1 + 7 = 17.5
    assert_eq!(table.price(dec!(10.5)).unwrap().total, dec!(17.5));
    // Zero charges nothing, not even the first tier's fee (see module docs).
    let zero = table.price(dec!(0)).unwrap();
    assert_eq!((zero.total, zero.lines.len()), (dec!(0), 0));
    assert_eq!(table.price(dec!(-0)).unwrap().quantity.to_string(), "0");
}

#[test]
fn huge_quantities_are_errors_not_panics() {
    let open = |mode| TierTable { mode, tiers: vec![PriceTier::open(dec!(2))] };
    for mode in [TierMode::Graduated, TierMode::Volume] {
        // Beyond the limit (and beyond what Decimal multiplies): refused.
        let err = open(mode).price(Decimal::MAX).unwrap_err();
        assert!(err.to_string().ends_with("must be below 10^16"), "{err}");
        // 6e15 x 2 = 1.2e16 reaches the limit: overflow.
        assert_eq!(open(mode).price(dec!(6000000000000000)), Err(PricingError::Overflow { what: "tier amount" }));
        // 4e15 x 2 = 8e15 is fine, and exact.
        assert_eq!(open(mode).price(dec!(4000000000000000)).unwrap().total, dec!(8000000000000000));
    }
    // Each line fits, their sum does not: 6e15 x 1 + 3e15 x 2 = 1.2e16.
    let table = TierTable::graduated(vec![PriceTier::up_to(dec!(6000000000000000), dec!(1)), PriceTier::open(dec!(2))])
        .unwrap();
    assert_eq!(table.price(dec!(9000000000000000)), Err(PricingError::Overflow { what: "tiered total" }));
    // A flat fee near the limit: 9.9e15 + 1e15 x 1 overflows.
    let fee = dec!(9900000000000000);
    let table = TierTable::graduated(vec![PriceTier::open(dec!(1)).with_flat_fee(fee)]).unwrap();
    assert!(matches!(table.price(dec!(1000000000000000)), Err(PricingError::Overflow { .. })));
}

#[test]
fn tokens_are_priced_in_exact_millions() {
    let on_demand = TierTable::graduated(vec![
        PriceTier::up_to(dec!(100), dec!(0.20)),
        PriceTier::up_to(dec!(1000), dec!(0.15)),
        PriceTier::open(dec!(0.10)),
    ])
    .unwrap();
    // 1 token = 0.000001 M x 0.20 = 0.0000002
    let c = price_tokens(&on_demand, 1).unwrap();
    assert_eq!(price_tokens(&on_demand, 150_000_000).unwrap().quantity.to_string(), "150");
    assert_eq!((c.quantity, c.total), (dec!(0.000001), dec!(0.0000002)));
    // 150,000,000 tokens = 150 M: 100 x 0.20 + 50 x 0.15 = 20 + 7.5 = 27.5
    assert_eq!(price_tokens(&on_demand, 150_000_000).unwrap().total, dec!(27.5));
    // u64::MAX tokens = 18446744073709.551615 M:
    // 20 + 900 x 0.15 + (18446744073709.551615 - 1000) x 0.10
    // = 20 + 135 + 1844674407270.9551615 = 1844674407425.9551615
    let c = price_tokens(&on_demand, u64::MAX).unwrap();
    assert_eq!(c.total, dec!(1844674407425.9551615));
    assert_eq!(price_tokens(&on_demand, 0).unwrap().total, dec!(0));
}

fn table_error(mode: TierMode, tiers: Vec<PriceTier>) -> String {
    match (TierTable { mode, tiers }).validate() {
        Err(PricingError::InvalidTable { reason }) => reason,
        other => panic!("expected an invalid table, got {other:?}"),
    }
}

#[test]
fn invalid_tables_are_refused_with_the_offending_tier() {
    let g = TierMode::Graduated;
    assert!(table_error(g, vec![]).contains("at least one tier"));
    let many = vec![PriceTier::open(dec!(1)); TIERS_MAX + 1];
    assert!(table_error(g, many).contains("at most 32"));
    let open_middle = vec![PriceTier::open(dec!(1)), PriceTier::open(dec!(1))];
    assert!(table_error(g, open_middle).contains("tiers[0] has no up_to"));
    let closed_last = vec![PriceTier::up_to(dec!(10), dec!(1))];
    assert!(table_error(g, closed_last).contains("must be open"));
    let equal =
        vec![PriceTier::up_to(dec!(10), dec!(1)), PriceTier::up_to(dec!(10.0), dec!(1)), PriceTier::open(dec!(1))];
    assert!(table_error(g, equal).contains("tiers[1].up_to (10.0) must be greater than tiers[0].up_to (10)"));
    let decreasing =
        vec![PriceTier::up_to(dec!(10), dec!(1)), PriceTier::up_to(dec!(5), dec!(1)), PriceTier::open(dec!(1))];
    assert!(table_error(g, decreasing).contains("tiers[1].up_to"));
    let zero_bound = vec![PriceTier::up_to(dec!(0), dec!(1)), PriceTier::open(dec!(1))];
    assert!(table_error(g, zero_bound).contains("greater than 0"));
    let negative_price = vec![PriceTier::open(dec!(-0.01))];
    assert!(table_error(TierMode::Volume, negative_price).contains("tiers[0].unit_price must not be negative"));
    let negative_fee = vec![PriceTier::open(dec!(1)).with_flat_fee(dec!(-1))];
    assert!(table_error(g, negative_fee).contains("tiers[0].flat_fee must not be negative"));
    let too_precise = vec![PriceTier::open(dec!(0.0000000000001))];
    assert!(table_error(g, too_precise).contains("more than 12 decimal places"));
    let too_big = vec![PriceTier::open(Decimal::MAX)];
    assert!(
        table_error(g, too_big).contains("tiers[0].unit_price (79228162514264337593543950335) must be below 10^16")
    );
    // A negative zero price is a zero price.
    assert!(TierTable::graduated(vec![PriceTier::open(dec!(-0))]).is_ok());
}

#[test]
fn pricing_refuses_invalid_tables_and_quantities() {
    let bad = TierTable { mode: TierMode::Volume, tiers: vec![] };
    assert!(matches!(bad.price(dec!(1)), Err(PricingError::InvalidTable { .. })));
    let err = reservation().price(dec!(-1)).unwrap_err();
    assert_eq!(err.to_string(), "invalid quantity -1: must not be negative");
    let err = reservation().price(dec!(0.0000000000001)).unwrap_err();
    assert!(err.to_string().contains("more than 12 decimal places"), "{err}");
}

#[test]
fn slices_move_up_a_graduated_table_and_add_up_to_the_whole() {
    // 80 units already used this month, then 50 more: 20 left in the first
    // tier (20 x 0.0100 = 0.2) and 30 in the second (30 x 0.0090 = 0.27).
    let table = reservation();
    let slice = table.price_slice(dec!(80), dec!(50)).unwrap();
    assert_eq!(amounts(&slice), vec![(0, dec!(20), dec!(0.2)), (1, dec!(30), dec!(0.27))]);
    assert_eq!(slice.total, dec!(0.47));
    // price(80) + slice(80, 50) = price(130)
    assert_eq!(table.price(dec!(80)).unwrap().total + slice.total, table.price(dec!(130)).unwrap().total);
    // A slice starting past the first tier never touches it.
    let later = table.price_slice(dec!(1000), dec!(1)).unwrap();
    assert_eq!(amounts(&later), vec![(2, dec!(1), dec!(0.008))]);
    // Flat fees are charged by the slice that enters their tier, once.
    let fees = TierTable::graduated(vec![
        PriceTier::up_to(dec!(10), dec!(1)),
        PriceTier::open(dec!(0.5)).with_flat_fee(dec!(7)),
    ])
    .unwrap();
    assert_eq!(fees.price_slice(dec!(5), dec!(10)).unwrap().total, dec!(5) + dec!(2.5) + dec!(7));
    assert_eq!(fees.price_slice(dec!(15), dec!(10)).unwrap().total, dec!(5));
    assert!(spot().price_slice(dec!(0), dec!(1)).is_err());
}

#[test]
fn a_volume_tier_is_chosen_by_the_month_total() {
    // 400 of a month of 1500 units: the month falls in the open tier, so
    // 400 x 0.04 = 16.
    let part = spot().price_at_volume(dec!(400), dec!(1500), false).unwrap();
    assert_eq!(amounts(&part), vec![(1, dec!(400), dec!(16))]);
    // Exactly at the bound (1000) the first tier applies: 1000 x 0.05 = 50.
    assert_eq!(spot().price_at_volume(dec!(1000), dec!(1000), true).unwrap().total, dec!(50));
    assert!(spot().price_at_volume(dec!(2), dec!(1), true).is_err());
    assert!(reservation().price_at_volume(dec!(1), dec!(1), true).is_err());
}

#[test]
fn tokens_become_millions_without_division() {
    assert_eq!(millions_of(dec!(1500000)).unwrap(), dec!(1.5));
    assert_eq!(millions_of(dec!(2.25)).unwrap(), dec!(0.00000225));
    assert!(millions_of(dec!(0.0000001)).is_err());
}
