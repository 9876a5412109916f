//! The engine thread: owns the backend, takes jobs from a bounded channel,
//! lets the `Planner` choose each step's work, samples, and streams events
//! back through each request's own bounded channel.
//!
//! Why a plain OS thread: a step is a blocking forward pass of tens of
//! milliseconds; on the async runtime it would stall every other request.
//!
//! Bounds: jobs in the worker (queued or running) are capped by the gRPC
//! layer's semaphore, and the job channel has the same capacity. A request's
//! event channel holds every event it can ever get (its remaining tokens
//! plus the final event), so sending never blocks and never fails for lack
//! of room: a slow client cannot stall the step loop. A closed channel means
//! the client went away: the sequence is removed and its blocks freed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use reservoir_domain::PriorityClass;
use reservoir_engine::{EngineError, Logits, Sampled, SeqId, SeqLogits, StepBatch, StepEntry, StepOutput, Tokenizer};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use crate::backend::InferenceBackend;
use crate::cancels::Cancels;
use crate::request::{Event, FinishReason, Prepared, TokenLogprobs, Usage};
pub(crate) use crate::step_io::{Job, LoopStats, Signals, Throughput, class_index};
use reservoir_sched::planner::{NO_DEADLINE, Plan, Planner, Running, Waiting};

mod cut_in;

use cut_in::lowest_below_reserved;

/// A sampled token, with its logprobs when the request asked for them.
type Pick = Result<(u32, Option<Sampled>), EngineError>;

struct Seq {
    p: Prepared,
    events: mpsc::Sender<Event>,
    _permit: OwnedSemaphorePermit,
    /// Tokens with K/V in the engine (0 while waiting).
    computed: usize,
    /// Admission order of the current run.
    started: u64,
    running: bool,
    /// Prompt tokens found in the prefix cache at first admission.
    cached_prompt: Option<usize>,
    /// Prompt tokens processed at least once (computed or found cached):
    /// what a request cancelled mid-prefill is metered for.
    prompt_done: usize,
}

pub(crate) struct StepLoop<B> {
    backend: B,
    tokenizer: Arc<Tokenizer>,
    planner: Planner,
    jobs: mpsc::Receiver<Job>,
    stats: watch::Sender<LoopStats>,
    stopping: Arc<AtomicBool>,
    /// Set by the gRPC side when it queues a reserved or burst request: a
    /// step in progress pauses at its next layer boundary to take it in.
    urgent: Arc<AtomicBool>,
    cancels: Arc<Cancels>,
    ctx_len: usize,
    seqs: HashMap<SeqId, Seq>,
    /// Per class, by `due` (earliest deadline first), then arrival; a
    /// preempted sequence goes back before those due when it is.
    waiting: [VecDeque<SeqId>; 3],
    running: Vec<SeqId>,
    next_id: SeqId,
    next_start: u64,
    throughput: Throughput,
    preemptions: [u64; 3],
    /// The planner's clock starts here: deadlines are microseconds since.
    epoch: Instant,
}

impl<B: InferenceBackend> StepLoop<B> {
    pub fn new(
        backend: B,
        planner: Planner,
        jobs: mpsc::Receiver<Job>,
        stats: watch::Sender<LoopStats>,
        signals: Signals,
    ) -> Self {
        let Signals { stopping, urgent, cancels } = signals;
        let tokenizer = backend.tokenizer();
        let ctx_len = backend.info().ctx_len;
        StepLoop {
            backend,
            tokenizer,
            planner,
            jobs,
            stats,
            stopping,
            urgent,
            cancels,
            ctx_len,
            seqs: HashMap::new(),
            waiting: Default::default(),
            running: Vec::new(),
            next_id: 1,
            next_start: 0,
            throughput: Throughput::default(),
            preemptions: [0; 3],
            epoch: Instant::now(),
        }
    }

