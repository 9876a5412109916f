//! The global queues: one per class, strict priority between classes
//! (reserved, then burst, then spot), fair share between tenants within a
//! class, bounded burst and spot queues with a timeout, a Retry-After
//! estimate for what is shed, and degradation of spot before shedding.
//!
//! Reserved requests are never shed for load: their queue is bounded
//! upstream, since a contract's bucket admits at most its rate x burst window
//! of work. They leave the queue only at their own deadline
//! (`Entry::deadline`, from their tier's TTFT target), so none waits forever
//! for a pool that has no room (or no worker) for it.
//!
//! Complexity: push O(log tenants); pop O(tenants in the class); expire
//! O(queued).

use std::collections::{BTreeMap, VecDeque};

use reservoir_domain::PriorityClass;

use crate::fair::VirtualCounters;
use crate::{MICROS_PER_S, Micros};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most burst requests waiting at once.
    pub burst_capacity: usize,
    /// Most spot requests waiting at once.
    pub spot_capacity: usize,
    /// How long a burst or spot request may wait before it is shed.
    pub timeout: Micros,
    /// From this many waiting spot requests on, spot `max_tokens` is lowered.
    pub degrade_spot_at: usize,
    pub degraded_spot_max_tokens: u32,
    /// Drain rate assumed before any work was served (milli-tokens/s).
    pub assumed_drain_milli_per_s: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            burst_capacity: 1024,
            spot_capacity: 1024,
            timeout: 30 * MICROS_PER_S,
            degrade_spot_at: 512,
            degraded_spot_max_tokens: 64,
            assumed_drain_milli_per_s: 100_000,
        }
    }
}

/// A waiting request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<T> {
    pub tenant: String,
    pub cost_milli: u64,
    pub enqueued_at: Micros,
    /// When the entry leaves the queue whatever its class's timeout (set for
    /// reserved requests, which have no class timeout); `None`: the class's.
    pub deadline: Option<Micros>,
    pub item: T,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    QueueFull,
    /// Waited past its class's timeout (burst and spot).
    TimedOut,
    /// Waited past its own deadline (reserved).
    DeadlinePassed,
}

/// A request turned away, with when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    pub reason: ShedReason,
    pub retry_after_s: u32,
}

#[derive(Debug, Clone)]
struct ClassQueue<T> {
    by_tenant: BTreeMap<String, VecDeque<Entry<T>>>,
    len: usize,
    queued_cost_milli: u64,
    fair: VirtualCounters,
}

impl<T> Default for ClassQueue<T> {
    fn default() -> Self {
        ClassQueue { by_tenant: BTreeMap::new(), len: 0, queued_cost_milli: 0, fair: VirtualCounters::default() }
    }
}

/// Served work over the last `DRAIN_WINDOW`, for Retry-After estimates.
const DRAIN_WINDOW: Micros = 10 * MICROS_PER_S;
const DRAIN_SAMPLES_MAX: usize = 4096;

#[derive(Debug, Clone)]
pub struct ClassQueues<T> {
    classes: [ClassQueue<T>; 3],
    limits: QueueLimits,
    served: VecDeque<(Micros, u64)>,
}

fn index(class: PriorityClass) -> usize {
    match class {
        PriorityClass::Reserved => 0,
        PriorityClass::Burst => 1,
        PriorityClass::Spot => 2,
    }
}

impl<T> ClassQueues<T> {
    pub fn new(limits: QueueLimits) -> Self {
        ClassQueues { classes: Default::default(), limits, served: VecDeque::new() }
    }

    pub fn len(&self, class: PriorityClass) -> usize {
        self.classes[index(class)].len
    }

    pub fn is_empty(&self) -> bool {
        self.classes.iter().all(|c| c.len == 0)
    }

    /// Queues a request, or sheds it when its class's queue is full (and
    /// hands it back, so its caller can answer and record it).
    pub fn push(&mut self, class: PriorityClass, entry: Entry<T>, now: Micros) -> Result<(), (Shed, Entry<T>)> {
        let capacity = match class {
            PriorityClass::Reserved => usize::MAX,
            PriorityClass::Burst => self.limits.burst_capacity,
            PriorityClass::Spot => self.limits.spot_capacity,
        };
        if self.len(class) >= capacity {
            return Err((Shed { reason: ShedReason::QueueFull, retry_after_s: self.retry_after_s(class, now) }, entry));
        }
        let queue = &mut self.classes[index(class)];
        let idle = queue.by_tenant.get(&entry.tenant).is_none_or(VecDeque::is_empty);
        if idle {
            let backlogged: Vec<&str> =
                queue.by_tenant.iter().filter(|(_, q)| !q.is_empty()).map(|(t, _)| t.as_str()).collect();
            queue.fair.on_backlogged(&entry.tenant, backlogged.into_iter());
        }
        queue.len += 1;
        queue.queued_cost_milli = queue.queued_cost_milli.saturating_add(entry.cost_milli);
        queue.by_tenant.entry(entry.tenant.clone()).or_default().push_back(entry);
        Ok(())
    }

