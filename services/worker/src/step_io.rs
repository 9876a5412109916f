//! What passes between the gRPC side and the step loop: requests on their
//! way in, the signals the loop checks between steps, and the load figures
//! it publishes.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

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
}

pub(crate) fn class_index(c: PriorityClass) -> usize {
    match c {
        PriorityClass::Reserved => 0,
        PriorityClass::Burst => 1,
        PriorityClass::Spot => 2,
    }
}