    /// Runs until every job sender is gone and no work is left.
    pub fn run(mut self) {
        loop {
            if self.seqs.is_empty() {
                self.publish();
                match self.jobs.blocking_recv() {
                    Some(job) => self.accept(job),
                    None => break,
                }
            }
            while let Ok(job) = self.jobs.try_recv() {
                self.accept(job);
            }
            if self.stopping.load(Ordering::Relaxed) {
                let ids: Vec<SeqId> = self.seqs.keys().copied().collect();
                for id in ids {
                    self.finish(id, FinishReason::Cancelled, "the worker is shutting down");
                }
            }
            self.drop_cancelled();
            for request_id in self.cancels.take() {
                let found = self.seqs.iter().find(|(_, s)| s.p.request_id == request_id).map(|(&id, _)| id);
                if let Some(id) = found {
                    self.finish(id, FinishReason::Cancelled, "the client went away");
                }
            }
            if !self.seqs.is_empty() {
                self.step_once();
            }
            self.publish();
        }
        tracing::debug!("step loop stopped");
    }

    fn accept(&mut self, job: Job) {
        let id = self.next_id;
        self.next_id += 1;
        let done = job.prepared.done;
        let class = job.prepared.class;
        tracing::debug!(request_id = %job.prepared.request_id, tenant = %job.prepared.tenant, %class, seq = id, "queued");
        self.cancels.enter(&job.prepared.request_id);
        self.seqs.insert(
            id,
            Seq {
                p: job.prepared,
                events: job.events,
                _permit: job.permit,
                computed: 0,
                started: 0,
                running: false,
                cached_prompt: None,
                prompt_done: 0,
            },
        );
        self.enqueue(id, false);
        if let Some(reason) = done {
            self.finish(id, reason, "");
        }
    }

    /// Removes sequences whose client went away; their blocks are freed.
    fn drop_cancelled(&mut self) {
        let gone: Vec<SeqId> = self.seqs.iter().filter(|(_, s)| s.events.is_closed()).map(|(&id, _)| id).collect();
        for id in gone {
            tracing::debug!(seq = id, "client went away");
            self.remove(id);
        }
    }

    fn step_once(&mut self) {
        // A reserved prompt that arrives while a step runs cuts in between
        // its layers (`run_yielding`); one that arrived between two steps is
        // owed the same, or its prefill would go a chunk per regular step
        // behind the decodes there, and whether it came a millisecond before
        // or after a step began would decide its first token. Only reserved
        // work runs so: burst does not go ahead of reserved decodes.
        let classes = self.seqs.values().map(|s| s.p.class);
        if lowest_below_reserved(classes).is_some() && self.cut_in(PriorityClass::Burst, &HashSet::new()) {
            return;
        }
        // The planner puts each class's work before the next class's.
        let running = self.running_views();
        let waiting = self.waiting_views(|_| true);
        let plan = self.planner.next_step(&running, &waiting, self.backend.free_blocks());
        self.execute(plan, None);
    }

    /// The waiting sequences of the classes `keep` keeps; only their queues
    /// are walked (a cut-in, looked for before every step, wants reserved
    /// work alone).
    fn waiting_views(&self, keep: impl Fn(PriorityClass) -> bool) -> Vec<Waiting> {
        PriorityClass::ALL
            .iter()
            .filter(|&&class| keep(class))
            .flat_map(|&class| &self.waiting[class_index(class)])
            .filter_map(|id| {
                self.seqs.get(id).map(|s| Waiting {
                    id: *id,
                    class: s.p.class,
                    tokens: s.p.tokens.len(),
                    due: self.due(s),
                })
            })
            .collect()
    }

