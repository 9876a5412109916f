//! Fair share within a class: virtual token counters (VTC, "Fairness in
//! Serving Large Language Models", OSDI 2024). Each tenant's counter grows by
//! the weighted tokens it is served; the backlogged tenant with the smallest
//! counter goes next. A tenant that returns after being idle is lifted to the
//! smallest counter among the backlogged, so idling banks no credit and a
//! flood from one tenant cannot starve another.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct VirtualCounters {
    counters: BTreeMap<String, u64>,
}

impl VirtualCounters {
    pub fn counter(&self, tenant: &str) -> u64 {
        self.counters.get(tenant).copied().unwrap_or(0)
    }

    /// `tenant` becomes backlogged while `backlogged` (the others) already are.
    pub fn on_backlogged<'a>(&mut self, tenant: &str, backlogged: impl Iterator<Item = &'a str>) {
        let floor = backlogged.filter(|t| *t != tenant).map(|t| self.counter(t)).min();
        if let Some(floor) = floor {
            let own = self.counters.entry(tenant.to_owned()).or_insert(0);
            *own = (*own).max(floor);
        }
    }

    /// `tenant` was served `milli` weighted milli-tokens.
    pub fn charge(&mut self, tenant: &str, milli: u64) {
        let own = self.counters.entry(tenant.to_owned()).or_insert(0);
        *own = own.saturating_add(milli);
    }

    /// Takes back a charge for service that did not happen (a request popped
    /// and put back because no worker had room).
    pub fn refund(&mut self, tenant: &str, milli: u64) {
        if let Some(own) = self.counters.get_mut(tenant) {
            *own = own.saturating_sub(milli);
        }
    }

    /// The candidate with the smallest counter (ties: the smallest name).
    pub fn pick<'a>(&self, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
        candidates.min_by_key(|t| (self.counter(t), *t))
    }

    /// Forgets tenants that are not backlogged, keeping memory bounded; their
    /// counters would be lifted on return anyway.
    pub fn retain<'a>(&mut self, backlogged: impl Iterator<Item = &'a str>) {
        let keep: std::collections::BTreeSet<&str> = backlogged.collect();
        self.counters.retain(|t, _| keep.contains(t.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_served_goes_next_and_idle_time_banks_nothing() {
        let mut v = VirtualCounters::default();
        v.charge("flood", 100);
        v.charge("light", 10);
        assert_eq!(v.pick(["flood", "light"].into_iter()), Some("light"));
        // "late" arrives fresh while the others are backlogged: lifted to the floor.
        v.on_backlogged("late", ["flood", "light"].into_iter());
        assert_eq!(v.counter("late"), 10);
        assert_eq!(v.pick(["late", "light"].into_iter()), Some("late"), "ties go by name");
    }
}
