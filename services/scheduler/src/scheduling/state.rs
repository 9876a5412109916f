//! The scheduler's owned state: one `Core`, behind one lock in `Shared`,
//! changed only through its methods.
//!
//! It holds each model's class queues, the contracts' token buckets, the
//! worker table (with each worker's model, health and slot counter) and the
//! prefix-affinity map. A request waits in its model's queues and is placed
//! only on a worker of its model: a model without room never holds up
//! another's, and neither's requests reach the other's workers. Placing a
//! request hands out a `Lease` on one slot of the worker, which gives it back
//! when dropped (`lease`).
//!
//! Invariants: worker indices are stable (workers are added, never removed),
//! so an index held by a lease or a watcher names the same worker for the
//! scheduler's life; a worker takes a request only when it is healthy, has
//! reported (in its stats) the request's model, and has room.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use reservoir_domain::PriorityClass;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_runtime::InternalToken;
use reservoir_sched::Micros;
use reservoir_sched::classify::{Admission, ContractState, classify};
use reservoir_sched::queues::{ClassQueues, Entry, QueueLimits, Shed};
use reservoir_sched::routing::{self, WorkerView};
use tokio::sync::Notify;
use uuid::Uuid;

use super::directory::ActiveContract;
use super::lease::{Client, Lease, SlotCounter};
use super::{Pending, WorkerEndpoint, metrics::Metrics};

/// Seconds of its rate a contract's bucket holds (its burst window). Chat
/// traffic is long-tailed: one large request can cost ten seconds of a
/// small contract's rate. A tenant offering 70% of its rate with such
/// requests (log-normal prompts up to 1,000 tokens, `max_tokens` up to 256)
/// finds a 4 s bucket in debt for about 16% of its requests, which then run
/// as burst; with 30 s, 0.3% (`crates/sched/tests/bucket_depth.rs`
/// simulates it). The cost: all contracts emptying full
/// buckets at once queue up to 30 s of their rates, which the queue
/// deadline (four times the TTFT target) bounds.
pub const BURST_WINDOW_S: u32 = 30;
/// Most workers the scheduler follows: a registration beyond it is refused,
/// so a caller cannot grow the scheduler's table (and its watchers) at will.
pub const WORKERS_MAX: usize = 256;
/// Prefix keys remembered for affinity; past this the map starts over.
const AFFINITY_KEYS_MAX: usize = 100_000;
/// How often full contract buckets are forgotten.
const FORGET_FULL_BUCKETS_EVERY: Micros = 60 * reservoir_sched::MICROS_PER_S;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the scheduler already follows {WORKERS_MAX} workers")]
    Full,
    #[error("url: {0}")]
    BadUrl(anyhow::Error),
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The id was known (its url is updated if it moved).
    Known,
    /// A new worker at this index: its watcher is to be started.
    Added(usize),
}

struct WorkerSlot {
    endpoint: WorkerEndpoint,
    client: Client,
    slots: Arc<SlotCounter>,
    /// Its stats stream is alive (see `workers::watch`).
    healthy: bool,
    /// From the worker's last stats.
    free_kv_blocks: u32,
    /// The model it serves, from its stats (empty until the first: it gets
    /// no request before it said which model it serves).
    model_id: String,
}

fn client_for(url: &str, token: &InternalToken) -> anyhow::Result<Client> {
    // A call waits at most this long for the worker's answer (for a
    // generation, for its stream to start); a silent stream is caught by
    // the stats watcher.
    let channel = reservoir_runtime::grpc::client_channel(url, super::WORKER_CALL_TIMEOUT)?;
    Ok(WorkerServiceClient::new(token.attach(channel)))
}

fn new_bucket(contract: &ActiveContract, now: Micros) -> ContractState {
    ContractState {
        bucket: reservoir_sched::bucket::ContractBucket::new(contract.rate_tokens_per_s, BURST_WINDOW_S, now),
        allow_burst: contract.allow_burst,
    }
}

