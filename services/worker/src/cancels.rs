//! Requests whose client went away, handed from the gRPC side to the step
//! loop, which ends them between two steps.

use std::collections::HashSet;

/// Requests whose client went away, handed from the gRPC side to the step
/// loop. Bounded: only ids of requests in the worker are taken.
#[derive(Default)]
pub struct Cancels(std::sync::Mutex<CancelState>);

#[derive(Default)]
struct CancelState {
    /// Request ids in the step loop now.
    live: HashSet<String>,
    pending: Vec<String>,
}

impl Cancels {
    /// Asks the step loop to end the request; false when it is not in the worker.
    pub fn request(&self, request_id: String) -> bool {
        let Ok(mut state) = self.0.lock() else { return false };
        if !state.live.contains(&request_id) {
            return false;
        }
        if !state.pending.contains(&request_id) {
            state.pending.push(request_id);
        }
        true
    }

    pub(crate) fn enter(&self, request_id: &str) {
        if let Ok(mut state) = self.0.lock() {
            state.live.insert(request_id.to_owned());
        }
    }

    pub(crate) fn leave(&self, request_id: &str) {
        if let Ok(mut state) = self.0.lock() {
            state.live.remove(request_id);
            state.pending.retain(|r| r != request_id);
        }
    }

    pub(crate) fn take(&self) -> Vec<String> {
        self.0.lock().map(|mut state| std::mem::take(&mut state.pending)).unwrap_or_default()
    }
}
