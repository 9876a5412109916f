//! What passes between the gRPC side and the step loop: requests on their
//! way in, the signals the loop checks between steps, and the load figures
//! it publishes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use reservoir_domain::PriorityClass;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::cancels::Cancels;
use crate::request::{Event, Prepared};

/// A request on its way to the step loop.
pub(crate) struct Job {
    pub prepared: Prepared,
    pub events: mpsc::Sender<Event>,
    /// Held until the request is finished: it is the request's place in the queue.
    pub permit: OwnedSemaphorePermit,
}

/// How the gRPC side reaches into the step loop between steps.
pub(crate) struct Signals {
    /// The worker is shutting down: end everything as cancelled.
    pub stopping: Arc<AtomicBool>,
    /// A reserved or burst request is queued: a step in progress pauses at
    /// its next layer boundary to take it in.
    pub urgent: Arc<AtomicBool>,
    pub cancels: Arc<Cancels>,
}

/// Load figures, published after every step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoopStats {
    pub running: usize,
    pub waiting: usize,
    pub free_blocks: usize,
    pub total_blocks: usize,
    pub block_size: usize,
    pub kv_waste: f64,
    pub prefix_hit_rate: f64,
    /// Prompt and generated tokens per second over the last `RATE_WINDOW`.
    pub tokens_per_s: f64,
    pub generated_tokens_per_s: f64,
    /// Preemptions since start, by class (`class_index`).
    pub preemptions: [u64; 3],
    /// Tokens the engine computed since start: prefilled (prompts, and
    /// what preempted sequences recompute) and decoded (one token fed to a
    /// sequence that holds K/V already). Prefix-cache hits are not computed.
    pub prefilled_tokens: u64,
    pub decoded_tokens: u64,
    /// Seconds spent in engine steps since start (`Throughput::busy`).
    pub step_seconds: f64,
}

pub(crate) fn class_index(c: PriorityClass) -> usize {
    match c {
        PriorityClass::Reserved => 0,
        PriorityClass::Burst => 1,
        PriorityClass::Spot => 2,
    }
}

/// Window over which tokens/s are reported.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// What the engine has computed: tokens/s over the last `RATE_WINDOW`, and
/// totals since start (`LoopStats::prefilled_tokens`, `decoded_tokens`).
#[derive(Default)]
pub(crate) struct Throughput {
    /// (when, tokens processed, tokens generated) per step.
    window: VecDeque<(Instant, usize, usize)>,
    prefilled: u64,
    decoded: u64,
    in_steps: Duration,
}

impl Throughput {
    /// Time spent in a step (a step that paused for cut-in steps: without
    /// theirs, which they count themselves).
    pub fn busy(&mut self, step: Duration) {
        self.in_steps += step;
    }

    /// Time spent in steps since start.
    pub fn in_steps(&self) -> Duration {
        self.in_steps
    }

    /// Seconds spent in steps since start.
    pub fn step_seconds(&self) -> f64 {
        self.in_steps.as_secs_f64()
    }

    /// One step entry's tokens, before the step's totals (`step`).
    pub fn count(&mut self, decode: bool, tokens: usize) {
        if decode {
            self.decoded += 1;
        } else {
            self.prefilled += tokens as u64;
        }
    }

    /// A step's tokens processed and generated.
    pub fn step(&mut self, tokens: usize, generated: usize) {
        self.window.push_back((Instant::now(), tokens, generated));
    }

    /// (tokens/s processed, tokens/s generated) over the window, and the
    /// (prefilled, decoded) totals since start.
    pub fn read(&mut self) -> ((f64, f64), (u64, u64)) {
        let now = Instant::now();
        while self.window.front().is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_WINDOW) {
            self.window.pop_front();
        }
        let (tokens, generated) = self.window.iter().fold((0, 0), |(a, b), (_, t, g)| (a + t, b + g));
        let secs = RATE_WINDOW.as_secs_f64();
        ((tokens as f64 / secs, generated as f64 / secs), (self.prefilled, self.decoded))
    }
}
