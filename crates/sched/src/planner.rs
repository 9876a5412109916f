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
//! small steps; while reserved prompts fill the budget, spot waits. The
//! budget is in prompt tokens, a decode counting `decode_cost` of them (it
//! costs the engine about that much more: logits over the vocabulary and
//! attention over its whole context), so a step lasts about as long
//! whatever its mix, and the decodes in it get a token at that pace.
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
    /// What one step may carry, in prompt tokens (a decode counts
    /// `decode_cost`): what bounds a step's duration.
    pub step_token_budget: usize,
    pub block_size: usize,
    /// What a decode takes of the budget, in prompt tokens (at least 1).
    pub decode_cost: usize,
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
        let cfg = PlannerConfig {
            step_token_budget: cfg.step_token_budget.max(1),
            block_size: cfg.block_size.max(1),
            // A decode costing more than a whole step would never run.
            decode_cost: cfg.decode_cost.clamp(1, cfg.step_token_budget.max(1)),
        };
        Planner { cfg }
    }

    pub fn config(&self) -> PlannerConfig {
        self.cfg
    }

    fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.cfg.block_size)
    }

    /// What `n` tokens of `seq` take of a step's budget: a decode (its one
    /// pending token) counts `decode_cost`, a prompt token one.
    fn budget_of(&self, seq: &Running, n: usize) -> usize {
        if seq.pending == 1 { self.cfg.decode_cost } else { n }
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
                if seq.class == *class && seq.pending == 1 && st.budget >= self.budget_of(&seq, 1) {
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
            st.budget -= self.budget_of(&r, 1);
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
            st.budget += self.budget_of(&s.seq, n);
        }
        st.plan.preempt.push(s.seq.id);
    }
}

#[cfg(test)]
mod tests;
