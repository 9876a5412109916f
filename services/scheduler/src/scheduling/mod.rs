//! Admission, queues and dispatch. One `Core` (`state`, behind a mutex)
//! owns each model's class queues, the contracts' token buckets and the
//! worker table; the dispatcher task moves queued requests to workers of
//! their model with room, each with a `Lease` on a slot (`lease`) that is
//! given back when dropped; each running request has a runner task that
//! streams it and moves it to another worker when its worker fails
//! (`runner`).

pub mod directory;
pub mod lease;
pub mod metrics;
mod runner;
pub mod service;
pub mod state;
pub mod tokenizers;
pub mod usage;
pub mod workers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reservoir_domain::{Outcome, PriorityClass, Tier};
use reservoir_proto::v1 as pb;
use reservoir_runtime::InternalToken;
use reservoir_runtime::Shutdown;
use reservoir_sched::queues::{QueueLimits, ShedReason};
use reservoir_sched::{MICROS_PER_S, Micros, Weights};
use reservoir_sla::TierPolicy;
use tokio::sync::{Mutex, Notify, mpsc};
use tonic::Status;

use directory::{ActiveContract, Directory};
use reservoir_metering::usage_log::UsageLog;
pub use state::{BURST_WINDOW_S, Core};

/// How many times its usual share of requests a worker may hold when the
/// extra ones are reserved (the worker's own queue bounds the total).
const RESERVED_OVERCOMMIT: usize = 4;
/// Deadline of a call to a worker (a generation: until its stream starts).
const WORKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the dispatcher looks again without being woken.
const DISPATCH_TICK: Duration = Duration::from_millis(50);
/// How many times its TTFT target a reserved request may wait in the queue.
/// Past its target it has missed it already (the SLA counts the miss), but a
/// late answer is still worth more to its client than an error; past four
/// times the target the pool is not about to serve it (no worker of its
/// model, or far too little room), so the client is answered 503 with
/// Retry-After, and the SLA counts a platform error, instead of the request
/// waiting on with no bound.
pub const QUEUE_DEADLINE_TTFT_TARGETS: u64 = 4;

/// How long a reserved request under a contract of `tier` may wait in the
/// queue: `QUEUE_DEADLINE_TTFT_TARGETS` times its TTFT target (the SLA's
/// own rule, `TierPolicy::ttft_target_ms`).
pub fn queue_deadline_micros(tier: Tier, prompt_tokens: u64, prefill_tokens_per_s: u32) -> Micros {
    let target_ms = TierPolicy::of(tier).ttft_target_ms(prompt_tokens, prefill_tokens_per_s);
    target_ms.saturating_mul(QUEUE_DEADLINE_TTFT_TARGETS).saturating_mul(MICROS_PER_S / 1000)
}

/// When the first token of a request received at `received_at` is due under
/// a contract of `tier`: its TTFT target later (the SLA's rule). `None` only
/// where the target is too far off for the clock.
pub fn first_token_due(
    received_at: Instant,
    tier: Tier,
    prompt_tokens: u64,
    prefill_tokens_per_s: u32,
) -> Option<Instant> {
    let target_ms = TierPolicy::of(tier).ttft_target_ms(prompt_tokens, prefill_tokens_per_s);
    received_at.checked_add(Duration::from_millis(target_ms))
}

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
#[derive(Debug)]
pub struct Pending {
    /// Its `model` was validated at admission: it names its queues and workers.
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
    /// A reserved request's TTFT target (`TierPolicy::ttft_target_ms`)
    /// counted from `received_at`: the worker prefills by it.
    pub first_token_due: Option<Instant>,
}

/// What every task of the scheduler shares.
pub struct Shared {
    pub core: Mutex<Core>,
    /// Wakes the dispatcher: a request queued, a slot given back, a worker back.
    pub wake: Arc<Notify>,
    pub directory: Directory,
    pub tokenizers: tokenizers::Tokenizers,
    pub usage: UsageLog,
    pub per_worker_in_flight: usize,
    pub fcfs: bool,
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
        let wake = Arc::new(Notify::new());
        let mut core = Core::new(config.queue_limits, wake.clone(), config.internal_token.clone());
        for endpoint in &config.workers {
            core.register(endpoint.clone())?;
        }
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            wake,
            directory,
            tokenizers: Default::default(),
            usage,
            per_worker_in_flight: config.per_worker_in_flight.max(1),
            fcfs: config.fcfs,
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

/// Moves queued requests to workers of their model with room until
/// shutdown; answers what waited too long: burst and spot past the queue
/// timeout 429 (shed), reserved past its deadline 503 (a platform error).
pub async fn dispatch_loop(shared: Arc<Shared>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(DISPATCH_TICK) => {}
            _ = shutdown.wait() => return,
        }
        let now = shared.now();
        let dispatched = {
            let mut core = shared.core.lock().await;
            let dispatched = core.dispatch(now, |class| shared.in_flight_cap(class));
            for (model, class, depth) in core.queue_depths() {
                let depth = i64::try_from(depth).unwrap_or(i64::MAX);
                shared.metrics.queue_depth.with_label_values(&[model, class.as_str()]).set(depth);
            }
            dispatched
        };
        // Recorded (on disk) before the client hears of it; off this loop,
        // which must not wait for the spool.
        for (class, pending, shed) in dispatched.expired {
            let (status, outcome) = match shed.reason {
                ShedReason::DeadlinePassed => {
                    shared.metrics.deadline_passed.with_label_values(&[class.as_str()]).inc();
                    let why = format!("the {class} request waited past its queue deadline");
                    (service::unavailable_status(shed.retry_after_s, &why), Outcome::PlatformError)
                }
                ShedReason::TimedOut | ShedReason::QueueFull => {
                    shared.metrics.shed.with_label_values(&[class.as_str()]).inc();
                    (service::shed_status(shed.retry_after_s, &format!("the {class} queue timed out")), Outcome::Shed)
                }
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                runner::record_unserved(&shared, &pending, outcome).await;
                let _ = pending.events.send(Err(status)).await;
            });
        }
        for (pending, lease) in dispatched.started {
            tokio::spawn(runner::run(shared.clone(), pending, lease));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_request_may_wait_four_times_its_ttft_target() {
        // Enterprise: 500 ms base; 300 prompt tokens at 1000/s add 300 ms.
        assert_eq!(queue_deadline_micros(Tier::Enterprise, 300, 1000), 4 * 800_000);
        assert_eq!(queue_deadline_micros(Tier::Standard, 300, 0), 4 * 2_000_000, "prefill rate not measured");
        assert_eq!(queue_deadline_micros(Tier::Premium, u64::MAX, 1), u64::MAX, "saturates");
    }
}