/// What one dispatch round decided.
#[derive(Default)]
pub struct Dispatched {
    /// Requests placed on a worker, each with its lease.
    pub started: Vec<(Pending, Lease)>,
    /// Requests that left their queue unserved (timeout or deadline), with
    /// the class they waited in.
    pub expired: Vec<(PriorityClass, Pending, Shed)>,
}

pub struct Core {
    /// Class queues per model.
    queues: HashMap<String, ClassQueues<Pending>>,
    queue_limits: QueueLimits,
    buckets: HashMap<Uuid, ContractState>,
    workers: Vec<WorkerSlot>,
    /// (Model, prompt prefix) key -> the worker that last served it.
    affinity: HashMap<u64, usize>,
    buckets_checked_at: Micros,
    /// Handed to every lease: a slot given back wakes the dispatcher.
    wake: Arc<Notify>,
    /// Sent with every call to a worker, those that register later included.
    token: InternalToken,
}

impl Core {
    pub fn new(queue_limits: QueueLimits, wake: Arc<Notify>, token: InternalToken) -> Core {
        Core {
            queues: HashMap::new(),
            queue_limits,
            buckets: HashMap::new(),
            workers: Vec::new(),
            affinity: HashMap::new(),
            buckets_checked_at: 0,
            wake,
            token,
        }
    }

    // ---- workers -------------------------------------------------------

    /// Adds a worker, points a known id at a new url, or gives a known url
    /// to the new id registering from it.
    pub fn register(&mut self, endpoint: WorkerEndpoint) -> Result<Registered, RegisterError> {
        if let Some(slot) = self.workers.iter_mut().find(|w| w.endpoint.id == endpoint.id) {
            if slot.endpoint.url != endpoint.url {
                tracing::info!(worker = %endpoint.id, url = %endpoint.url, "worker moved");
                slot.client = client_for(&endpoint.url, &self.token).map_err(RegisterError::BadUrl)?;
                slot.endpoint = endpoint;
            }
            return Ok(Registered::Known);
        }
        // A worker that names itself picks a new id when it restarts; at the
        // same address it is the same place in the pool, so it takes over
        // the old entry instead of leaving a dead one behind (the table is
        // bounded, and a crash loop would otherwise fill it).
        if let Some(slot) = self.workers.iter_mut().find(|w| w.endpoint.url == endpoint.url) {
            tracing::info!(worker = %endpoint.id, was = %slot.endpoint.id, url = %endpoint.url,
                "a new worker at a known address; it replaces the one that was there");
            slot.endpoint.id = endpoint.id;
            return Ok(Registered::Known);
        }
        if self.workers.len() >= WORKERS_MAX {
            return Err(RegisterError::Full);
        }
        let client = client_for(&endpoint.url, &self.token).map_err(RegisterError::BadUrl)?;
        tracing::info!(worker = %endpoint.id, url = %endpoint.url, "worker registered");
        self.workers.push(WorkerSlot {
            endpoint,
            client,
            slots: Arc::default(),
            healthy: true,
            free_kv_blocks: 0,
            model_id: String::new(),
        });
        Ok(Registered::Added(self.workers.len() - 1))
    }

    /// A client of worker `index` (for its watcher).
    pub fn worker_client(&self, index: usize) -> Option<Client> {
        self.workers.get(index).map(|w| w.client.clone())
    }

