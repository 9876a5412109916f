//! Why a contract's bucket holds 30 s of its rate: a tenant offering 70% of
//! its rate with chat traffic (the benchmark's trace: log-normal prompts of
//! 20 to 1,000 tokens, `max_tokens` 16 to 256, Poisson arrivals) should be
//! served as reserved, not pushed to burst by the size of its own requests.
//! A seeded simulation, so the shares are exact for a given seed.

use reservoir_sched::MICROS_PER_S;
use reservoir_sched::bucket::ContractBucket;
use reservoir_workload::trace::{Lengths, TraceSpec, generate, mean_cost};

/// A small contract (weighted tokens/s) and the measured weights of a run.
const RATE: u32 = 69;
const PROMPT_WEIGHT: f64 = 0.5;
/// Chat template tokens around each prompt.
const TEMPLATE_TOKENS: u32 = 30;

/// The share of the tenant's requests that find the bucket in debt.
fn share_not_reserved(window_s: u32) -> f64 {
    let mut spec = TraceSpec {
        seed: 7,
        tag: "bucket".into(),
        duration_us: 20_000 * MICROS_PER_S,
        requests_per_s: 1.0,
        prompt: Lengths::CHAT_PROMPTS,
        max_tokens_min: 16,
        max_tokens_max: 256,
    };
    spec.requests_per_s = 0.7 * f64::from(RATE) / mean_cost(&spec, PROMPT_WEIGHT, 1.0, 10_000);
    let trace = generate(&spec).expect("trace");
    let mut bucket = ContractBucket::new(RATE, window_s, 0);
    let mut not_reserved = 0;
    for r in &trace {
        let cost = f64::from(r.prompt_words + TEMPLATE_TOKENS) * PROMPT_WEIGHT + f64::from(r.max_tokens);
        if !bucket.try_take((cost * 1000.0) as u64, r.at_us) {
            not_reserved += 1;
        }
    }
    not_reserved as f64 / trace.len() as f64
}

#[test]
fn a_tenant_within_its_rate_stays_reserved_with_a_30_s_bucket() {
    let four = share_not_reserved(4);
    let thirty = share_not_reserved(30);
    assert!(four > 0.10, "a 4 s bucket pushes {four:.4} of the requests out of reserved");
    assert!(thirty < 0.01, "a 30 s bucket pushes {thirty:.4} of the requests out of reserved");
}
