//! Which worker takes a request: an eligible worker (healthy, serving the
//! request's model) with room, preferring the
//! one that last served the same prompt prefix (its prefix cache likely holds
//! the prefix's KV blocks, so the prefill is skipped), then the least busy,
//! then the one with the most free KV blocks.

use std::hash::{DefaultHasher, Hash, Hasher};

/// What routing needs to know of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerView {
    /// Healthy and serving the request's model: it may take the request.
    pub eligible: bool,
    pub in_flight: usize,
    pub free_kv_blocks: u32,
}

/// Bytes of a prompt that identify its prefix for affinity.
pub const PREFIX_BYTES: usize = 512;

/// A key for the first `PREFIX_BYTES` of a prompt (cut at a character
/// boundary). Only compared within one process.
pub fn prefix_key(prompt: &str) -> u64 {
    let mut end = prompt.len().min(PREFIX_BYTES);
    while !prompt.is_char_boundary(end) {
        end -= 1;
    }
    let mut h = DefaultHasher::new();
    prompt[..end].hash(&mut h);
    h.finish()
}

/// The worker for the next request, or `None` when no eligible worker has
/// room. `preferred` (prefix affinity) wins when it has room; `avoid` (a
/// worker that just failed) is never chosen.
pub fn choose(
    workers: &[WorkerView],
    per_worker_in_flight: usize,
    preferred: Option<usize>,
    avoid: Option<usize>,
) -> Option<usize> {
    let has_room =
        |i: usize| workers.get(i).is_some_and(|w| w.eligible && w.in_flight < per_worker_in_flight) && Some(i) != avoid;
    if let Some(p) = preferred.filter(|p| has_room(*p)) {
        return Some(p);
    }
    (0..workers.len())
        .filter(|i| has_room(*i))
        .min_by_key(|i| (workers[*i].in_flight, std::cmp::Reverse(workers[*i].free_kv_blocks), *i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(eligible: bool, in_flight: usize, free_kv_blocks: u32) -> WorkerView {
        WorkerView { eligible, in_flight, free_kv_blocks }
    }

    #[test]
    fn affinity_first_then_least_busy_then_most_free_memory() {
        let workers = [w(true, 1, 100), w(true, 0, 10), w(true, 0, 50), w(false, 0, 999)];
        assert_eq!(choose(&workers, 4, Some(0), None), Some(0), "the prefix's worker, though busier");
        assert_eq!(choose(&workers, 4, None, None), Some(2), "idle, and more free KV blocks than worker 1");
        assert_eq!(choose(&workers, 4, Some(3), None), Some(2), "an ineligible preferred worker is skipped");
        assert_eq!(choose(&workers, 1, Some(0), None), Some(2), "a full preferred worker is skipped");
        assert_eq!(choose(&workers, 4, None, Some(2)), Some(1), "the worker that just failed is avoided");
        assert_eq!(choose(&[w(true, 1, 1)], 1, None, None), None, "no room anywhere");
    }

    #[test]
    fn prefix_keys_see_only_the_prefix() {
        let system = "You are a helpful assistant. ".repeat(40);
        assert_eq!(prefix_key(&format!("{system}Question one")), prefix_key(&format!("{system}Question two")));
        assert_ne!(prefix_key("short a"), prefix_key("short b"));
        let cjk = "日本語".repeat(200);
        assert_eq!(prefix_key(&cjk), prefix_key(&format!("{cjk}tail")), "cut at a character boundary");
    }
}