    /// The next request to serve: the highest class with work, and within it
    /// the backlogged tenant with the least service so far.
    pub fn pop(&mut self) -> Option<(PriorityClass, Entry<T>)> {
        for class in PriorityClass::ALL {
            let queue = &mut self.classes[index(*class)];
            if queue.len == 0 {
                continue;
            }
            let tenant = queue
                .fair
                .pick(queue.by_tenant.iter().filter(|(_, q)| !q.is_empty()).map(|(t, _)| t.as_str()))?
                .to_owned();
            let entry = queue.by_tenant.get_mut(&tenant).and_then(VecDeque::pop_front)?;
            if queue.by_tenant.get(&tenant).is_some_and(VecDeque::is_empty) {
                queue.by_tenant.remove(&tenant);
            }
            queue.len -= 1;
            queue.queued_cost_milli = queue.queued_cost_milli.saturating_sub(entry.cost_milli);
            queue.fair.charge(&tenant, entry.cost_milli);
            if queue.len == 0 {
                queue.fair.retain(std::iter::empty());
            }
            return Some((*class, entry));
        }
        None
    }

    /// Puts a popped request back at the front of its tenant's queue (no
    /// worker had room for it): it keeps its place, and the fair-share
    /// charge `pop` made is taken back, since nothing ran.
    pub fn push_front(&mut self, class: PriorityClass, entry: Entry<T>) {
        let queue = &mut self.classes[index(class)];
        queue.fair.refund(&entry.tenant, entry.cost_milli);
        queue.len += 1;
        queue.queued_cost_milli = queue.queued_cost_milli.saturating_add(entry.cost_milli);
        queue.by_tenant.entry(entry.tenant.clone()).or_default().push_front(entry);
    }

    /// Removes burst and spot requests that waited longer than the timeout,
    /// and any request whose own deadline has come.
    pub fn expire(&mut self, now: Micros) -> Vec<(PriorityClass, Entry<T>, Shed)> {
        let mut shed = Vec::new();
        for class in PriorityClass::ALL.iter().copied() {
            let retry_after_s = self.retry_after_s(class, now);
            let timeout = match class {
                PriorityClass::Reserved => None,
                PriorityClass::Burst | PriorityClass::Spot => Some(self.limits.timeout),
            };
            let due = |entry: &Entry<T>| {
                if entry.deadline.is_some_and(|d| d <= now) {
                    Some(ShedReason::DeadlinePassed)
                } else if timeout.is_some_and(|t| entry.enqueued_at.saturating_add(t) <= now) {
                    Some(ShedReason::TimedOut)
                } else {
                    None
                }
            };
            let queue = &mut self.classes[index(class)];
            for waiting in queue.by_tenant.values_mut() {
                // Deadlines differ within a tenant's queue (by prompt and
                // contract), so every entry is looked at; the queue is
                // rebuilt only when one is due.
                if !waiting.iter().any(|e| due(e).is_some()) {
                    continue;
                }
                let mut kept = VecDeque::with_capacity(waiting.len());
                for entry in waiting.drain(..) {
                    match due(&entry) {
                        Some(reason) => {
                            queue.len -= 1;
                            queue.queued_cost_milli = queue.queued_cost_milli.saturating_sub(entry.cost_milli);
                            shed.push((class, entry, Shed { reason, retry_after_s }));
                        }
                        None => kept.push_back(entry),
                    }
                }
                *waiting = kept;
            }
            queue.by_tenant.retain(|_, q| !q.is_empty());
        }
        shed
    }

    /// Records work served, for the drain-rate estimate.
    pub fn record_served(&mut self, milli: u64, now: Micros) {
        self.served.push_back((now, milli));
        while self.served.len() > DRAIN_SAMPLES_MAX
            || self.served.front().is_some_and(|(t, _)| t.saturating_add(DRAIN_WINDOW) < now)
        {
            self.served.pop_front();
        }
    }

    fn drain_milli_per_s(&self, now: Micros) -> u64 {
        let recent: u64 =
            self.served.iter().filter(|(t, _)| t.saturating_add(DRAIN_WINDOW) >= now).map(|(_, m)| *m).sum();
        let per_s = recent / (DRAIN_WINDOW / MICROS_PER_S);
        if per_s == 0 { self.limits.assumed_drain_milli_per_s.max(1) } else { per_s }
    }

    /// Seconds until the work queued at `class` and above has drained at the
    /// recent rate: when a request shed now should try again (1 to 300).
    pub fn retry_after_s(&self, class: PriorityClass, now: Micros) -> u32 {
        let ahead: u64 = PriorityClass::ALL
            .iter()
            .filter(|c| **c <= class)
            .map(|c| self.classes[index(*c)].queued_cost_milli)
            .fold(0, u64::saturating_add);
        let seconds = ahead.div_ceil(self.drain_milli_per_s(now));
        u32::try_from(seconds.clamp(1, 300)).unwrap_or(300)
    }

    /// Spot `max_tokens` after degradation: lowered while the spot queue is
    /// long, so more spot requests get a short answer before any is shed.
    pub fn spot_max_tokens(&self, requested: u32) -> u32 {
        if self.len(PriorityClass::Spot) >= self.limits.degrade_spot_at {
            requested.min(self.limits.degraded_spot_max_tokens)
        } else {
            requested
        }
    }
}

#[cfg(test)]
mod tests;
