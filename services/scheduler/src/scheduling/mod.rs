//! Admission, queues and dispatch. One `Core` (behind a mutex) holds the
//! class queues, the contracts' token buckets and the workers' slots; the
//! dispatcher task moves queued requests to workers with room; each running
//! request has a runner task that streams it and moves it to another worker
//! when its worker fails (`runner`).

pub mod directory;
pub mod metrics;
mod runner;
pub mod service;
pub mod tokenizers;
pub mod usage;
pub mod workers;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reservoir_domain::PriorityClass;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_runtime::Shutdown;
use reservoir_runtime::{InternalChannel, InternalToken};
use reservoir_sched::classify::{Admission, ContractState, classify};
use reservoir_sched::queues::{ClassQueues, QueueLimits};
use reservoir_sched::routing::{self, WorkerView};
use reservoir_sched::{Micros, Weights};
use tokio::sync::{Mutex, Notify, mpsc};
use tonic::Status;
use uuid::Uuid;

use directory::{ActiveContract, Directory};
use reservoir_metering::usage_log::UsageLog;

/// Seconds of its rate a contract's bucket holds (its burst window).
pub const BURST_WINDOW_S: u32 = 4;
/// How many times its usual share of requests a worker may hold when the
/// extra ones are reserved (the worker's own queue bounds the total).
const RESERVED_OVERCOMMIT: usize = 4;
/// Deadline of a call to a worker (a generation: until its stream starts).
const WORKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the dispatcher looks again without being woken.
const DISPATCH_TICK: Duration = Duration::from_millis(50);
/// How often full contract buckets are forgotten.
const FORGET_FULL_BUCKETS_EVERY: Micros = 60 * reservoir_sched::MICROS_PER_S;