    /// Carries out a plan. `cutting_into` holds the sequences of the step in
    /// progress when this one runs between its layers: this step then runs
    /// whole, and cannot preempt them. Returns whether a step ran.
    fn execute(&mut self, plan: Plan, cutting_into: Option<&HashSet<SeqId>>) -> bool {
        for &id in &plan.preempt {
            self.preempt(id);
        }
        for &id in &plan.admit {
            self.admit(id);
        }
        let mut batch = StepBatch::default();
        for e in &plan.entries {
            let Some(s) = self.seqs.get(&e.id).filter(|s| s.running) else { continue };
            let len = s.p.tokens.len();
            // An admitted prompt may start further on (prefix cache hit).
            let end = e.end.max(s.computed + 1).min(len);
            if end <= s.computed {
                continue;
            }
            let logits = if end == len { Logits::Last } else { Logits::None };
            batch.entries.push(StepEntry { seq: e.id, tokens: s.p.tokens[s.computed..end].to_vec(), logits });
        }
        if batch.entries.is_empty() {
            if plan.preempt.is_empty() && plan.admit.is_empty() && cutting_into.is_none() {
                // Nothing can run now (cannot happen with validated requests);
                // do not spin.
                std::thread::sleep(Duration::from_millis(1));
            }
            return false;
        }
        let began = Instant::now();
        let counted = self.throughput.in_steps();
        let result = match cutting_into {
            Some(_) => self.backend.step(&batch),
            None => self.run_yielding(&batch),
        };
        // Each step counts its own time, as it ends: a step that paused for
        // cut-ins counts its time without theirs, which they counted as they
        // ran (a reading during a long cut-in run sees them).
        let cut_ins = self.throughput.in_steps().saturating_sub(counted);
        self.throughput.busy(began.elapsed().saturating_sub(cut_ins));
        let pausing = cutting_into.is_some_and(|s| !s.is_empty());
        // Fields are computed only when debug logging is on: not on the hot path otherwise.
        tracing::debug!(
            cut_in = cutting_into.is_some(),
            // A cut-in with no step in progress ran before a regular step.
            pausing,
            entries = batch.entries.len(),
            tokens = batch.entries.iter().map(|e| e.tokens.len()).sum::<usize>(),
            by_class = ?self.tokens_by_class(&batch),
            ms = began.elapsed().as_secs_f64() * 1e3,
            "step"
        );
        match result {
            Ok(out) => {
                self.apply(&batch, out);
                return true;
            }
            Err(EngineError::OutOfBlocks { .. }) if cutting_into.is_some() => {
                // The step in progress holds the blocks; the regular step
                // after it sorts this out.
            }
            Err(EngineError::OutOfBlocks { needed, free }) => {
                // Shared prefix blocks did not come back as the planner
                // assumed: give up the lowest-class, most recent sequence.
                let victim = Planner::victim(&self.running_views());
                tracing::debug!(needed, free, ?victim, "out of KV blocks; preempting");
                if let Some(v) = victim {
                    self.preempt(v);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "engine step failed");
                for entry in &batch.entries {
                    self.finish(entry.seq, FinishReason::Error, "the engine failed on this request");
                }
            }
        }
        false
    }

    /// A step's (decode, prompt) tokens per class, reserved first (for the step log).
    fn tokens_by_class(&self, batch: &StepBatch) -> [(usize, usize); 3] {
        let mut by_class = [(0, 0); 3];
        for e in &batch.entries {
            if let Some(s) = self.seqs.get(&e.seq) {
                let slot = &mut by_class[class_index(s.p.class)];
                if is_decode(e, s) { slot.0 += 1 } else { slot.1 += e.tokens.len() }
            }
        }
        by_class
    }

    fn running_views(&self) -> Vec<Running> {
        self.running
            .iter()
            .filter_map(|id| {
                self.seqs.get(id).map(|s| Running {
                    id: *id,
                    class: s.p.class,
                    started: s.started,
                    computed: s.computed,
                    pending: s.p.tokens.len().saturating_sub(s.computed).max(1),
                    due: self.due(s),
                })
            })
            .collect()
    }

    fn admit(&mut self, id: SeqId) {
        let Some(s) = self.seqs.get_mut(&id) else { return };
        let queue = &mut self.waiting[class_index(s.p.class)];
        if let Some(at) = queue.iter().position(|&q| q == id) {
            queue.remove(at);
        }
        match self.backend.add_sequence(id, &s.p.tokens, s.p.cache_salt) {
            Ok(cached) => {
                s.computed = cached;
                s.running = true;
                s.started = self.next_start;
                self.next_start += 1;
                s.cached_prompt.get_or_insert(cached.min(s.p.prompt_len));
                s.prompt_done = s.prompt_done.max(cached.min(s.p.prompt_len));
                self.running.push(id);
            }
            Err(e) => {
                tracing::error!(error = %e, seq = id, "cannot add sequence");
                self.finish(id, FinishReason::Error, "the engine refused this request");
            }
        }
    }

