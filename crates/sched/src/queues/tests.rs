use proptest::prelude::*;
use reservoir_domain::PriorityClass::{self, Burst, Reserved, Spot};

use super::*;

fn entry(tenant: &str, cost: u64, at: Micros, item: u32) -> Entry<u32> {
    Entry { tenant: tenant.into(), cost_milli: cost, enqueued_at: at, deadline: None, item }
}

fn drain(q: &mut ClassQueues<u32>) -> Vec<(PriorityClass, u32)> {
    std::iter::from_fn(|| q.pop().map(|(c, e)| (c, e.item))).collect()
}

#[test]
fn strict_priority_between_classes() {
    let mut q = ClassQueues::new(QueueLimits::default());
    q.push(Spot, entry("a", 1, 0, 1), 0).unwrap();
    q.push(Burst, entry("a", 1, 0, 2), 0).unwrap();
    q.push(Reserved, entry("b", 1, 0, 3), 0).unwrap();
    q.push(Spot, entry("c", 1, 0, 4), 0).unwrap();
    assert_eq!(drain(&mut q), vec![(Reserved, 3), (Burst, 2), (Spot, 1), (Spot, 4)]);
}

#[test]
fn a_flood_does_not_starve_another_tenant_of_the_same_class() {
    let mut q = ClassQueues::new(QueueLimits::default());
    for i in 0..100 {
        q.push(Spot, entry("flood", 1000, 0, i), 0).unwrap();
    }
    for i in 100..103 {
        q.push(Spot, entry("light", 1000, 0, i), 0).unwrap();
    }
    let order: Vec<u32> = drain(&mut q).into_iter().map(|(_, i)| i).take(7).collect();
    // Equal service: the two tenants alternate while both are backlogged.
    assert_eq!(order, vec![0, 100, 1, 101, 2, 102, 3]);
}

#[test]
fn full_queues_shed_with_retry_after_but_reserved_never() {
    let limits =
        QueueLimits { spot_capacity: 2, burst_capacity: 1, assumed_drain_milli_per_s: 1000, ..QueueLimits::default() };
    let mut q = ClassQueues::new(limits);
    q.push(Spot, entry("a", 5000, 0, 1), 0).unwrap();
    q.push(Spot, entry("a", 5000, 0, 2), 0).unwrap();
    let (shed, back) = q.push(Spot, entry("a", 1, 0, 3), 0).unwrap_err();
    assert_eq!(back.item, 3, "a shed request is handed back");
    assert_eq!(shed.reason, ShedReason::QueueFull);
    assert_eq!(shed.retry_after_s, 10, "10 tokens queued at 1 token/s");
    q.push(Burst, entry("a", 1, 0, 4), 0).unwrap();
    assert!(q.push(Burst, entry("a", 1, 0, 5), 0).is_err());
    for i in 0..10_000 {
        q.push(Reserved, entry("r", 1, 0, i), 0).unwrap();
    }
}

#[test]
fn waiting_too_long_sheds_burst_and_spot_only() {
    let limits = QueueLimits { timeout: 10, ..QueueLimits::default() };
    let mut q = ClassQueues::new(limits);
    q.push(Reserved, entry("a", 1, 0, 1), 0).unwrap();
    q.push(Burst, entry("a", 1, 0, 2), 0).unwrap();
    q.push(Spot, entry("b", 1, 5, 3), 5).unwrap();
    let shed: Vec<u32> = q.expire(10).into_iter().map(|(_, e, _)| e.item).collect();
    assert_eq!(shed, vec![2]);
    let shed: Vec<u32> = q.expire(15).into_iter().map(|(_, e, _)| e.item).collect();
    assert_eq!(shed, vec![3]);
    assert_eq!(drain(&mut q), vec![(Reserved, 1)]);
}

#[test]
fn reserved_requests_leave_at_their_own_deadline_and_only_then() {
    let limits = QueueLimits { timeout: 10, ..QueueLimits::default() };
    let mut q = ClassQueues::new(limits);
    let with_deadline = |item, deadline| Entry { deadline: Some(deadline), ..entry("a", 7, 0, item) };
    // One tenant's queue holds deadlines out of order (longer prompt, other contract).
    q.push(Reserved, with_deadline(1, 50), 0).unwrap();
    q.push(Reserved, with_deadline(2, 20), 0).unwrap();
    q.push(Reserved, entry("b", 1, 0, 3), 0).unwrap();
    assert!(q.expire(19).is_empty(), "no class timeout for reserved, and no deadline yet");
    let shed = q.expire(20);
    assert_eq!(shed.len(), 1);
    let (class, gone, why) = &shed[0];
    assert_eq!((*class, gone.item, why.reason), (Reserved, 2, ShedReason::DeadlinePassed));
    assert_eq!(q.len(Reserved), 2);
    assert_eq!(q.retry_after_s(Reserved, 20), 1, "8 milli-tokens left at the assumed drain rate");
    assert_eq!(q.expire(50).into_iter().map(|(_, e, _)| e.item).collect::<Vec<_>>(), vec![1]);
    assert_eq!(drain(&mut q), vec![(Reserved, 3)], "without a deadline a reserved request stays");
}

