//! Cut-ins: reserved (and burst) prefills that run ahead of lower-class
//! work, in steps of their own, between the layers of a step in progress
//! (`run_yielding`) or before a regular step (`StepLoop::step_once`), so a
//! reserved request's first token does not wait for a batch of spot work.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use reservoir_domain::PriorityClass;
use reservoir_engine::{EngineError, SeqId, StepBatch, StepOutput};
use reservoir_sched::planner::Running;

use super::StepLoop;
use crate::backend::InferenceBackend;

impl<B: InferenceBackend> StepLoop<B> {
    /// Between two layers of a step in progress (`in_step` holds its
    /// sequences), or before a regular step (`in_step` empty): the prefill
    /// of requests of a class above `below` runs now, in a step of its own, so a
    /// reserved request's first token does not wait for a long batch of spot
    /// decodes. Decodes are left to the regular steps (they batch well); a
    /// prompt whose last chunk is a single token looks like one to the
    /// planner, but its first token is still owed, so it runs here too.
    /// The planner sees only that work, so it preempts nothing else.
    /// Returns whether a step ran.
    pub(super) fn cut_in(&mut self, below: PriorityClass, in_step: &HashSet<SeqId>) -> bool {
        let higher = |c: PriorityClass| c < below;
        let first_token_owed = |id: &SeqId| self.seqs.get(id).is_some_and(|s| s.p.completed == 0);
        let running: Vec<Running> = self
            .running_views()
            .into_iter()
            .filter(|r| higher(r.class) && (r.pending > 1 || first_token_owed(&r.id)) && !in_step.contains(&r.id))
            .collect();
        let waiting = self.waiting_views(higher);
        if running.is_empty() && waiting.is_empty() {
            return false;
        }
        let plan = self.planner.next_step(&running, &waiting, self.backend.free_blocks());
        self.execute(plan, Some(in_step))
    }

    /// Runs a step that pauses between two layers when a reserved or burst
    /// request arrives: new requests are then taken in and those of a higher
    /// class than the step's lowest cut in (`cut_in`) before it goes on. A
    /// step of reserved work only runs straight through.
    pub(super) fn run_yielding(&mut self, batch: &StepBatch) -> Result<StepOutput, EngineError> {
        let mut pending = self.backend.begin_step(batch)?;
        let classes = batch.entries.iter().filter_map(|e| self.seqs.get(&e.seq)).map(|s| s.p.class);
        if let Some(lowest) = lowest_below_reserved(classes) {
            // Built when the step first pauses: most steps never do.
            let mut in_step: Option<HashSet<SeqId>> = None;
            let urgent = self.urgent.clone();
            loop {
                match self.backend.advance(&mut pending, &|| urgent.load(Ordering::Relaxed)) {
                    Ok(false) => {}
                    Ok(true) => break,
                    Err(e) => {
                        // finish_step below reports it (or completes the pass).
                        tracing::error!(error = %e, "advancing a step failed");
                        break;
                    }
                }
                let in_step = in_step.get_or_insert_with(|| batch.entries.iter().map(|e| e.seq).collect());
                // Until their prompts are done: a long one would otherwise
                // go on a chunk per step of lower-class work. Requests that
                // arrive meanwhile join before each cut-in step, so one due
                // sooner goes first instead of waiting for the whole run.
                loop {
                    // Cleared before draining: a request queued from now on sets it again.
                    urgent.store(false, Ordering::Relaxed);
                    while let Ok(job) = self.jobs.try_recv() {
                        self.accept(job);
                    }
                    if self.stopping.load(Ordering::Relaxed) || !self.cut_in(lowest, in_step) {
                        break;
                    }
                    // Readers (the scheduler, a benchmark) see the cut-in's
                    // work and time while the step it paused waits.
                    self.publish();
                }
            }
        }
        self.backend.finish_step(pending)
    }
}

/// The lowest of `classes` when it is below reserved: the class that
/// higher-class prefills may cut in ahead of.
pub(super) fn lowest_below_reserved(classes: impl IntoIterator<Item = PriorityClass>) -> Option<PriorityClass> {
    let lowest = classes.into_iter().max()?;
    (lowest != PriorityClass::Reserved).then_some(lowest)
}