    /// Records what worker `index`'s stats stream said (`None`: it failed).
    /// Answers whether the worker just came back.
    pub fn note_stats(&mut self, index: usize, stats: Option<&pb::WorkerStats>, metrics: &Metrics) -> bool {
        let Some(slot) = self.workers.get_mut(index) else { return false };
        let id = slot.endpoint.id.as_str();
        metrics.worker_up.with_label_values(&[id]).set(i64::from(stats.is_some()));
        if let Some(s) = stats {
            let used = 1.0 - f64::from(s.free_kv_blocks) / f64::from(s.total_kv_blocks.max(1));
            metrics.worker_kv_used_ratio.with_label_values(&[id]).set(used);
            metrics.worker_tokens_per_s.with_label_values(&[id]).set(s.tokens_per_s);
            slot.free_kv_blocks = s.free_kv_blocks;
            if slot.model_id != s.model_id {
                tracing::info!(worker = %id, model = %s.model_id, "worker serves this model");
                slot.model_id.clone_from(&s.model_id);
            }
        }
        let back = stats.is_some() && !slot.healthy;
        if slot.healthy && stats.is_none() {
            tracing::warn!(worker = %id, "worker stats stream lost; no new work for it until it is back");
        }
        slot.healthy = stats.is_some();
        back
    }

    pub fn mark_unhealthy(&mut self, index: usize) {
        if let Some(w) = self.workers.get_mut(index) {
            w.healthy = false;
        }
    }

    /// Every worker as `ListWorkers` answers it.
    pub fn statuses(&self) -> Vec<pb::WorkerStatus> {
        self.workers
            .iter()
            .map(|w| pb::WorkerStatus {
                worker_id: w.endpoint.id.clone(),
                model_id: w.model_id.clone(),
                healthy: w.healthy,
                in_flight: u32::try_from(w.slots.in_flight()).unwrap_or(u32::MAX),
            })
            .collect()
    }

    // ---- admission -----------------------------------------------------

    /// The class of a request costing `cost_milli` from a tenant holding
    /// `contracts` (see `reservoir_sched::classify`), and the contract it
    /// is served under or spills over from.
    pub fn admit(
        &mut self,
        contracts: &[ActiveContract],
        cost_milli: u64,
        wants_spot: bool,
        now: Micros,
    ) -> (Admission, Option<ActiveContract>) {
        // The buckets leave the map for the decision (they are few) and go
        // back. The spillover switch is the contract's as read now.
        let mut states: Vec<ContractState> = contracts
            .iter()
            .map(|c| {
                let mut state = self.buckets.remove(&c.id).unwrap_or_else(|| new_bucket(c, now));
                state.allow_burst = c.allow_burst;
                state
            })
            .collect();
        let admission = classify(&mut states, cost_milli, wants_spot, now);
        for (contract, state) in contracts.iter().zip(states) {
            self.buckets.insert(contract.id, state);
        }
        (admission, admission.contract.and_then(|i| contracts.get(i).copied()))
    }

    /// Replaces a request's admission charge by what it used.
    pub fn settle(&mut self, contract: &ActiveContract, charged_milli: u64, used_milli: u64, now: Micros) {
        let state = self.buckets.entry(contract.id).or_insert_with(|| new_bucket(contract, now));
        state.bucket.settle(charged_milli, used_milli, now);
    }

    /// Spot `max_tokens` after degradation of `model`'s spot queue.
    pub fn spot_max_tokens(&self, model: &str, asked: u32) -> u32 {
        self.queues.get(model).map_or(asked, |q| q.spot_max_tokens(asked))
    }

    /// Queues a request in its model's queues (shed and handed back when full).
    pub fn enqueue(
        &mut self,
        class: PriorityClass,
        entry: Entry<Pending>,
        now: Micros,
    ) -> Result<(), (Shed, Box<Entry<Pending>>)> {
        let limits = self.queue_limits;
        let model = entry.item.request.model.clone();
        let queues = self.queues.entry(model).or_insert_with(|| ClassQueues::new(limits));
        queues.push(class, entry, now).map_err(|(shed, entry)| (shed, Box::new(entry)))
    }

    // ---- dispatch ------------------------------------------------------

