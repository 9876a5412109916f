//! Which class a request is served in, decided once on arrival.

use reservoir_domain::PriorityClass;

use crate::Micros;
use crate::bucket::ContractBucket;

/// What the scheduler knows of one of a tenant's active contracts for the model.
#[derive(Debug, Clone)]
pub struct ContractState {
    pub bucket: ContractBucket,
    /// Whether usage above the rate spills over as burst (billed on demand).
    pub allow_burst: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub class: PriorityClass,
    /// Taken from the contract's bucket (to settle when the request ends).
    pub charged_milli: u64,
    /// The contract the request is served under (reserved) or spills over
    /// from (burst), as an index into the contracts given; none for spot.
    pub contract: Option<usize>,
}

/// A request is reserved while its tenant's contract for the model has tokens
/// in its bucket; its estimated cost is taken from that bucket (into debt
/// if need be, see `bucket`). A tenant may hold several active contracts for
/// one model; together they reserve the sum of their rates: the request is
/// reserved under the first contract (in the order given) with tokens, so
/// each contract's demand and delivery stay its own for the SLA. When none
/// has any, it is burst under the first contract that allows spillover, and
/// spot otherwise (no contract, spillover off, or the request asked for
/// spot).
pub fn classify(contracts: &mut [ContractState], cost_milli: u64, wants_spot: bool, now: Micros) -> Admission {
    let spot = Admission { class: PriorityClass::Spot, charged_milli: 0, contract: None };
    if wants_spot {
        return spot;
    }
    if let Some(i) = contracts.iter_mut().position(|c| c.bucket.try_take(cost_milli, now)) {
        return Admission { class: PriorityClass::Reserved, charged_milli: cost_milli, contract: Some(i) };
    }
    match contracts.iter().position(|c| c.allow_burst) {
        Some(i) => Admission { class: PriorityClass::Burst, charged_milli: 0, contract: Some(i) },
        None => spot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(rate: u32, allow_burst: bool) -> ContractState {
        ContractState { bucket: ContractBucket::new(rate, 1, 0), allow_burst }
    }

    fn class_of(contracts: &mut [ContractState], cost: u64, wants_spot: bool) -> PriorityClass {
        classify(contracts, cost, wants_spot, 0).class
    }

    #[test]
    fn within_rate_is_reserved_then_burst_then_spot() {
        let mut c = [contract(10, true)];
        assert_eq!(class_of(&mut c, 6_000, false), PriorityClass::Reserved);
        assert_eq!(class_of(&mut c, 6_000, false), PriorityClass::Reserved, "4 tokens left: still reserved, into debt");
        assert_eq!(class_of(&mut c, 1, false), PriorityClass::Burst, "in debt: over the rate");
        let mut strict = [contract(10, false)];
        assert_eq!(class_of(&mut strict, 20_000, false), PriorityClass::Reserved);
        assert_eq!(class_of(&mut strict, 1, false), PriorityClass::Spot, "over the rate, spillover off");
        assert_eq!(class_of(&mut [], 1, false), PriorityClass::Spot, "no contract");
        assert_eq!(class_of(&mut [contract(10, true)], 1, true), PriorityClass::Spot, "asked for flex");
    }

    #[test]
    fn a_request_not_served_as_reserved_takes_nothing_from_the_bucket() {
        let mut c = [contract(10, true)];
        assert_eq!(class_of(&mut c, 10_000, false), PriorityClass::Reserved);
        assert_eq!(c[0].bucket.level_milli(0), 0);
        assert_eq!(
            classify(&mut c, 5_000, false, 0),
            Admission { class: PriorityClass::Burst, charged_milli: 0, contract: Some(0) }
        );
        assert_eq!(c[0].bucket.level_milli(0), 0, "burst is billed on demand, not taken from the bucket");
        assert_eq!(classify(&mut c, 5_000, true, 0).contract, None);
    }

    #[test]
    fn several_contracts_reserve_the_sum_of_their_rates() {
        // 10 + 5 tokens/s with 1 s windows: 15 tokens reserved now.
        let mut c = [contract(10, false), contract(5, true)];
        let first = classify(&mut c, 8_000, false, 0);
        assert_eq!((first.class, first.contract), (PriorityClass::Reserved, Some(0)));
        // 2 tokens left in the first bucket: it takes the next request too, into debt.
        let second = classify(&mut c, 4_000, false, 0);
        assert_eq!((second.class, second.contract, second.charged_milli), (PriorityClass::Reserved, Some(0), 4_000));
        // The first is in debt: the second contract serves.
        let third = classify(&mut c, 6_000, false, 0);
        assert_eq!((third.class, third.contract), (PriorityClass::Reserved, Some(1)));
        // Both in debt: burst under the one that allows it.
        let over = classify(&mut c, 3_000, false, 0);
        assert_eq!((over.class, over.contract, over.charged_milli), (PriorityClass::Burst, Some(1), 0));
        // One second later both have tokens again (10 - 2 and 5 - 1).
        assert_eq!(classify(&mut c, 9_000, false, crate::MICROS_PER_S).contract, Some(0));
        assert_eq!(classify(&mut c, 5_000, false, crate::MICROS_PER_S).contract, Some(1));
        assert_eq!(classify(&mut c, 1, false, crate::MICROS_PER_S).class, PriorityClass::Burst);
    }
}
