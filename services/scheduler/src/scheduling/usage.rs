//! A request's usage record, built from what its runner saw: the worker's
//! counts, the tokens the client received, and the clock.

use std::time::Instant;

use chrono::{DateTime, Utc};
use reservoir_domain::{Outcome, UsageRecord};
use reservoir_proto::v1 as pb;
use rust_decimal::Decimal;

use super::Pending;

/// When a request arrived, waited and ran.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock arrival (the record's `started_at`).
    pub started_at: DateTime<Utc>,
    pub received_at: Instant,
    /// When a worker took it (arrival for a request never dispatched).
    pub dispatched: Instant,
    pub first_token: Option<Instant>,
}

impl Clock {
    /// The clock of a request that arrived at `received_at` and is taken now.
    pub fn starting(received_at: Instant) -> Clock {
        let waited = chrono::Duration::from_std(received_at.elapsed()).unwrap_or_default();
        Clock { started_at: Utc::now() - waited, received_at, dispatched: Instant::now(), first_token: None }
    }

    fn ms(from: Instant, to: Instant) -> u32 {
        u32::try_from(to.saturating_duration_since(from).as_millis()).unwrap_or(u32::MAX)
    }
}

/// What the request got.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// The worker's counts (the last worker's, after a failover).
    pub usage: Option<pb::Usage>,
    /// Tokens the client received.
    pub sent: usize,
    pub worker_id: String,
}

/// Weighted thousandths as an exact decimal.
fn weighted(milli: u64) -> Decimal {
    Decimal::new(i64::try_from(milli).unwrap_or(i64::MAX), 3).normalize()
}

/// The record of a request that ended with `outcome`, and what it cost in
/// weighted thousandths (what its contract's bucket is charged).
pub fn record(
    pending: &Pending,
    outcome: Outcome,
    served: &Served,
    clock: &Clock,
    catalog_version: u32,
) -> Option<(UsageRecord, u64)> {
    let usage = served.usage.unwrap_or_default();
    // Completion tokens are what the client received; the last worker's count
    // includes the continued ones, so nothing recomputed is billed twice.
    let completion = u32::try_from(served.sent).unwrap_or(u32::MAX).max(usage.completion_tokens);
    let w = pending.weights;
    let weighted_milli = w.cost_milli(u64::from(usage.prompt_tokens), u64::from(completion));
    // Demand is what the request wanted: for one served in full (or given
    // up by its client) what it got; otherwise its prompt and the completion
    // it asked for, with the admission count of the prompt when no worker
    // counted it.
    let demand_milli = match outcome {
        Outcome::Ok | Outcome::ClientCancelled => weighted_milli,
        Outcome::Shed | Outcome::PlatformError | Outcome::Interrupted => {
            let prompt =
                if usage.prompt_tokens > 0 { u64::from(usage.prompt_tokens) } else { pending.prompt_tokens.count() };
            let asked = reservoir_sched::completion_bound(pending.request.params.as_ref().map_or(0, |p| p.max_tokens));
            w.cost_milli(prompt, u64::from(asked.max(completion)))
        }
    };
    let now = Instant::now();
    let queue_ms = Clock::ms(clock.received_at, clock.dispatched);
    let record = UsageRecord {
        request_id: pending.request.request_id.clone(),
        tenant: pending.request.tenant_id.parse().ok()?,
        contract: pending.contract.map(|c| c.id),
        model: pending.request.model.parse().ok()?,
        class: pending.class,
        outcome,
        prompt_tokens: usage.prompt_tokens,
        cached_prompt_tokens: usage.cached_prompt_tokens.min(usage.prompt_tokens),
        completion_tokens: completion,
        weighted_tokens: weighted(weighted_milli),
        demand_weighted_tokens: weighted(demand_milli),
        queue_ms,
        ttft_ms: clock.first_token.map(|t| Clock::ms(clock.received_at, t)),
        total_ms: Clock::ms(clock.received_at, now),
        worker_id: served.worker_id.clone(),
        started_at: clock.started_at,
        finished_at: Utc::now().max(clock.started_at),
        catalog_version,
    };
    Some((record, weighted_milli))
}

/// What is known of a request when it is dispatched: kept in the spool as
/// its record should the scheduler stop before the request ends (recorded
/// then as interrupted: its prompt as counted at admission, nothing served).
pub fn at_dispatch(pending: &Pending, clock: &Clock, worker_id: &str, catalog_version: u32) -> Option<UsageRecord> {
    let served = Served { usage: None, sent: 0, worker_id: worker_id.to_owned() };
    let (mut record, _) = record(pending, Outcome::Interrupted, &served, clock, catalog_version)?;
    record.prompt_tokens = u32::try_from(pending.prompt_tokens.count()).unwrap_or(u32::MAX);
    record.finished_at = record.started_at + chrono::Duration::milliseconds(i64::from(record.queue_ms));
    record.total_ms = record.queue_ms;
    Some(record)
}
