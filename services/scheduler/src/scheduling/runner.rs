//! Runs one admitted request: streams it from its worker to the client and,
//! when the worker dies or stops mid-stream, continues it on another worker
//! from the prompt plus the tokens already sent, so the client sees one
//! uninterrupted stream.
//!
//! Usage: a `Begin` goes to the usage log at dispatch; the record is written
//! (and fsync'd) before the client gets its last chunk, so a request whose
//! stream completed always has its record. A client that goes away gets its
//! request cancelled on the worker, which answers what ran (prompt tokens
//! processed, tokens generated): that is what is recorded and charged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reservoir_domain::{Outcome, PriorityClass};
use reservoir_proto::v1 as pb;

use super::lease::{Client, Lease};
use super::usage::{self, Clock, Served};
use super::{Pending, Shared};

/// Workers one request may lose before it fails.
const LOSSES_MAX: u32 = 4;
/// How long a request whose worker died waits for another with room.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);
/// How long a request a worker turned away as busy waits before it asks
/// again (that worker or another), and how long it keeps asking.
const BUSY_BACKOFF: Duration = Duration::from_millis(20);
const BUSY_WAIT: Duration = Duration::from_secs(30);
/// How long the worker has to answer what a cancelled request used.
const CANCEL_WAIT: Duration = Duration::from_secs(3);

fn event(e: pb::complete_event::Event) -> pb::CompleteEvent {
    pb::CompleteEvent { event: Some(e) }
}

enum Attempt {
    /// The worker finished the request (any finish but a shutdown's cancel).
    Finished(pb::FinishEvent),
    /// The client went away; what the worker says ran, when it could say.
    ClientGone(Option<pb::Usage>),
    /// The worker failed or stopped mid-stream: continue elsewhere.
    WorkerLost,
    /// The worker's own queue was full (RESOURCE_EXHAUSTED): it is healthy,
    /// and nothing ran; ask again shortly.
    WorkerBusy,
    /// The worker refused the request itself (invalid, too long): the client's answer.
    Refused(tonic::Status),
}

/// Runs `pending` on the worker `lease` holds a slot of. The request holds
/// at most one lease at a time: it is dropped (its slot given back) before
/// the request waits for another worker, and before its record is written.
pub async fn run(shared: Arc<Shared>, pending: Pending, lease: Lease) {
    let mut clock = Clock::starting(pending.received_at);
    let catalog_version = shared.directory.catalog_version().await.unwrap_or(0);
    // The last worker the request ran on: its record names it.
    let mut worker_id = lease.worker_id().to_owned();
    let mut held = Some(lease);
    if let Some(known) = usage::at_dispatch(&pending, &clock, &worker_id, catalog_version)
        && let Err(e) = shared.usage.begin(&known).await
    {
        tracing::error!(request = %pending.request.request_id, error = %e, "cannot note the request in the usage log");
    }
    let max_tokens = pending.request.params.as_ref().map(|p| p.max_tokens).unwrap_or(0);
    let admitted = pb::Admitted {
        class: pb::PriorityClass::from(pending.class).into(),
        worker_id: worker_id.clone(),
        contract_id: pending.contract.map(|c| c.id.to_string()).unwrap_or_default(),
        max_tokens,
    };
    let mut sent: Vec<u32> = Vec::new();
    let mut finish: Option<pb::FinishEvent> = None;
    let mut served_usage: Option<pb::Usage> = None;
    let mut outcome = Outcome::PlatformError;
    if pending.events.send(Ok(event(pb::complete_event::Event::Admitted(admitted)))).await.is_err() {
        outcome = Outcome::ClientCancelled;
    } else {
        let (mut losses, busy_until) = (0, Instant::now() + BUSY_WAIT);
        while let Some(at) = held.as_mut() {
            let request = generate_request(&shared, &pending, &sent);
            match stream_once(at.client(), request, &pending, &mut sent, &mut clock, &shared.metrics).await {
                Attempt::Finished(f) => {
                    outcome = finished_outcome(&f);
                    served_usage = f.usage;
                    finish = Some(f);
                    break;
                }
                Attempt::ClientGone(used) => {
                    outcome = Outcome::ClientCancelled;
                    served_usage = used;
                    break;
                }
                Attempt::Refused(status) => {
                    // Nothing ran: no usage to record, the bucket gets its
                    // charge back, and the worker is fine.
                    let _ = pending.events.send(Err(status)).await;
                    settle(&shared, &pending, 0).await;
                    return;
                }
                Attempt::WorkerBusy => {
                    // The worker is fine but full (its queue is bounded on its
                    // own): ask again shortly, any worker of the model with room.
                    if Instant::now() >= busy_until {
                        break;
                    }
                    drop(held.take()); // its slot back while the request waits
                    tokio::time::sleep(BUSY_BACKOFF).await;
                    held = another_worker(&shared, &pending, None).await;
                }
                Attempt::WorkerLost => {
                    losses += 1;
                    tracing::warn!(request = %pending.request.request_id, losses, worker = %worker_id,
                        tokens_sent = sent.len(), "worker lost mid-request; continuing on another");
                    let lost = at.index();
                    shared.core.lock().await.mark_unhealthy(lost);
                    drop(held.take());
                    if losses < LOSSES_MAX {
                        held = another_worker(&shared, &pending, Some(lost)).await;
                    }
                }
            }
            if let Some(next) = &held {
                next.worker_id().clone_into(&mut worker_id);
            }
        }
    }
    drop(held);
    let served = Served { usage: served_usage, sent: sent.len(), worker_id };
    let charged = write_record(&shared, &pending, outcome, &served, &clock, catalog_version).await;
    match (&finish, charged) {
        (Some(f), Ok(())) => {
            let _ = pending.events.send(Ok(event(pb::complete_event::Event::Finish(f.clone())))).await;
        }
        (Some(_), Err(())) => {
            let status = tonic::Status::unavailable("the request's usage could not be recorded; retry later");
            let _ = pending.events.send(Err(status)).await;
        }
        (None, _) if outcome == Outcome::PlatformError => {
            let status = tonic::Status::unavailable("no worker could finish the request; retry later");
            let _ = pending.events.send(Err(status)).await;
        }
        (None, _) => {}
    }
}

