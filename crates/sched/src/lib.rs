//! Scheduling policy, pure and deterministic: no clock, no I/O. Time is a
//! caller-supplied monotonic count of microseconds (`Micros`), so every
//! decision can be replayed in a test.
//!
//! - `bucket`: a contract's token bucket, refilled at its reserved rate;
//! - `classify`: reserved / burst / spot on arrival;
//! - `fair`: virtual token counters for fair share within a class (VTC,
//!   "Fairness in Serving Large Language Models", OSDI 2024);
//! - `queues`: bounded per-class queues with strict priority, fair share,
//!   queue timeouts, Retry-After estimates and spot degradation;
//! - `routing`: which worker takes a request (prefix affinity, load, memory);
//! - `planner`: what each engine step of a worker runs (token budget, decodes
//!   first, chunked prefill, class-ordered admission, preemption).
//!
//! Amounts of work are weighted tokens in thousandths (`milli`), integers,
//! so that weights such as 0.25 are exact.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bucket;
pub mod classify;
pub mod fair;
pub mod planner;
pub mod queues;
pub mod routing;

/// Monotonic time in microseconds, from the caller's clock.
pub type Micros = u64;

pub const MICROS_PER_S: u64 = 1_000_000;

/// Completion tokens a request that names no `max_tokens` may generate (the
/// worker gives it less when the context leaves less); admission estimates
/// its cost with this bound.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// The completion tokens a request is charged for at admission: its
/// `max_tokens`, or `DEFAULT_MAX_TOKENS` when it names none (0 on the wire).
pub fn completion_bound(max_tokens: u32) -> u32 {
    if max_tokens == 0 { DEFAULT_MAX_TOKENS } else { max_tokens }
}

/// Prompt and completion weights in thousandths (0.25 is 250).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub prompt_milli: u64,
    pub completion_milli: u64,
}

impl Weights {
    /// The platform's defaults: prompt 0.25, completion 1.
    pub const DEFAULT: Weights = Weights { prompt_milli: 250, completion_milli: 1000 };

    /// Weighted cost of a request in milli-tokens (saturating: a cost too
    /// large to count is simply more than any bucket holds).
    pub fn cost_milli(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        prompt_tokens
            .saturating_mul(self.prompt_milli)
            .saturating_add(completion_tokens.saturating_mul(self.completion_milli))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact_in_thousandths() {
        // 100 prompt x 0.25 + 20 completion x 1 = 45 weighted tokens.
        assert_eq!(Weights::DEFAULT.cost_milli(100, 20), 45_000);
        assert_eq!(Weights::DEFAULT.cost_milli(u64::MAX, 1), u64::MAX);
    }
}
