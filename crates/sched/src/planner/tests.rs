//! The planner's tests: exact plans for small inputs, and properties over
//! random ones.
#![allow(clippy::unwrap_used)]

use super::*;
use PriorityClass::{Burst, Reserved, Spot};

fn planner(budget: usize, block_size: usize) -> Planner {
    Planner::new(PlannerConfig { step_token_budget: budget, block_size, decode_cost: 1 })
}

fn run(id: SeqId, class: PriorityClass, started: u64, computed: usize, pending: usize) -> Running {
    Running { id, class, started, computed, pending, due: NO_DEADLINE }
}

fn wait(id: SeqId, class: PriorityClass, tokens: usize) -> Waiting {
    Waiting { id, class, tokens, due: NO_DEADLINE }
}

fn ids(entries: &[PlannedEntry]) -> Vec<SeqId> {
    entries.iter().map(|e| e.id).collect()
}

#[test]
fn reserved_is_admitted_before_burst_and_spot_fifo_within_class() {
    let p = planner(512, 16);
    let waiting =
        [wait(1, Spot, 10), wait(2, Reserved, 10), wait(3, Burst, 10), wait(4, Reserved, 10), wait(5, Spot, 10)];
    let plan = p.next_step(&[], &waiting, 100);
    assert_eq!(plan.admit, vec![2, 4, 3, 1, 5]);
    assert!(plan.preempt.is_empty());
    // With room for two prompts only, the two reserved ones get it.
    let plan = p.next_step(&[], &waiting, 2);
    assert_eq!(plan.admit, vec![2, 4]);
    // With a budget for two prompts only, likewise.
    let plan = planner(20, 16).next_step(&[], &waiting, 100);
    assert_eq!(plan.admit, vec![2, 4]);
    assert_eq!(plan.entries, vec![PlannedEntry { id: 2, end: 10 }, PlannedEntry { id: 4, end: 10 }]);
}

#[test]
fn a_lower_class_never_overtakes_a_waiting_higher_one() {
    let p = planner(512, 4);
    // The reserved prompt needs 5 blocks, only 3 are free; the small
    // spot behind it would fit but must wait.
    let plan = p.next_step(&[], &[wait(1, Reserved, 20), wait(2, Spot, 4)], 3);
    assert!(plan.admit.is_empty());
    assert!(plan.entries.is_empty());
}

#[test]
fn each_class_decodes_and_prefills_before_the_next_class_within_the_budget() {
    let p = planner(10, 16);
    let running = [
        run(1, Spot, 1, 5, 1),
        run(2, Reserved, 2, 5, 1),
        run(3, Burst, 3, 0, 100), // long prompt being prefilled
        run(4, Burst, 4, 7, 1),
    ];
    let plan = p.next_step(&running, &[wait(9, Reserved, 3)], 100);
    // Reserved: decode 2, then the waiting reserved prompt comes in
    // (3 tokens); burst: decode 4, then 5 tokens of the burst prompt.
    // The spot decode gets no budget this step. (The step lists
    // decodes, then prefill chunks, then admissions.)
    assert_eq!(ids(&plan.entries), vec![2, 4, 3, 9]);
    assert_eq!(plan.admit, vec![9]);
    assert_eq!(plan.entries[2], PlannedEntry { id: 3, end: 5 });
    // With budget to spare, every class gets its share in one step.
    let short = [running[0], running[1], run(3, Burst, 3, 0, 20), running[3]];
    let plan = planner(64, 16).next_step(&short, &[wait(9, Reserved, 3)], 100);
    assert_eq!(ids(&plan.entries), vec![2, 4, 1, 3, 9]);
    assert_eq!(plan.entries[3], PlannedEntry { id: 3, end: 20 });
    // Without the reserved prompt, the burst prefill takes the 8 tokens
    // the decodes leave; spot (its decode, a waiting prompt) waits.
    let plan = p.next_step(&running, &[wait(9, Spot, 3)], 100);
    let burst_chunk = PlannedEntry { id: 3, end: 8 };
    assert_eq!(plan.entries, vec![PlannedEntry { id: 2, end: 6 }, PlannedEntry { id: 4, end: 8 }, burst_chunk]);
    assert!(plan.admit.is_empty());
    // Next step: the prefill continues where it stopped.
    let running = [run(3, Burst, 3, 8, 92)];
    let plan = p.next_step(&running, &[], 100);
    assert_eq!(plan.entries, vec![PlannedEntry { id: 3, end: 18 }]);
}

