//! The gRPC face of the scheduler: validate, classify, queue, stream.

use std::sync::Arc;
use std::time::Instant;

use reservoir_domain::{ModelId, PriorityClass, TenantId, WorkerId};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::scheduler_service_server::SchedulerService;
use reservoir_sched::completion_bound;
use reservoir_sched::queues::Entry;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::state::RegisterError;
use super::tokenizers::PromptTokens;
use super::{Pending, Shared, WorkerEndpoint, queue_deadline_micros, workers};

/// Events buffered per request between its runner and its client.
const EVENTS_BUFFER: usize = 64;

pub struct Scheduler {
    pub shared: Arc<Shared>,
}

/// RESOURCE_EXHAUSTED with a `retry-after` entry, as the gateway maps to 429.
pub fn shed_status(retry_after_s: u32, why: &str) -> Status {
    with_retry_after(Status::resource_exhausted(format!("{why}; retry after {retry_after_s} s")), retry_after_s)
}

/// UNAVAILABLE with a `retry-after` entry, as the gateway maps to 503.
pub fn unavailable_status(retry_after_s: u32, why: &str) -> Status {
    with_retry_after(Status::unavailable(format!("{why}; retry after {retry_after_s} s")), retry_after_s)
}

fn with_retry_after(mut status: Status, retry_after_s: u32) -> Status {
    if let Ok(value) = retry_after_s.to_string().parse() {
        status.metadata_mut().insert("retry-after", value);
    }
    status
}

#[tonic::async_trait]
impl SchedulerService for Scheduler {
    type CompleteStream = ReceiverStream<Result<pb::CompleteEvent, Status>>;

    async fn register_worker(
        &self,
        req: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        let r = req.into_inner();
        let id: WorkerId = r.worker_id.parse().map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let url_ok = (r.url.starts_with("http://") || r.url.starts_with("https://"))
            && r.url.parse::<tonic::transport::Uri>().is_ok_and(|u| u.host().is_some());
        if !url_ok {
            return Err(Status::invalid_argument("url must be an http(s) URL with a host, e.g. http://10.0.0.5:50061"));
        }
        let known =
            workers::register(&self.shared, WorkerEndpoint { id: id.to_string(), url: r.url }).await.map_err(|e| {
                match e {
                    RegisterError::Full => Status::resource_exhausted(e.to_string()),
                    RegisterError::BadUrl(_) => Status::invalid_argument(e.to_string()),
                }
            })?;
        Ok(Response::new(pb::RegisterWorkerResponse { known }))
    }

    async fn list_workers(
        &self,
        _: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let workers = self.shared.core.lock().await.statuses();
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }

    async fn complete(&self, req: Request<pb::CompleteRequest>) -> Result<Response<Self::CompleteStream>, Status> {
        let received_at = Instant::now();
        let mut request = req.into_inner();
        let tenant: TenantId = request.tenant_id.parse().map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let model: ModelId = request.model.parse().map_err(|e| Status::invalid_argument(format!("{e}")))?;
        reservoir_domain::check_request_id(&request.request_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let Some(input) = request.input.as_ref() else {
            return Err(Status::invalid_argument("a prompt or messages are required"));
        };
        // Before anything reads the text: its size bounds the work below.
        super::tokenizers::check_input(input).map_err(Status::invalid_argument)?;
        let prompt_tokens = self.shared.tokenizers.prompt_tokens(model.as_str(), input).await;
        let how = if matches!(prompt_tokens, PromptTokens::Counted(_)) { "counted" } else { "estimated" };
        self.shared.metrics.prompt_tokens_at_admission.with_label_values(&[how]).inc();
        // What needs the model (its vocabulary, its context) is refused here,
        // before the request is admitted and its stream has started.
        let params = request.params.get_or_insert_with(Default::default);
        self.shared.tokenizers.check_fits(model.as_str(), &prompt_tokens, params).map_err(Status::invalid_argument)?;
        let facts = self.shared.directory.model(model.as_str()).await?;
        let weights = facts.weights;
        let contracts = self.shared.directory.contracts(tenant.as_str(), model.as_str()).await?;
        // Admission charges prompt weight x prompt tokens + completion weight
        // x max_tokens; the worker's counts settle it when the request ends.
        let prompt_count = prompt_tokens.count();
        let estimate_milli = weights.cost_milli(prompt_count, u64::from(completion_bound(params.max_tokens)));

        let (events, events_rx) = mpsc::channel(EVENTS_BUFFER);
        let now = self.shared.now();
        let mut core = self.shared.core.lock().await;
        let (admission, contract) = core.admit(&contracts, estimate_milli, request.wants_spot, now);
        if admission.class == PriorityClass::Spot {
            let params = request.params.get_or_insert_with(Default::default);
            let asked = if params.max_tokens == 0 { u32::MAX } else { params.max_tokens };
            let allowed = core.spot_max_tokens(model.as_str(), asked);
            if allowed != asked {
                params.max_tokens = allowed;
            }
        }
        // FCFS (a benchmark baseline): one queue, one "tenant", arrival order.
        let (queue_class, queue_tenant) = if self.shared.fcfs {
            (PriorityClass::Spot, String::from("fcfs"))
        } else {
            (admission.class, tenant.to_string())
        };
        // A reserved request waits at most a few times its TTFT target
        // (under the contract it is served by); then it is answered 503.
        // Its first token is due at the target itself.
        let reserved_under = contract.filter(|_| queue_class == PriorityClass::Reserved);
        let deadline = reserved_under
            .map(|c| now.saturating_add(queue_deadline_micros(c.tier, prompt_count, facts.prefill_tokens_per_s)));
        let first_token_due = reserved_under
            .and_then(|c| super::first_token_due(received_at, c.tier, prompt_count, facts.prefill_tokens_per_s));
        let pending = Pending {
            request,
            class: admission.class,
            contract,
            weights,
            prompt_tokens,
            charged_milli: admission.charged_milli,
            events,
            received_at,
            first_token_due,
        };
        let entry =
            Entry { tenant: queue_tenant, cost_milli: estimate_milli, enqueued_at: now, deadline, item: pending };
        let pushed = core.enqueue(queue_class, entry, now);
        drop(core);
        let class_label = [admission.class.as_str()];
        if pushed.is_ok() {
            self.shared.metrics.admitted.with_label_values(&class_label).inc();
        }
        if let Err((shed, entry)) = pushed {
            self.shared.metrics.shed.with_label_values(&class_label).inc();
            super::runner::record_unserved(&self.shared, &entry.item, reservoir_domain::Outcome::Shed).await;
            // Only burst and spot are ever shed, and they took nothing from a bucket.
            return Err(shed_status(shed.retry_after_s, &format!("the {} queue is full", admission.class)));
        }
        self.shared.wake.notify_one();
        Ok(Response::new(ReceiverStream::new(events_rx)))
    }
}