#[test]
fn retry_after_follows_the_recent_drain_rate() {
    let mut q = ClassQueues::new(QueueLimits::default());
    q.push(Spot, entry("a", 50_000, 0, 1), 0).unwrap();
    // 100 tokens served over the last 10 s: 10 tokens/s; 50 tokens queued.
    q.record_served(100_000, MICROS_PER_S);
    assert_eq!(q.retry_after_s(Spot, 2 * MICROS_PER_S), 5);
    assert_eq!(q.retry_after_s(Reserved, 2 * MICROS_PER_S), 1, "nothing queued at reserved");
}

#[test]
fn spot_degrades_before_it_sheds() {
    let limits = QueueLimits { degrade_spot_at: 2, degraded_spot_max_tokens: 16, ..QueueLimits::default() };
    let mut q = ClassQueues::new(limits);
    assert_eq!(q.spot_max_tokens(256), 256);
    q.push(Spot, entry("a", 1, 0, 1), 0).unwrap();
    q.push(Spot, entry("a", 1, 0, 2), 0).unwrap();
    assert_eq!(q.spot_max_tokens(256), 16);
    assert_eq!(q.spot_max_tokens(8), 8);
}

#[test]
fn a_preempted_request_keeps_its_place() {
    let mut q = ClassQueues::new(QueueLimits::default());
    q.push(Spot, entry("a", 1, 0, 1), 0).unwrap();
    q.push(Spot, entry("a", 1, 0, 2), 0).unwrap();
    let (_, first) = q.pop().unwrap();
    q.push_front(Spot, first);
    assert_eq!(drain(&mut q), vec![(Spot, 1), (Spot, 2)]);
}

proptest! {
    /// Whatever goes in comes out once, higher classes never after lower ones
    /// that were queued at the same time, and counts stay consistent.
    #[test]
    fn pop_respects_priority_and_loses_nothing(
        pushes in proptest::collection::vec((0usize..3, 0usize..4, 1u64..10_000), 0..200),
    ) {
        let mut q = ClassQueues::new(QueueLimits { burst_capacity: usize::MAX, spot_capacity: usize::MAX, ..QueueLimits::default() });
        for (i, (class, tenant, cost)) in pushes.iter().enumerate() {
            let class = PriorityClass::ALL[*class];
            q.push(class, entry(&format!("t{tenant}"), *cost, 0, i as u32), 0).unwrap();
        }
        let out = drain(&mut q);
        prop_assert_eq!(out.len(), pushes.len());
        prop_assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
        let mut items: Vec<u32> = out.iter().map(|(_, i)| *i).collect();
        items.sort_unstable();
        prop_assert_eq!(items, (0..pushes.len() as u32).collect::<Vec<_>>());
        prop_assert!(q.is_empty());
    }
}

#[test]
fn a_request_put_back_for_want_of_a_worker_is_not_charged() {
    let mut q = ClassQueues::new(QueueLimits::default());
    q.push(Spot, entry("unlucky", 1000, 0, 1), 0).unwrap();
    q.push(Spot, entry("unlucky", 1000, 0, 2), 0).unwrap();
    q.push(Spot, entry("other", 1000, 0, 3), 0).unwrap();
    // The dispatcher pops the head, finds no worker with room, puts it back:
    // many times over while the pool is full.
    for _ in 0..50 {
        let (class, head) = q.pop().unwrap();
        q.push_front(class, head);
    }
    let counters = &q.classes[index(Spot)].fair;
    assert_eq!(counters.counter("unlucky"), counters.counter("other"), "nothing ran: nothing charged");
    // Served in turn once workers free up, as if the waits never happened.
    assert_eq!(drain(&mut q).into_iter().map(|(_, i)| i).collect::<Vec<_>>(), vec![3, 1, 2]);
}