/// A finish that is neither stop nor length failed on the platform's side;
/// that includes UNSPECIFIED (or a number this build does not know), which
/// the gateway answers as an error too, so the record and the client agree.
fn finished_outcome(f: &pb::FinishEvent) -> Outcome {
    match f.finish_reason() {
        pb::FinishReason::Stop | pb::FinishReason::Length => Outcome::Ok,
        pb::FinishReason::Error | pb::FinishReason::Cancelled | pb::FinishReason::Unspecified => Outcome::PlatformError,
    }
}

fn generate_request(shared: &Shared, pending: &Pending, sent: &[u32]) -> pb::GenerateRequest {
    pb::GenerateRequest {
        request_id: pending.request.request_id.clone(),
        tenant_id: pending.request.tenant_id.clone(),
        priority_class: pb::PriorityClass::from(if shared.fcfs { PriorityClass::Spot } else { pending.class }).into(),
        input: pending.request.input.clone().map(|i| match i {
            pb::complete_request::Input::Messages(m) => pb::generate_request::Input::Messages(m),
            pb::complete_request::Input::Prompt(p) => pb::generate_request::Input::Prompt(p),
        }),
        params: pending.request.params.clone(),
        continue_from_token_ids: sent.to_vec(),
        prompt_token_ids: match &pending.prompt_tokens {
            super::tokenizers::PromptTokens::Counted(ids) => ids.clone(),
            super::tokenizers::PromptTokens::Estimated(_) => Vec::new(),
        },
        // The tenant's own prefix cache (opting into a shared one is not offered yet).
        cache_salt: String::new(),
        // Relative: the worker's clock is not this one. Overdue: due now.
        first_token_due_in_ms: pending
            .first_token_due
            .map(|due| u64::try_from(due.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(u64::MAX)),
    }
}

/// Settles the contract's bucket: the admission charge is replaced by what ran.
async fn settle(shared: &Shared, pending: &Pending, used_milli: u64) {
    if let Some(contract) = pending.contract.filter(|_| pending.class == PriorityClass::Reserved) {
        let now = shared.now();
        shared.core.lock().await.settle(&contract, pending.charged_milli, used_milli, now);
    }
}

/// Settles the bucket and writes the record; `Err` when the usage log could
/// not keep it (the client is then not told the request succeeded).
async fn write_record(
    shared: &Shared,
    pending: &Pending,
    outcome: Outcome,
    served: &Served,
    clock: &Clock,
    catalog_version: u32,
) -> Result<(), ()> {
    let Some((record, used_milli)) = usage::record(pending, outcome, served, clock, catalog_version) else {
        return Ok(()); // ids were validated at admission; nothing to record otherwise
    };
    settle(shared, pending, used_milli).await;
    shared.usage.record(&record).await.map_err(|e| {
        tracing::error!(request = %record.request_id, error = %e, "usage record not written");
    })
}

async fn stream_once(
    client: &mut Client,
    request: pb::GenerateRequest,
    pending: &Pending,
    sent: &mut Vec<u32>,
    clock: &mut Clock,
    metrics: &super::metrics::Metrics,
) -> Attempt {
    let request_id = request.request_id.clone();
    let mut stream = tokio::select! {
        answer = client.generate(request) => match answer {
            Ok(s) => s.into_inner(),
            Err(status) if status.code() == tonic::Code::InvalidArgument => return Attempt::Refused(status),
            Err(status) if status.code() == tonic::Code::ResourceExhausted => return Attempt::WorkerBusy,
            Err(_) => return Attempt::WorkerLost,
        },
        // Gone before the worker took it: nothing ran there.
        _ = pending.events.closed() => return Attempt::ClientGone(None),
    };
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            _ = pending.events.closed() => return cancel(client, &request_id, stream).await,
        };
        match message {
            Ok(Some(pb::GenerateEvent { event: Some(pb::generate_event::Event::Token(token)) })) => {
                if clock.first_token.is_none() {
                    clock.first_token = Some(Instant::now());
                    let ttft = pending.received_at.elapsed().as_secs_f64();
                    metrics.ttft_seconds.with_label_values(&[pending.class.as_str()]).observe(ttft);
                }
                sent.push(token.token_id);
                let forwarded = event(pb::complete_event::Event::Token(token));
                if pending.events.send(Ok(forwarded)).await.is_err() {
                    return cancel(client, &request_id, stream).await;
                }
            }
            Ok(Some(pb::GenerateEvent { event: Some(pb::generate_event::Event::Finish(f)) })) => {
                // A worker shutting down ends its generations as cancelled:
                // the request is not done, the worker is.
                if f.finish_reason() == pb::FinishReason::Cancelled {
                    return if pending.events.is_closed() { Attempt::ClientGone(f.usage) } else { Attempt::WorkerLost };
                }
                return Attempt::Finished(f);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Attempt::WorkerLost,
        }
    }
}