#[derive(Debug, Clone)]
pub struct WorkerEndpoint {
    pub id: String,
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct SchedulingConfig {
    pub workers: Vec<WorkerEndpoint>,
    /// Requests one worker runs at once.
    pub per_worker_in_flight: usize,
    pub queue_limits: QueueLimits,
    /// Baseline for benchmarks: one first-come-first-served queue and
    /// class-blind workers (classes are still recorded for metering).
    pub fcfs: bool,
    /// Sent with every call to a worker.
    pub internal_token: InternalToken,
}

/// A request waiting for a worker.
pub struct Pending {
    pub request: pb::CompleteRequest,
    pub class: PriorityClass,
    pub contract: Option<ActiveContract>,
    pub weights: Weights,
    /// Counted (the ids go to the worker) or estimated at admission; the
    /// worker's count is the one billed.
    pub prompt_tokens: tokenizers::PromptTokens,
    /// Taken from the contract's bucket at admission (settled at the end).
    pub charged_milli: u64,
    pub events: mpsc::Sender<Result<pb::CompleteEvent, Status>>,
    pub received_at: Instant,
}

struct WorkerSlot {
    endpoint: WorkerEndpoint,
    client: WorkerServiceClient<InternalChannel>,
    in_flight: usize,
    /// Its stats stream is alive (see `workers::watch`).
    healthy: bool,
    /// From the worker's last stats.
    free_kv_blocks: u32,
    /// The model it serves, from its stats (empty until the first).
    model_id: String,
}

impl WorkerSlot {
    fn new(endpoint: WorkerEndpoint, token: &InternalToken) -> anyhow::Result<Self> {
        // A call waits at most this long for the worker's answer (for a
        // generation, for its stream to start); a silent stream is caught by
        // the stats watcher.
        let channel = reservoir_runtime::grpc::client_channel(&endpoint.url, WORKER_CALL_TIMEOUT)?;
        let client = WorkerServiceClient::new(token.attach(channel));
        Ok(WorkerSlot { endpoint, client, in_flight: 0, healthy: true, free_kv_blocks: 0, model_id: String::new() })
    }
}

fn new_bucket(contract: &ActiveContract, now: Micros) -> ContractState {
    ContractState {
        bucket: reservoir_sched::bucket::ContractBucket::new(contract.rate_tokens_per_s, BURST_WINDOW_S, now),
        allow_burst: contract.allow_burst,
    }
}

/// Prefix keys remembered for affinity; past this the map starts over.
const AFFINITY_KEYS_MAX: usize = 100_000;

pub struct Core {
    queues: ClassQueues<Pending>,
    buckets: HashMap<Uuid, ContractState>,
    workers: Vec<WorkerSlot>,
    /// Prompt prefix key -> the worker that last served it.
    affinity: HashMap<u64, usize>,
    buckets_checked_at: Micros,
}

/// What every task of the scheduler shares.
pub struct Shared {
    pub core: Mutex<Core>,
    pub wake: Notify,
    pub directory: Directory,
    pub tokenizers: tokenizers::Tokenizers,
    pub usage: UsageLog,
    pub per_worker_in_flight: usize,
    pub fcfs: bool,
    /// Sent with every call to a worker, those that register later included.
    pub internal_token: InternalToken,
    pub metrics: metrics::Metrics,
    /// Ends the per-worker stats watchers, including those of workers that
    /// register later.
    pub shutdown: Shutdown,
    epoch: Instant,
}

impl Shared {
    /// The shared state, with a stats watcher running for every configured
    /// worker (see `workers`).
    pub fn start(
        config: &SchedulingConfig,
        directory: Directory,
        usage: UsageLog,
        metrics: metrics::Metrics,
        shutdown: Shutdown,
    ) -> anyhow::Result<Arc<Self>> {
        let workers = config
            .workers
            .iter()
            .map(|e| WorkerSlot::new(e.clone(), &config.internal_token))
            .collect::<anyhow::Result<_>>()?;
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                queues: ClassQueues::new(config.queue_limits),
                buckets: HashMap::new(),
                workers,
                affinity: HashMap::new(),
                buckets_checked_at: 0,
            }),
            wake: Notify::new(),
            directory,
            tokenizers: Default::default(),
            usage,
            per_worker_in_flight: config.per_worker_in_flight.max(1),
            fcfs: config.fcfs,
            internal_token: config.internal_token.clone(),
            metrics,
            shutdown,
            epoch: Instant::now(),
        });
        for index in 0..config.workers.len() {
            tokio::spawn(workers::watch(shared.clone(), index));
        }
        Ok(shared)
    }

    /// How many requests a worker may hold when the next is of `class`.
    /// Strict priority across the scheduler-worker boundary: a reserved
    /// request goes to a worker even when lower classes fill its usual share,
    /// and the worker's planner preempts spot for it.
    pub fn in_flight_cap(&self, class: PriorityClass) -> usize {
        if class == PriorityClass::Reserved && !self.fcfs {
            self.per_worker_in_flight.saturating_mul(RESERVED_OVERCOMMIT)
        } else {
            self.per_worker_in_flight
        }
    }

    /// The scheduler's clock for the pure policy crate.
    pub fn now(&self) -> Micros {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

impl Core {
    /// The contract's bucket, created full on first sight.
    pub fn bucket(&mut self, contract: &ActiveContract, now: Micros) -> &mut ContractState {
        self.buckets.entry(contract.id).or_insert_with(|| new_bucket(contract, now))
    }

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

    /// Forgets the buckets that are full: one made afresh on the contract's
    /// next request is the same, so nothing changes but the memory held for
    /// contracts that ended or went quiet.
    fn forget_full_buckets(&mut self, now: Micros) {
        self.buckets.retain(|_, state| state.bucket.level_milli(now) < state.bucket.capacity_milli());
    }

    fn views(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .map(|w| WorkerView { healthy: w.healthy, in_flight: w.in_flight, free_kv_blocks: w.free_kv_blocks })
            .collect()
    }

    /// A healthy worker with room (see `reservoir_sched::routing`); `avoid` is skipped.
    fn free_worker(&self, per_worker: usize, avoid: Option<usize>) -> Option<usize> {
        routing::choose(&self.views(), per_worker, None, avoid)
    }

    /// The worker for `pending`: the one that last served its prompt prefix
    /// when it has room, else by load and memory. Remembers the choice.
    fn worker_for(&mut self, pending: &Pending, per_worker: usize) -> Option<usize> {
        let key = prefix_key_of(&pending.request);
        let chosen = routing::choose(&self.views(), per_worker, self.affinity.get(&key).copied(), None)?;
        if self.affinity.len() >= AFFINITY_KEYS_MAX {
            self.affinity.clear();
        }
        self.affinity.insert(key, chosen);
        Some(chosen)
    }

    fn release(&mut self, worker: usize) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }

    fn mark_unhealthy(&mut self, worker: usize) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.healthy = false;
        }
    }
}