    /// Frees a running sequence's blocks and puts it back in its class queue,
    /// ahead of those due no sooner (`enqueue`); what it generated is kept
    /// (and not sent again).
    fn preempt(&mut self, id: SeqId) {
        let Some(s) = self.seqs.get_mut(&id).filter(|s| s.running) else { return };
        if let Err(e) = self.backend.remove_sequence(id) {
            tracing::error!(error = %e, seq = id, "cannot remove preempted sequence");
        }
        s.running = false;
        s.computed = 0;
        let class = s.p.class;
        self.running.retain(|&r| r != id);
        self.enqueue(id, true);
        self.preemptions[class_index(class)] += 1;
        tracing::debug!(seq = id, %class, "preempted");
    }

    /// When the sequence's first token is due, for the planner: microseconds
    /// since `epoch`. Once a token has gone out there is no first-token
    /// deadline left, but a client is reading the stream: due now, so a
    /// preempted sequence is the first of its class to come back.
    fn due(&self, s: &Seq) -> u64 {
        if s.p.completed > 0 {
            return 0;
        }
        s.p.first_token_due.map_or(NO_DEADLINE, |at| {
            u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(NO_DEADLINE)
        })
    }

    /// Puts a waiting sequence in its class queue, which stays sorted by
    /// `due`: after those due at the same time (arrival order), or before
    /// them when `ahead_of_equals` (a preempted sequence).
    fn enqueue(&mut self, id: SeqId, ahead_of_equals: bool) {
        let Some(s) = self.seqs.get(&id) else { return };
        let due = self.due(s);
        let queue = &self.waiting[class_index(s.p.class)];
        let at = queue.partition_point(|other| {
            let other_due = self.seqs.get(other).map_or(0, |o| self.due(o));
            if ahead_of_equals { other_due < due } else { other_due <= due }
        });
        self.waiting[class_index(s.p.class)].insert(at, id);
    }

    fn apply(&mut self, batch: &StepBatch, out: StepOutput) {
        for e in &batch.entries {
            if let Some(s) = self.seqs.get_mut(&e.seq) {
                self.throughput.count(is_decode(e, s), e.tokens.len());
                s.computed += e.tokens.len();
                s.prompt_done = s.prompt_done.max(s.computed.min(s.p.prompt_len));
            }
        }
        let mut generated = 0;
        for (id, pick) in self.choose_tokens(&out.outputs) {
            if self.emit_next(id, pick) {
                generated += 1;
            }
        }
        self.throughput.step(out.n_tokens, generated);
    }

    /// Each sequence's next token (with its logprob when asked for), in the
    /// order of `outputs`. Sequences sample independently, each from its own
    /// random stream, so a batch is sampled on all cores rather than on the
    /// engine thread alone while the compute threads wait.
    fn choose_tokens(&mut self, outputs: &[SeqLogits]) -> Vec<(SeqId, Pick)> {
        let index: HashMap<SeqId, usize> = outputs.iter().enumerate().map(|(i, o)| (o.seq, i)).collect();
        let mut work: Vec<(usize, &mut Seq)> =
            self.seqs.iter_mut().filter_map(|(id, s)| index.get(id).map(|&i| (i, s))).collect();
        work.sort_by_key(|(i, _)| *i);
        let choose = |(i, s): &mut (usize, &mut Seq)| {
            let logits = &outputs[*i].logits;
            let pick = if s.p.logprobs {
                s.p.sampler.sample(logits, &s.p.tokens, s.p.prompt_len).map(|x| (x.token, Some(x)))
            } else {
                s.p.sampler.sample_token(logits, &s.p.tokens, s.p.prompt_len).map(|t| (t, None))
            };
            (outputs[*i].seq, pick)
        };
        if work.len() < 4 { work.iter_mut().map(choose).collect() } else { work.par_iter_mut().map(choose).collect() }
    }