#[test]
fn within_a_class_the_prefill_due_soonest_goes_first_running_or_waiting() {
    let p = planner(16, 4);
    // A long reserved prompt is being prefilled with time to spare; a
    // short one due sooner arrives: it is admitted first, and the long
    // one's chunk gets what budget is left.
    let long = Running { due: 5_000, ..run(1, Reserved, 1, 32, 400) };
    let short = Waiting { due: 1_200, ..wait(2, Reserved, 10) };
    let plan = p.next_step(&[long], &[short], 1_000);
    assert_eq!(plan.admit, vec![2]);
    assert_eq!(plan.entries, vec![PlannedEntry { id: 1, end: 38 }, PlannedEntry { id: 2, end: 10 }]);
    // Due later than the running one: it waits for the budget.
    let later = Waiting { due: 9_000, ..short };
    let plan = p.next_step(&[long], &[later], 1_000);
    assert!(plan.admit.is_empty());
    assert_eq!(plan.entries, vec![PlannedEntry { id: 1, end: 48 }]);
    // Two running prefills: the one due sooner gets its chunk first,
    // though it started later.
    let soon = Running { due: 900, ..run(3, Reserved, 7, 0, 12) };
    let plan = p.next_step(&[long, soon], &[], 1_000);
    // (Entries list the step's work in admission order, not by deadline.)
    assert_eq!(plan.entries, vec![PlannedEntry { id: 1, end: 36 }, PlannedEntry { id: 3, end: 12 }]);
    // Deadlines order work within a class only: a reserved prefill with
    // none still comes before a burst one due now.
    let burst = Waiting { due: 0, ..wait(4, Burst, 10) };
    let plan = p.next_step(&[Running { due: NO_DEADLINE, ..long }], &[burst], 1_000);
    assert_eq!(plan.entries, vec![PlannedEntry { id: 1, end: 48 }]);
}

#[test]
fn admission_leaves_room_for_running_prefills() {
    let p = planner(8, 4);
    // Sequence 1 still has 24 prompt tokens to go (6 blocks), 8 fed now.
    let running = [run(1, Spot, 1, 0, 24)];
    let plan = p.next_step(&running, &[wait(2, Spot, 4)], 7);
    // 2 blocks now, 4 more later: 1 left, the waiting one needs 1.
    assert_eq!(plan.entries, vec![PlannedEntry { id: 1, end: 8 }]);
    assert!(plan.admit.is_empty(), "budget is spent");
    let p = planner(64, 4);
    let plan = p.next_step(&running, &[wait(2, Spot, 4), wait(3, Spot, 4)], 7);
    assert_eq!(plan.admit, vec![2]);
}

