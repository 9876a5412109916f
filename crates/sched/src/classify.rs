//! Which class a request is served in, decided once on arrival.

use reservoir_domain::PriorityClass;

use crate::Micros;
use crate::bucket::ContractBucket;

/// What the scheduler knows of a tenant's active contract for the model.
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
}

/// Reserved while the contract's bucket holds the estimated cost; burst when
/// a contract holder is over its rate and allows spillover; spot otherwise
/// (no contract, spillover off, or the request asked for spot).
pub fn classify(contract: Option<&mut ContractState>, cost_milli: u64, wants_spot: bool, now: Micros) -> Admission {
    let spot = Admission { class: PriorityClass::Spot, charged_milli: 0 };
    if wants_spot {
        return spot;
    }
    let Some(contract) = contract else { return spot };
    if contract.bucket.try_take(cost_milli, now) {
        return Admission { class: PriorityClass::Reserved, charged_milli: cost_milli };
    }
    if contract.allow_burst { Admission { class: PriorityClass::Burst, charged_milli: 0 } } else { spot }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(rate: u32, allow_burst: bool) -> ContractState {
        ContractState { bucket: ContractBucket::new(rate, 1, 0), allow_burst }
    }

    #[test]
    fn within_rate_is_reserved_then_burst_then_spot() {
        let mut c = contract(10, true);
        assert_eq!(classify(Some(&mut c), 6_000, false, 0).class, PriorityClass::Reserved);
        assert_eq!(classify(Some(&mut c), 6_000, false, 0).class, PriorityClass::Burst, "over the rate");
        let mut strict = contract(10, false);
        assert_eq!(classify(Some(&mut strict), 20_000, false, 0).class, PriorityClass::Spot);
        assert_eq!(classify(None, 1, false, 0).class, PriorityClass::Spot, "no contract");
        assert_eq!(classify(Some(&mut contract(10, true)), 1, true, 0).class, PriorityClass::Spot, "asked for flex");
    }

    #[test]
    fn a_refused_request_takes_nothing_from_the_bucket() {
        let mut c = contract(10, true);
        assert_eq!(classify(Some(&mut c), 11_000, false, 0).class, PriorityClass::Burst);
        assert_eq!(classify(Some(&mut c), 10_000, false, 0), Admission { class: PriorityClass::Reserved, charged_milli: 10_000 });
    }
}