/// The client went away: ends the generation on the worker and reads what
/// ran from its final event (bounded wait; `None` if the worker cannot say).
async fn cancel(client: &mut Client, request_id: &str, mut stream: tonic::Streaming<pb::GenerateEvent>) -> Attempt {
    let asked = client.cancel(pb::CancelRequest { request_id: request_id.to_owned() });
    let drained = async {
        if asked.await.is_err() {
            return None;
        }
        loop {
            match stream.message().await {
                Ok(Some(pb::GenerateEvent { event: Some(pb::generate_event::Event::Finish(f)) })) => return f.usage,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    };
    Attempt::ClientGone(tokio::time::timeout(CANCEL_WAIT, drained).await.ok().flatten())
}

/// Waits (bounded) for a healthy worker of the request's model with room,
/// other than `lost` if given.
async fn another_worker(shared: &Shared, pending: &Pending, lost: Option<usize>) -> Option<Lease> {
    let deadline = Instant::now() + FAILOVER_WAIT;
    let cap = shared.in_flight_cap(pending.class);
    while Instant::now() < deadline {
        if let Some(lease) = shared.core.lock().await.lease_another(&pending.request.model, cap, lost) {
            return Some(lease);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Writes the usage record of a request that left its queue unserved
/// (`Shed` for load, `PlatformError` past a reserved request's deadline):
/// nothing served, what it asked for as demand, its bucket charge given
/// back. Returns once it is on disk.
pub async fn record_unserved(shared: &Shared, pending: &Pending, outcome: Outcome) {
    let clock = Clock::starting(pending.received_at);
    let catalog_version = shared.directory.catalog_version().await.unwrap_or(0);
    let _ = write_record(shared, pending, outcome, &Served::default(), &clock, catalog_version).await;
}
