//! The gRPC face of the worker: convert, prepare, hand to the step loop,
//! stream back.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reservoir_domain::PriorityClass;
use reservoir_engine::Tokenizer;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::worker_service_server::WorkerService;
use reservoir_runtime::Shutdown;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::backend::BackendInfo;
use crate::convert;
use crate::error::WorkerError;
use crate::request::{GenerateSpec, prepare};
use crate::step_loop::{Job, LoopStats};

pub(crate) struct Worker {
    pub jobs: mpsc::Sender<Job>,
    /// One permit per request in the worker (queued or running).
    pub permits: Arc<Semaphore>,
    pub queue_capacity: usize,
    pub stats: watch::Receiver<LoopStats>,
    pub info: BackendInfo,
    pub tokenizer: Arc<Tokenizer>,
    pub model_id: String,
    /// Ends stats streams, which would otherwise hold the server open.
    pub shutdown: Shutdown,
    /// Tells the step loop a reserved or burst request is queued.
    pub urgent: Arc<AtomicBool>,
    /// Request ids whose client went away, for the step loop to end.
    pub cancels: Arc<crate::cancels::Cancels>,
}

/// A stats stream sends at least this often, changed or not.
const STATS_HEARTBEAT: Duration = Duration::from_secs(1);
const STATS_MIN_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);

type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::WorkerStats, Status>> + Send>>;

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::GenerateEvent, Status>> + Send>>;

impl Worker {
    fn busy(&self) -> WorkerError {
        WorkerError::Busy(format!(
            "the worker's queue is full ({} requests); retry later or elsewhere",
            self.queue_capacity
        ))
    }
}

#[tonic::async_trait]
impl WorkerService for Worker {
    type GenerateStream = EventStream;
    type WatchStatsStream = StatsStream;

    async fn generate(&self, req: Request<pb::GenerateRequest>) -> Result<Response<EventStream>, Status> {
        let spec = GenerateSpec::try_from(req.into_inner())?;
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| self.busy())?;
        let (info, tokenizer) = (self.info, self.tokenizer.clone());
        // Tokenizing a long prompt takes a while: keep it off the async threads.
        let prepared = tokio::task::spawn_blocking(move || prepare(spec, &info, &tokenizer))
            .await
            .map_err(|e| WorkerError::Internal(format!("prepare task: {e}")))??;
        // Room for every event the request can get: sending never waits.
        let (tx, rx) = mpsc::channel(prepared.max_tokens.saturating_sub(prepared.completed) + 2);
        tracing::debug!(request_id = %prepared.request_id, prompt_tokens = prepared.prompt_len, "accepted");
        let class = prepared.class;
        self.jobs.try_send(Job { prepared, events: tx, permit }).map_err(|e| match e {
            TrySendError::Full(_) => self.busy(),
            TrySendError::Closed(_) => WorkerError::Unavailable("the worker is shutting down".into()),
        })?;
        if class != PriorityClass::Spot {
            self.urgent.store(true, Ordering::Relaxed);
        }
        let stream = ReceiverStream::new(rx).map(|e| Ok(pb::GenerateEvent::from(e)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel(&self, req: Request<pb::CancelRequest>) -> Result<Response<pb::CancelResponse>, Status> {
        let request_id = req.into_inner().request_id;
        if request_id.is_empty() || request_id.len() > 128 {
            return Err(WorkerError::Invalid("request_id must be 1 to 128 characters".into()).into());
        }
        let found = self.cancels.request(request_id);
        Ok(Response::new(pb::CancelResponse { found }))
    }

    async fn get_tokenizer(&self, _: Request<pb::GetTokenizerRequest>) -> Result<Response<pb::TokenizerSpec>, Status> {
        Ok(Response::new(convert::tokenizer_spec(&self.tokenizer, &self.model_id)))
    }

    async fn stats(&self, _: Request<pb::WorkerStatsRequest>) -> Result<Response<pb::WorkerStats>, Status> {
        let s = self.stats.borrow().clone();
        Ok(Response::new(convert::stats(&s, &self.model_id, self.info.ctx_len, self.queue_capacity)))
    }

    async fn watch_stats(&self, req: Request<pb::WatchStatsRequest>) -> Result<Response<StatsStream>, Status> {
        let min_interval = match req.into_inner().min_interval_ms {
            0 => STATS_MIN_INTERVAL_DEFAULT,
            ms => Duration::from_millis(u64::from(ms)).min(STATS_HEARTBEAT),
        };
        let (mut stats, shutdown) = (self.stats.clone(), self.shutdown.clone());
        let (model_id, ctx_len, capacity) = (self.model_id.clone(), self.info.ctx_len, self.queue_capacity);
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let s = stats.borrow_and_update().clone();
                if tx.send(Ok(convert::stats(&s, &model_id, ctx_len, capacity))).await.is_err() {
                    return; // the watcher went away
                }
                tokio::select! {
                    _ = tokio::time::sleep(min_interval) => {}
                    _ = shutdown.wait() => return,
                }
                tokio::select! {
                    changed = stats.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(STATS_HEARTBEAT - min_interval) => {}
                    _ = shutdown.wait() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
