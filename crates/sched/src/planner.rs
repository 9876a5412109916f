//! The step planner: what the next engine step runs. Pure (no I/O, no
//! engine, no clock), so it is tested directly with exact inputs.
//!
//! Policy, within a per-step token budget, class by class (reserved, then
//! burst, then spot), so a class's work never waits for a lower class's:
//! 1. The class's decodes (oldest first). A decode that needs a block when
//!    none is free preempts the lowest-class, most recently started sequence
//!    of its own class or lower (possibly itself): reserved work is never
//!    preempted for burst or spot.
//! 2. The class's prefill work, earliest deadline first (`due`: when the
//!    sequence's first token is due), merging two kinds:
//!    - the next chunk of a running prefill (chunked prefill: a long prompt
//!      is spread over steps, so decodes never wait for it); a chunk that
//!      finds no free block may preempt strictly lower classes;
//!    - the admission of a waiting sequence (queue order, which the caller
//!      keeps sorted by `due`), when the blocks of its whole prompt fit next
//!      to what running prefills still need; it may preempt strictly lower
//!      classes when that frees enough. Admission stops at the first that
//!      cannot fit, so a lower class never overtakes a higher one, and stops
//!      altogether once running work was preempted for blocks.
//!
//!    A short prompt due soon is thus not held behind a long one with time
//!    to spare, whether that one is running or waiting.
//!
//! Steps are mixed: what budget a reserved prompt leaves goes to lower-class
//! decodes and prompts in the same step, so the pool never idles between
//! small steps; while reserved prompts fill the budget, spot waits.
//!
//! Block accounting assumes a sequence holds exactly
//! `ceil(tokens_in_cache / block_size)` blocks (the worker never allocates
//! ahead). Freed blocks that the prefix cache still shares may not really
//! come back; the step then fails with out-of-blocks and the worker preempts
//! `victim` and plans again.

use reservoir_domain::PriorityClass;

pub type SeqId = u64;

/// The `due` of a sequence with no first-token deadline: after every other.
pub const NO_DEADLINE: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannerConfig {
    /// Tokens fed to the engine in one step at most (prefill chunks and decodes).
    pub step_token_budget: usize,
    pub block_size: usize,
}

/// A sequence that holds KV blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    pub id: SeqId,
    pub class: PriorityClass,
    /// Admission order (larger is more recent).
    pub started: u64,
    /// Tokens with K/V in the cache.
    pub computed: usize,
    /// Tokens still to feed before the next token can be sampled: 1 while
    /// decoding, more while prefilling. Always at least 1.
    pub pending: usize,
    /// When its first token is due, on the caller's clock (smaller is
    /// sooner); `NO_DEADLINE` when it has none. Orders prefills within a class.
    pub due: u64,
}

/// A sequence waiting for admission; it holds no blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub id: SeqId,
    pub class: PriorityClass,
    /// Tokens to prefill (prompt plus anything already generated).
    pub tokens: usize,
    /// As `Running::due`. Within a class, `waiting` comes sorted by it.
    pub due: u64,
}

/// One sequence's share of the step: feed tokens up to position `end`
/// (exclusive), counted from the start of the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedEntry {
    pub id: SeqId,
    pub end: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Running sequences to remove (blocks freed) and put back at the front
    /// of their class queue, in the order they were chosen.
    pub preempt: Vec<SeqId>,
    /// Waiting sequences to admit, in admission order.
    pub admit: Vec<SeqId>,
    /// The step's work, decodes first.
    pub entries: Vec<PlannedEntry>,
}

#[derive(Debug, Clone)]
pub struct Planner {
    cfg: PlannerConfig,
}

/// The step being planned.
#[derive(Debug)]
struct Step {
    /// The running sequences, by class then start.
    slots: Vec<Slot>,
    free: usize,
    budget: usize,
    plan: Plan,
    /// Whether waiting sequences may still come in.
    open: bool,
    /// Blocks promised to sequences admitted this step beyond their first chunk.
    promised: usize,
}

impl Step {
    /// Free blocks not promised to sequences admitted this step.
    fn available(&self) -> usize {
        self.free.saturating_sub(self.promised)
    }
}

/// Per running sequence, while planning.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: Running,
    alive: bool,
    /// Tokens and new blocks scheduled for this step.
    scheduled: Option<(usize, usize)>,
}

impl Planner {
    pub fn new(cfg: PlannerConfig) -> Self {
        let cfg = PlannerConfig { step_token_budget: cfg.step_token_budget.max(1), block_size: cfg.block_size.max(1) };
        Planner { cfg }
    }