/// The text whose prefix decides affinity: the raw prompt, or the messages.
fn prefix_key_of(request: &pb::CompleteRequest) -> u64 {
    match &request.input {
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
    }
}

/// Moves queued requests to workers with room until shutdown; sheds what
/// waited too long.
pub async fn dispatch_loop(shared: Arc<Shared>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(DISPATCH_TICK) => {}
            _ = shutdown.wait() => return,
        }
        let now = shared.now();
        let mut started = Vec::new();
        let mut expired = Vec::new();
        {
            let mut core = shared.core.lock().await;
            if now.saturating_sub(core.buckets_checked_at) >= FORGET_FULL_BUCKETS_EVERY {
                core.buckets_checked_at = now;
                core.forget_full_buckets(now);
            }
            for (class, entry, shed) in core.queues.expire(now) {
                shared.metrics.shed.with_label_values(&[class.as_str()]).inc();
                let status = service::shed_status(shed.retry_after_s, &format!("the {class} queue timed out"));
                expired.push((entry.item, status));
            }
            while let Some((class, entry)) = core.queues.pop() {
                match core.worker_for(&entry.item, shared.in_flight_cap(class)) {
                    Some(worker) => {
                        core.workers[worker].in_flight += 1;
                        started.push((entry.item, worker));
                    }
                    None => {
                        core.queues.push_front(class, entry);
                        break;
                    }
                }
            }
            for class in PriorityClass::ALL {
                let depth = i64::try_from(core.queues.len(*class)).unwrap_or(i64::MAX);
                shared.metrics.queue_depth.with_label_values(&[class.as_str()]).set(depth);
            }
        }
        // Recorded (on disk) before the client hears of it; off this loop,
        // which must not wait for the spool.
        for (pending, status) in expired {
            let shared = shared.clone();
            tokio::spawn(async move {
                runner::record_shed(&shared, &pending).await;
                let _ = pending.events.send(Err(status)).await;
            });
        }
        for (pending, worker) in started {
            tokio::spawn(runner::run(shared.clone(), pending, worker));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Core {
        Core {
            queues: ClassQueues::new(QueueLimits::default()),
            buckets: HashMap::new(),
            workers: Vec::new(),
            affinity: HashMap::new(),
            buckets_checked_at: 0,
        }
    }

    #[test]
    fn only_full_buckets_are_forgotten_and_forgetting_them_changes_nothing() {
        let contract = ActiveContract { id: Uuid::nil(), rate_tokens_per_s: 10, allow_burst: true };
        let mut core = core();
        let (admission, _) = core.admit(&[contract], 30_000, false, 0);
        assert_eq!(admission.class, PriorityClass::Reserved);
        core.forget_full_buckets(1_000_000);
        assert_eq!(core.buckets.len(), 1, "20 of 40 tokens after 1 s: kept");
        core.forget_full_buckets(3_000_000);
        assert!(core.buckets.is_empty(), "full again after 3 s: forgotten");
        let remade = core.bucket(&contract, 3_000_000).bucket.clone();
        assert_eq!(remade, new_bucket(&contract, 3_000_000).bucket);
    }

    #[test]
    fn the_spillover_switch_is_read_from_the_contract_each_time() {
        let mut contract = ActiveContract { id: Uuid::nil(), rate_tokens_per_s: 1, allow_burst: true };
        let mut core = core();
        assert_eq!(core.admit(&[contract], 10_000, false, 0).0.class, PriorityClass::Reserved);
        assert_eq!(core.admit(&[contract], 1_000, false, 0).0.class, PriorityClass::Burst);
        contract.allow_burst = false;
        assert_eq!(core.admit(&[contract], 1_000, false, 0).0.class, PriorityClass::Spot);
    }
}
