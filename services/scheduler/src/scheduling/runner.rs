//! Runs one admitted request: streams it from its worker to the client and,
//! when the worker dies or stops mid-stream, continues it on another worker
//! from the prompt plus the tokens already sent, so the client sees one
//! uninterrupted stream. Usage is recorded once, at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use reservoir_domain::PriorityClass;
use reservoir_proto::v1 as pb;
use rust_decimal::Decimal;

use super::{Pending, Shared};
use crate::metering::record::{Outcome, UsageRecord};

/// Workers one request may lose before it fails.
const LOSSES_MAX: u32 = 4;
/// How long a request whose worker died waits for another with room.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);
/// How long a request a worker turned away as busy waits before it asks
/// again (that worker or another), and how long it keeps asking.
const BUSY_BACKOFF: Duration = Duration::from_millis(20);
const BUSY_WAIT: Duration = Duration::from_secs(30);

fn event(e: pb::complete_event::Event) -> pb::CompleteEvent {
    pb::CompleteEvent { event: Some(e) }
}

enum Attempt {
    /// The worker finished the request (any finish but a shutdown's cancel).
    Finished(pb::FinishEvent),
    /// The client went away.
    ClientGone,
    /// The worker failed or stopped mid-stream: continue elsewhere.
    WorkerLost,
    /// The worker's own queue was full (RESOURCE_EXHAUSTED): it is healthy,
    /// and nothing ran; ask again shortly.
    WorkerBusy,
    /// The worker refused the request itself (invalid, too long): the client's answer.
    Refused(tonic::Status),
}

pub async fn run(shared: Arc<Shared>, pending: Pending, first_worker: usize) {
    // The request started when it arrived, not when a worker took it.
    let waited = chrono::Duration::from_std(pending.received_at.elapsed()).unwrap_or_default();
    let started_at = Utc::now() - waited;
    let dispatched = Instant::now();
    let queue_ms = u32::try_from(dispatched.duration_since(pending.received_at).as_millis()).unwrap_or(u32::MAX);
    let mut worker = first_worker;
    let max_tokens = pending.request.params.as_ref().map(|p| p.max_tokens).unwrap_or(0);
    let (worker_id, mut client) = {
        let core = shared.core.lock().await;
        (core.workers[worker].endpoint.id.clone(), core.workers[worker].client.clone())
    };
    let admitted = pb::Admitted {
        class: pending.class.to_string(),
        worker_id: worker_id.clone(),
        contract_id: pending.contract.map(|c| c.id.to_string()).unwrap_or_default(),
        max_tokens,
    };
    let mut sent: Vec<u32> = Vec::new();
    let mut first_token: Option<Instant> = None;
    let mut last_worker_id = worker_id;
    let mut finish: Option<pb::FinishEvent> = None;
    let mut outcome = Outcome::PlatformError;
    if pending.events.send(Ok(event(pb::complete_event::Event::Admitted(admitted)))).await.is_err() {
        outcome = Outcome::ClientCancelled;
    } else {
        let (mut losses, busy_until) = (0, Instant::now() + BUSY_WAIT);
        loop {
            let request = pb::GenerateRequest {
                request_id: pending.request.request_id.clone(),
                tenant_id: pending.request.tenant_id.clone(),
                priority_class: if shared.fcfs { PriorityClass::Spot } else { pending.class }.to_string(),
                input: pending.request.input.clone().map(|i| match i {
                    pb::complete_request::Input::Messages(m) => pb::generate_request::Input::Messages(m),
                    pb::complete_request::Input::Prompt(p) => pb::generate_request::Input::Prompt(p),
                }),
                params: pending.request.params.clone(),
                continue_from_token_ids: sent.clone(),
                prompt_token_ids: match &pending.prompt_tokens {
                    super::tokenizers::PromptTokens::Counted(ids) => ids.clone(),
                    super::tokenizers::PromptTokens::Estimated(_) => Vec::new(),
                },
                // The tenant's own prefix cache (opting into a shared one is not offered yet).
                cache_salt: String::new(),
            };
            match stream_once(&mut client, request, &pending, &mut sent, &mut first_token, &shared.metrics).await {
                Attempt::Finished(f) => {
                    outcome = if f.finish_reason == "error" { Outcome::PlatformError } else { Outcome::Ok };
                    finish = Some(f);
                    break;
                }
                Attempt::ClientGone => {
                    outcome = Outcome::ClientCancelled;
                    break;
                }
                Attempt::Refused(status) => {
                    // Nothing ran: no usage to record, the bucket gets its
                    // charge back, and the worker is fine.
                    let _ = pending.events.send(Err(status)).await;
                    let now = shared.now();
                    let mut core = shared.core.lock().await;
                    if let Some(contract) = pending.contract.filter(|_| pending.class == PriorityClass::Reserved) {
                        core.bucket(&contract, now).bucket.settle(pending.charged_milli, 0, now);
                    }
                    core.release(worker);
                    drop(core);
                    shared.wake.notify_one();
                    return;
                }
                Attempt::WorkerBusy => {
                    // The worker is fine but full (its queue is bounded on its
                    // own): ask again shortly, any worker with room.
                    if Instant::now() >= busy_until {
                        break;
                    }
                    shared.core.lock().await.release(worker);
                    tokio::time::sleep(BUSY_BACKOFF).await;
                    match another_worker(&shared, pending.class, None).await {
                        Some((index, id, next_client)) => (worker, last_worker_id, client) = (index, id, next_client),
                        None => {
                            worker = usize::MAX;
                            break;
                        }
                    }
                }
                Attempt::WorkerLost => {
                    losses += 1;
                    tracing::warn!(request = %pending.request.request_id, losses, worker = %last_worker_id,
                        tokens_sent = sent.len(), "worker lost mid-request; continuing on another");
                    let next = {
                        let mut core = shared.core.lock().await;
                        core.release(worker);
                        core.mark_unhealthy(worker);
                        drop(core);
                        if losses >= LOSSES_MAX {
                            None
                        } else {
                            another_worker(&shared, pending.class, Some(worker)).await
                        }
                    };
                    match next {
                        Some((index, id, next_client)) => {
                            worker = index;
                            last_worker_id = id;
                            client = next_client;
                        }
                        None => {
                            worker = usize::MAX;
                            break;
                        }
                    }
                }
            }
        }
    }
    match &finish {
        Some(f) => {
            let _ = pending.events.send(Ok(event(pb::complete_event::Event::Finish(f.clone())))).await;
        }
        None if outcome == Outcome::PlatformError => {
            let status = tonic::Status::unavailable("no worker could finish the request; retry later");
            let _ = pending.events.send(Err(status)).await;
        }
        None => {}
    }
    {
        let mut core = shared.core.lock().await;
        core.release(worker);
    }
    shared.wake.notify_one();
    record(
        &shared,
        &pending,
        finish.as_ref(),
        &sent,
        outcome,
        queue_ms,
        first_token,
        dispatched,
        started_at,
        last_worker_id,
    )
    .await;
}