    pub fn config(&self) -> PlannerConfig {
        self.cfg
    }

    fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.cfg.block_size)
    }

    /// New blocks a sequence holding `computed` tokens needs for `n` more.
    fn grow(&self, computed: usize, n: usize) -> usize {
        self.blocks_for(computed + n) - self.blocks_for(computed)
    }

    /// The sequence to give up first: lowest class, then most recently started.
    pub fn victim(running: &[Running]) -> Option<SeqId> {
        running.iter().max_by_key(|r| (r.class, r.started)).map(|r| r.id)
    }

    /// Plans the next step. `waiting` may come in any order across classes;
    /// within a class its order is the queue order. `free_blocks` is what
    /// the engine has free now.
    pub fn next_step(&self, running: &[Running], waiting: &[Waiting], free_blocks: usize) -> Plan {
        let mut slots: Vec<Slot> = running.iter().map(|&seq| Slot { seq, alive: true, scheduled: None }).collect();
        slots.sort_by_key(|s| (s.seq.class, s.seq.started));
        // Prefill work within a class, earliest deadline first: chunks of
        // running prefills and admissions of waiting sequences, merged by
        // `due` (a running one first on a tie: it holds blocks already).
        // Waiting sequences are walked lazily in queue order, so a long
        // queue costs nothing beyond what is admitted.
        let mut prefills: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].seq.pending > 1).collect();
        prefills.sort_by_key(|&i| (slots[i].seq.class, slots[i].seq.due, slots[i].seq.started));
        let mut prefills = prefills.into_iter().peekable();
        let budget = self.cfg.step_token_budget;
        let mut st = Step { slots, free: free_blocks, budget, plan: Plan::default(), open: true, promised: 0 };
        for class in PriorityClass::ALL {
            // 1. The class's decodes.
            for i in 0..st.slots.len() {
                let seq = st.slots[i].seq;
                if seq.class == *class && seq.pending == 1 && st.budget > 0 {
                    self.decode(&mut st, i);
                }
            }
            // 2. The class's prefill work.
            let mut queue = waiting.iter().filter(|w| w.class == *class).peekable();
            while st.budget > 0 {
                let running_due =
                    prefills.peek().map(|&i| st.slots[i].seq).filter(|r| r.class == *class).map(|r| r.due);
                let waiting_due = if st.open { queue.peek().map(|w| w.due) } else { None };
                let chunk_first = match (running_due, waiting_due) {
                    (None, None) => break,
                    (Some(r), Some(w)) => r <= w,
                    (r, _) => r.is_some(),
                };
                if chunk_first {
                    if let Some(i) = prefills.next() {
                        self.chunk(&mut st, i);
                    }
                } else if let Some(w) = queue.next() {
                    self.admit(&mut st, w);
                }
            }
        }

        // Decodes first, then prefills, in priority order; admitted last.
        let Step { slots, mut plan, .. } = st;
        let mut scheduled: Vec<PlannedEntry> = Vec::new();
        for pass_decode in [true, false] {
            for s in &slots {
                if let (true, Some((n, _))) = (s.alive, s.scheduled)
                    && (s.seq.pending == 1) == pass_decode
                {
                    scheduled.push(PlannedEntry { id: s.seq.id, end: s.seq.computed + n });
                }
            }
        }
        scheduled.append(&mut plan.entries);
        plan.entries = scheduled;
        plan
    }

    /// Schedules the decode of running sequence `i`. When its next token
    /// needs a block and none is free, the lowest-class, most recently
    /// started sequence of its class or lower goes (possibly itself), and
    /// admission closes: the preempted are first in line next step.
    fn decode(&self, st: &mut Step, i: usize) {
        let r = st.slots[i].seq;
        if !st.slots[i].alive {
            return;
        }
        let need = self.grow(r.computed, 1);
        while need > st.available() {
            let Some(v) = self.pick_victim(&st.slots, |c| c >= r.class) else { break };
            self.preempt(st, v);
            st.open = false;
            if v == i {
                break;
            }
        }
        if st.slots[i].alive && need <= st.available() {
            st.free -= need;
            st.budget -= 1;
            st.slots[i].scheduled = Some((1, need));
        }
    }

    /// Schedules the next prefill chunk of running sequence `i`, preempting
    /// strictly lower classes when its blocks are missing.
    fn chunk(&self, st: &mut Step, i: usize) {
        let r = st.slots[i].seq;
        // An admission earlier in this step may have preempted it.
        if !st.slots[i].alive {
            return;
        }
        let want = r.pending.min(st.budget);
        let mut fits = self.fits(r.computed, st.available());
        while fits < want {
            let Some(v) = self.pick_victim(&st.slots, |c| c > r.class) else { break };
            self.preempt(st, v);
            st.open = false;
            fits = self.fits(r.computed, st.available());
        }
        let n = want.min(fits).min(st.budget);
        if n > 0 {
            let need = self.grow(r.computed, n);
            st.free -= need;
            st.budget -= n;
            st.slots[i].scheduled = Some((n, need));
        }
    }

    /// Admits waiting sequence `w` with a first chunk when the blocks of its
    /// whole prompt fit next to what running prefills still need, preempting
    /// strictly lower classes when that frees enough. When it cannot come
    /// in, admission closes for this step: nothing behind it overtakes it.
    fn admit(&self, st: &mut Step, w: &Waiting) {
        if w.tokens == 0 {
            st.open = false;
            return;
        }
        // Blocks that running prefills still need after this step are spoken
        // for, as are those promised to prompts admitted before: admitting
        // past them would only lead to preemption later.
        let headroom = |st: &Step| st.available().saturating_sub(self.committed(&st.slots));
        let need = self.blocks_for(w.tokens);
        if need > headroom(st) {
            let reclaimable: usize = st
                .slots
                .iter()
                .filter(|s| s.alive && s.seq.class > w.class)
                .map(|s| self.blocks_for(s.seq.computed) + s.scheduled.map_or(0, |(_, b)| b))
                .sum();
            if need > headroom(st) + reclaimable {
                st.open = false;
                return;
            }
            while need > headroom(st) {
                let Some(v) = self.pick_victim(&st.slots, |c| c > w.class) else { break };
                self.preempt(st, v);
            }
            if need > headroom(st) {
                st.open = false;
                return;
            }
        }
        let n = w.tokens.min(st.budget);
        let chunk_blocks = self.blocks_for(n);
        st.free -= chunk_blocks.min(st.free);
        st.promised += need - chunk_blocks;
        st.budget -= n;
        st.plan.admit.push(w.id);
        st.plan.entries.push(PlannedEntry { id: w.id, end: n });
    }

    /// Tokens that fit after `computed` in the sequence's last block plus
    /// `free` new blocks.
    fn fits(&self, computed: usize, free: usize) -> usize {
        (self.blocks_for(computed) + free) * self.cfg.block_size - computed
    }

    /// Blocks that alive running prefills need beyond what this step gives them.
    fn committed(&self, slots: &[Slot]) -> usize {
        slots
            .iter()
            .filter(|s| s.alive && s.seq.pending > 1)
            .map(|s| {
                let (n, _) = s.scheduled.unwrap_or((0, 0));
                self.grow(s.seq.computed + n, s.seq.pending - n)
            })
            .sum()
    }

    fn pick_victim(&self, slots: &[Slot], eligible: impl Fn(PriorityClass) -> bool) -> Option<usize> {
        slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.alive && eligible(s.seq.class))
            .max_by_key(|(_, s)| (s.seq.class, s.seq.started))
            .map(|(i, _)| i)
    }

    fn preempt(&self, st: &mut Step, i: usize) {
        let s = &mut st.slots[i];
        s.alive = false;
        st.free += self.blocks_for(s.seq.computed);
        if let Some((n, blocks)) = s.scheduled.take() {
            st.free += blocks;
            st.budget += n;
        }
        st.plan.preempt.push(s.seq.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use PriorityClass::{Burst, Reserved, Spot};

    fn planner(budget: usize, block_size: usize) -> Planner {
        Planner::new(PlannerConfig { step_token_budget: budget, block_size })
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
        let running =
            [run(1, Spot, 1, 0, 1), run(2, Burst, 9, 0, 1), run(3, Spot, 4, 0, 1), run(4, Reserved, 10, 0, 1)];
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
            /// Whatever the input: the plan stays within the token budget and
            /// the free blocks, schedules each sequence at most once, never
            /// preempts reserved work for a lower class, and admits in class order.
            #[test]
            fn plans_respect_budget_blocks_and_priority(
                running in proptest::collection::vec((class(), 0usize..40, 1usize..30), 0..6),
                waiting in proptest::collection::vec((class(), 1usize..40), 0..6),
                free in 0usize..20,
                budget in 1usize..64,
            ) {
                let bs = 4;
                let p = planner(budget, bs);
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
                    tokens += e.end - start;
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
}