    /// Streams the sequence's chosen next token (or ends it). Returns
    /// whether a token was generated.
    fn emit_next(&mut self, id: SeqId, pick: Pick) -> bool {
        let Some(s) = self.seqs.get_mut(&id) else { return false };
        let (token, sampled) = match pick {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, seq = id, "sampling failed");
                self.finish(id, FinishReason::Error, "sampling failed");
                return false;
            }
        };
        if self.tokenizer.eos_id == Some(token) || s.p.sampler.params().stop_token_ids.contains(&token) {
            self.finish(id, FinishReason::Stop, "");
            return false;
        }
        s.p.tokens.push(token);
        s.p.completed += 1;
        let last = s.p.completed >= s.p.max_tokens;
        let piece = s.p.text.push(&self.tokenizer.token_bytes(token), last);
        let logprobs = sampled.map(|x| TokenLogprobs::new(&x, &self.tokenizer));
        let event = Event::Token { id: token, text: piece.text, logprobs };
        match s.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => {
                tracing::debug!(seq = id, "client went away");
                self.remove(id);
                return true;
            }
            Err(TrySendError::Full(_)) => {
                // Cannot happen: the channel holds every event of the request.
                tracing::error!(seq = id, "event channel full; dropping the request");
                self.remove(id);
                return true;
            }
        }
        if piece.stopped {
            self.finish(id, FinishReason::Stop, "");
        } else if last || s.p.tokens.len() > self.ctx_len {
            self.finish(id, FinishReason::Length, "");
        }
        true
    }

    /// Removes the sequence everywhere, freeing its blocks.
    fn remove(&mut self, id: SeqId) -> Option<Seq> {
        let s = self.seqs.remove(&id)?;
        self.cancels.leave(&s.p.request_id);
        if s.running {
            if let Err(e) = self.backend.remove_sequence(id) {
                tracing::error!(error = %e, seq = id, "cannot remove sequence");
            }
            self.running.retain(|&r| r != id);
        } else {
            let queue = &mut self.waiting[class_index(s.p.class)];
            if let Some(at) = queue.iter().position(|&q| q == id) {
                queue.remove(at);
            }
        }
        Some(s)
    }

    /// Sends the final event and removes the sequence.
    fn finish(&mut self, id: SeqId, reason: FinishReason, message: &str) {
        let Some(mut s) = self.remove(id) else { return };
        // A cancelled generation is metered for what ran: the prompt tokens
        // processed so far, not the whole prompt.
        let prompt_tokens = if reason == FinishReason::Cancelled { s.prompt_done } else { s.p.prompt_len };
        let usage = Usage {
            prompt_tokens,
            completion_tokens: s.p.completed,
            cached_prompt_tokens: s.cached_prompt.unwrap_or(0).min(prompt_tokens),
        };
        tracing::debug!(request_id = %s.p.request_id, reason = reason.as_str(), ?usage, "finished");
        let event = Event::Finish { reason, usage, text: s.p.text.finish(), message: message.to_string() };
        // The client may be gone already; nothing to do then.
        let _ = s.events.try_send(event);
    }

    fn publish(&mut self) {
        let ((tokens_per_s, generated_tokens_per_s), (prefilled_tokens, decoded_tokens)) = self.throughput.read();
        let e = self.backend.stats();
        self.stats.send_replace(LoopStats {
            running: self.running.len(),
            waiting: self.seqs.len() - self.running.len(),
            free_blocks: e.free_blocks,
            total_blocks: e.total_blocks,
            block_size: e.block_size,
            kv_waste: e.kv_waste,
            prefix_hit_rate: e.prefix_hit_rate,
            tokens_per_s,
            generated_tokens_per_s,
            preemptions: self.preemptions,
            prefilled_tokens,
            decoded_tokens,
            step_seconds: self.throughput.step_seconds(),
        });
    }
}

/// Whether a step entry (before it runs) is a decode: one token fed to a
/// sequence that holds K/V already, as the planner counts it (a prompt's
/// one-token last chunk included: it costs the engine what a decode does).
fn is_decode(e: &StepEntry, s: &Seq) -> bool {
    e.tokens.len() == 1 && s.computed > 0
}