#[test]
fn reserved_admission_preempts_the_most_recent_spot_but_never_reserved() {
    let p = planner(512, 4);
    let running = [
        run(1, Spot, 1, 8, 1),     // 2 blocks
        run(2, Spot, 2, 8, 1),     // 2 blocks, most recent spot
        run(3, Reserved, 3, 8, 1), // 2 blocks
    ];
    // The 3 free blocks go to the decodes; reserved needs 2 more blocks:
    // the most recent spot (2) goes and its decode is unscheduled.
    let plan = p.next_step(&running, &[wait(4, Reserved, 8)], 3);
    assert_eq!(plan.preempt, vec![2]);
    assert_eq!(plan.admit, vec![4]);
    assert_eq!(ids(&plan.entries), vec![3, 1, 4]);

    // A spot request never preempts reserved work.
    let running = [run(3, Reserved, 3, 8, 1)];
    let plan = p.next_step(&running, &[wait(5, Spot, 8)], 1);
    assert!(plan.preempt.is_empty());
    assert!(plan.admit.is_empty());
    assert_eq!(ids(&plan.entries), vec![3]);

    // Preemption happens only when it frees enough: a burst request needing
    // 10 blocks does not evict the spot holding 2 when only 3 are free.
    let running = [run(1, Spot, 1, 8, 1), run(3, Reserved, 3, 8, 1)];
    let plan = p.next_step(&running, &[wait(6, Burst, 40)], 3);
    assert!(plan.preempt.is_empty());
    assert!(plan.admit.is_empty());
}

#[test]
fn decode_out_of_blocks_preempts_lowest_class_most_recent_possibly_itself() {
    let p = planner(512, 4);
    // All three sit at a block boundary: each decode needs a new block.
    let running = [run(1, Reserved, 1, 8, 1), run(2, Spot, 2, 8, 1), run(3, Spot, 3, 8, 1)];
    let plan = p.next_step(&running, &[], 1);
    // Reserved takes the free block; spot 2 then needs one: the most
    // recent spot (3) goes, freeing 2 blocks; spot 2 decodes.
    assert_eq!(plan.preempt, vec![3]);
    assert_eq!(ids(&plan.entries), vec![1, 2]);

    // Only spots running, no room: the most recent one preempts itself.
    let running = [run(1, Spot, 1, 8, 1)];
    let plan = p.next_step(&running, &[], 0);
    assert_eq!(plan.preempt, vec![1]);
    assert!(plan.entries.is_empty());

    // Reserved needing a block with only reserved running and none free:
    // the most recent reserved gives way (never a lower class's fault).
    let running = [run(1, Reserved, 1, 8, 1), run(2, Reserved, 2, 8, 1)];
    let plan = p.next_step(&running, &[], 0);
    assert_eq!(plan.preempt, vec![2]);
    assert_eq!(ids(&plan.entries), vec![1]);
}

#[test]
fn spot_decode_never_preempts_reserved() {
    let p = planner(512, 4);
    let running = [run(1, Reserved, 5, 8, 1), run(2, Spot, 1, 8, 1)];
    // Reserved takes the only block; the spot has to preempt itself.
    let plan = p.next_step(&running, &[], 1);
    assert_eq!(plan.preempt, vec![2]);
    assert_eq!(ids(&plan.entries), vec![1]);
}