async fn stream_once(
    client: &mut reservoir_proto::v1::worker_service_client::WorkerServiceClient<reservoir_runtime::InternalChannel>,
    request: pb::GenerateRequest,
    pending: &Pending,
    sent: &mut Vec<u32>,
    first_token: &mut Option<Instant>,
    metrics: &super::metrics::Metrics,
) -> Attempt {
    let mut stream = match client.generate(request).await {
        Ok(s) => s.into_inner(),
        Err(status) if status.code() == tonic::Code::InvalidArgument => return Attempt::Refused(status),
        Err(status) if status.code() == tonic::Code::ResourceExhausted => return Attempt::WorkerBusy,
        Err(_) => return Attempt::WorkerLost,
    };
    loop {
        match stream.message().await {
            Ok(Some(pb::GenerateEvent { event: Some(pb::generate_event::Event::Token(token)) })) => {
                if first_token.is_none() {
                    *first_token = Some(Instant::now());
                    let ttft = pending.received_at.elapsed().as_secs_f64();
                    metrics.ttft_seconds.with_label_values(&[pending.class.as_str()]).observe(ttft);
                }
                sent.push(token.token_id);
                let forwarded = event(pb::complete_event::Event::Token(token));
                if pending.events.send(Ok(forwarded)).await.is_err() {
                    return Attempt::ClientGone;
                }
            }
            Ok(Some(pb::GenerateEvent { event: Some(pb::generate_event::Event::Finish(f)) })) => {
                // A worker shutting down ends its generations as cancelled:
                // the request is not done, the worker is.
                if f.finish_reason == "cancelled" {
                    return if pending.events.is_closed() { Attempt::ClientGone } else { Attempt::WorkerLost };
                }
                return Attempt::Finished(f);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Attempt::WorkerLost,
        }
    }
}

/// Waits (bounded) for a healthy worker with room, other than `lost` if given.
async fn another_worker(
    shared: &Shared,
    class: PriorityClass,
    lost: Option<usize>,
) -> Option<(
    usize,
    String,
    reservoir_proto::v1::worker_service_client::WorkerServiceClient<reservoir_runtime::InternalChannel>,
)> {
    let deadline = Instant::now() + FAILOVER_WAIT;
    while Instant::now() < deadline {
        {
            let mut core = shared.core.lock().await;
            if let Some(i) = core.free_worker(shared.in_flight_cap(class), lost) {
                core.workers[i].in_flight += 1;
                return Some((i, core.workers[i].endpoint.id.clone(), core.workers[i].client.clone()));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The usage record of a shed request: nothing served, what it asked for as demand.
pub async fn record_shed(shared: &Shared, pending: &Pending) {
    let waited = chrono::Duration::from_std(pending.received_at.elapsed()).unwrap_or_default();
    let started_at = Utc::now() - waited;
    let queue_ms = u32::try_from(pending.received_at.elapsed().as_millis()).unwrap_or(u32::MAX);
    record(shared, pending, None, &[], Outcome::Shed, queue_ms, None, Instant::now(), started_at, String::new()).await;
}

#[allow(clippy::too_many_arguments)]
async fn record(
    shared: &Shared,
    pending: &Pending,
    finish: Option<&pb::FinishEvent>,
    sent: &[u32],
    outcome: Outcome,
    queue_ms: u32,
    first_token: Option<Instant>,
    dispatched: Instant,
    started_at: chrono::DateTime<Utc>,
    worker_id: String,
) {
    let usage = finish.and_then(|f| f.usage).unwrap_or_default();
    // Completion tokens are what the client received; the last worker's count
    // includes the continued ones, so nothing recomputed is billed twice.
    let completion = u32::try_from(sent.len()).unwrap_or(u32::MAX).max(usage.completion_tokens);
    let w = pending.weights;
    let weighted_milli = w.cost_milli(u64::from(usage.prompt_tokens), u64::from(completion));
    // Demand is what the request still wanted: for one served in full (or
    // given up by its client) what it got; otherwise its prompt and the
    // completion it asked for, with the admission count of the prompt when
    // no worker counted it.
    let demand_milli = match outcome {
        Outcome::Ok | Outcome::ClientCancelled => weighted_milli,
        Outcome::Shed | Outcome::PlatformError => {
            let prompt =
                if usage.prompt_tokens > 0 { u64::from(usage.prompt_tokens) } else { pending.prompt_tokens.count() };
            let asked = reservoir_sched::completion_bound(pending.request.params.as_ref().map_or(0, |p| p.max_tokens));
            w.cost_milli(prompt, u64::from(asked.max(completion)))
        }
    };
    if let Some(contract) = pending.contract.filter(|_| pending.class == PriorityClass::Reserved) {
        let now = shared.now();
        let mut core = shared.core.lock().await;
        core.bucket(&contract, now).bucket.settle(pending.charged_milli, weighted_milli, now);
    }
    let (Ok(tenant), Ok(model)) = (pending.request.tenant_id.parse(), pending.request.model.parse()) else { return };
    let record = UsageRecord {
        request_id: pending.request.request_id.clone(),
        tenant,
        contract: pending.contract.map(|c| c.id),
        model,
        class: pending.class,
        outcome,
        prompt_tokens: usage.prompt_tokens,
        cached_prompt_tokens: usage.cached_prompt_tokens.min(usage.prompt_tokens),
        completion_tokens: completion,
        weighted_tokens: Decimal::new(i64::try_from(weighted_milli).unwrap_or(i64::MAX), 3).normalize(),
        demand_weighted_tokens: Decimal::new(i64::try_from(demand_milli).unwrap_or(i64::MAX), 3).normalize(),
        queue_ms,
        ttft_ms: first_token
            .map(|t| u32::try_from(t.duration_since(dispatched).as_millis()).unwrap_or(u32::MAX) + queue_ms),
        total_ms: u32::try_from(dispatched.elapsed().as_millis()).unwrap_or(u32::MAX) + queue_ms,
        worker_id,
        started_at,
        finished_at: Utc::now().max(started_at),
    };
    if shared.usage.record(record).await.is_err() {
        tracing::error!(request = %pending.request.request_id, "usage recorder stopped; record lost");
    }
}