    /// One round: forgets full buckets now and then, takes out what waited
    /// too long, and places queued requests, highest class first, on workers
    /// of their model with room (`cap` per class). A model whose head
    /// request finds no room stops there; the others go on.
    pub fn dispatch(&mut self, now: Micros, cap: impl Fn(PriorityClass) -> usize) -> Dispatched {
        if now.saturating_sub(self.buckets_checked_at) >= FORGET_FULL_BUCKETS_EVERY {
            self.buckets_checked_at = now;
            self.forget_full_buckets(now);
        }
        let mut dispatched = Dispatched::default();
        for (model, queues) in &mut self.queues {
            for (class, entry, shed) in queues.expire(now) {
                dispatched.expired.push((class, entry.item, shed));
            }
            while let Some((class, entry)) = queues.pop() {
                let key = affinity_key(model, &entry.item.request);
                let preferred = self.affinity.get(&key).copied();
                let views = views_for(&self.workers, model);
                match routing::choose(&views, cap(class), preferred, None) {
                    Some(index) => {
                        if self.affinity.len() >= AFFINITY_KEYS_MAX {
                            self.affinity.clear();
                        }
                        self.affinity.insert(key, index);
                        let lease = lease_of(&self.workers, index, &self.wake);
                        dispatched.started.push((entry.item, lease));
                    }
                    None => {
                        queues.push_front(class, entry);
                        break;
                    }
                }
            }
        }
        dispatched
    }

    /// A slot on another worker of `model` with room (not `avoid`), for a
    /// request whose worker failed or was busy.
    pub fn lease_another(&mut self, model: &str, cap: usize, avoid: Option<usize>) -> Option<Lease> {
        let index = routing::choose(&views_for(&self.workers, model), cap, None, avoid)?;
        Some(lease_of(&self.workers, index, &self.wake))
    }

    /// Requests of `model` waiting in `class`.
    pub fn queue_depth(&self, model: &str, class: PriorityClass) -> usize {
        self.queues.get(model).map_or(0, |q| q.len(class))
    }

    /// Waiting requests of every model that has had requests queued, per
    /// class. Read on every pass of the dispatch loop: nothing is collected
    /// or sorted.
    pub fn queue_depths(&self) -> impl Iterator<Item = (&str, PriorityClass, usize)> + '_ {
        self.queues
            .iter()
            .flat_map(|(model, q)| PriorityClass::ALL.iter().map(move |&class| (model.as_str(), class, q.len(class))))
    }

    /// Forgets the buckets that are full: one made afresh on the contract's
    /// next request is the same, so nothing changes but the memory held for
    /// contracts that ended or went quiet.
    fn forget_full_buckets(&mut self, now: Micros) {
        self.buckets.retain(|_, state| state.bucket.level_milli(now) < state.bucket.capacity_milli());
    }
}

/// What routing sees of each worker for a request of `model`.
fn views_for(workers: &[WorkerSlot], model: &str) -> Vec<WorkerView> {
    workers
        .iter()
        .map(|w| WorkerView {
            eligible: w.healthy && w.model_id == model,
            in_flight: w.slots.in_flight(),
            free_kv_blocks: w.free_kv_blocks,
        })
        .collect()
}

fn lease_of(workers: &[WorkerSlot], index: usize, wake: &Arc<Notify>) -> Lease {
    let w = &workers[index];
    Lease::take(index, &w.endpoint.id, &w.client, &w.slots, wake)
}

/// The affinity key of a request: its model and the text whose prefix
/// decides affinity (the raw prompt, or the messages).
fn affinity_key(model: &str, request: &pb::CompleteRequest) -> u64 {
    let prefix = match &request.input {
        Some(pb::complete_request::Input::Prompt(p)) => routing::prefix_key(p),
        Some(pb::complete_request::Input::Messages(m)) => {
            let mut text = String::new();
            for turn in &m.messages {
                text.push_str(&turn.role);
                text.push('\n');
                text.push_str(&turn.content);
                text.push('\n');
                if text.len() >= routing::PREFIX_BYTES {
                    break;
                }
            }
            routing::prefix_key(&text)
        }
        None => 0,
    };
    let mut h = DefaultHasher::new();
    (model, prefix).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