#[test]
fn victim_is_lowest_class_then_most_recent() {
    let running = [run(1, Spot, 1, 0, 1), run(2, Burst, 9, 0, 1), run(3, Spot, 4, 0, 1), run(4, Reserved, 10, 0, 1)];
    assert_eq!(Planner::victim(&running), Some(3));
    assert_eq!(Planner::victim(&[]), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn class() -> impl Strategy<Value = PriorityClass> {
        prop_oneof![Just(Reserved), Just(Burst), Just(Spot)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// Whatever the input: the plan stays within the token budget (a
        /// decode counting its cost) and
        /// the free blocks, schedules each sequence at most once, never
        /// preempts reserved work for a lower class, and admits in class order.
        #[test]
        fn plans_respect_budget_blocks_and_priority(
            running in proptest::collection::vec((class(), 0usize..40, 1usize..30), 0..6),
            waiting in proptest::collection::vec((class(), 1usize..40), 0..6),
            free in 0usize..20,
            budget in 1usize..64,
            decode_cost in 1usize..4,
        ) {
            let bs = 4;
            let p = Planner::new(PlannerConfig { step_token_budget: budget, block_size: bs, decode_cost });
            let running: Vec<Running> = running.iter().enumerate()
                .map(|(i, &(c, computed, pending))| Running { due: (i as u64 * 7) % 5, ..run(i as u64, c, i as u64, computed, pending) })
                .collect();
            let waiting: Vec<Waiting> = waiting.iter().enumerate()
                .map(|(i, &(c, t))| Waiting { due: i as u64 % 3, ..wait(100 + i as u64, c, t) }).collect();
            let plan = p.next_step(&running, &waiting, free);
            let mut seen = std::collections::HashSet::new();
            let (mut tokens, mut blocks) = (0usize, 0usize);
            let mut freed = 0usize;
            for id in &plan.preempt {
                let r = running.iter().find(|r| r.id == *id).unwrap();
                freed += r.computed.div_ceil(bs);
            }
            for e in &plan.entries {
                prop_assert!(seen.insert(e.id));
                prop_assert!(!plan.preempt.contains(&e.id));
                let start = running.iter().find(|r| r.id == e.id).map_or(0, |r| r.computed);
                prop_assert!(e.end > start);
                // A decode (one token of a running sequence with one pending) costs more.
                let decode = running.iter().any(|r| r.id == e.id && r.pending == 1);
                tokens += if decode { decode_cost.min(budget) } else { e.end - start };
                blocks += e.end.div_ceil(bs) - start.div_ceil(bs);
                if let Some(r) = running.iter().find(|r| r.id == e.id) {
                    prop_assert!(e.end <= r.computed + r.pending);
                } else {
                    let w = waiting.iter().find(|w| w.id == e.id).unwrap();
                    prop_assert!(e.end <= w.tokens);
                    prop_assert!(plan.admit.contains(&e.id));
                }
            }
            prop_assert!(tokens <= budget);
            prop_assert!(blocks <= free + freed, "{blocks} blocks > {free} free + {freed} freed");
            // Reserved work is preempted only once no lower class runs.
            for id in &plan.preempt {
                let r = running.iter().find(|r| r.id == *id).unwrap();
                if r.class == Reserved {
                    prop_assert!(running.iter().filter(|o| o.class != Reserved).all(|o| plan.preempt.contains(&o.id)));
                    prop_assert!(plan.admit.is_empty());
                }
            }
            // Admitted in class order.
            let classes: Vec<PriorityClass> = plan.admit.iter()
                .map(|a| waiting.iter().find(|w| w.id == *a).unwrap().class).collect();
            prop_assert!(classes.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}

#[test]
fn a_decode_takes_its_cost_of_the_budget_whatever_its_class() {
    let p = Planner::new(PlannerConfig { step_token_budget: 128, block_size: 16, decode_cost: 3 });
    // A reserved and a spot decode take 6 of 128: a spot prompt gets 122.
    let running = [run(1, Reserved, 1, 50, 1), run(2, Spot, 2, 50, 1), run(3, Spot, 3, 0, 500)];
    let plan = p.next_step(&running, &[], 1000);
    assert_eq!(
        plan.entries,
        vec![PlannedEntry { id: 1, end: 51 }, PlannedEntry { id: 2, end: 51 }, PlannedEntry { id: 3, end: 122 }]
    );
    // A budget of 7 holds two decodes and one prompt token: the third decode waits.
    let p = Planner::new(PlannerConfig { step_token_budget: 7, block_size: 16, decode_cost: 3 });
    let running = [run(1, Reserved, 1, 50, 1), run(2, Spot, 2, 50, 1), run(3, Spot, 3, 50, 1), run(4, Spot, 4, 0, 9)];
    assert_eq!(ids(&p.next_step(&running, &[], 1000).entries), vec![1, 2, 4]);
    // A cost above the budget is held to it, so decodes still run one a step.
    let p = Planner::new(PlannerConfig { step_token_budget: 2, block_size: 16, decode_cost: 5 });
    assert_eq!(ids(&p.next_step(&running[..2], &[], 1000).entries), vec![1]);
}
