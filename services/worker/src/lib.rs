//! The worker service: one model behind the engine's step loop.
//!
//! `build` spawns the engine thread (which owns the backend) and binds the
//! listener (port 0 in tests); `run_until_stopped` serves gRPC
//! `WorkerService` plus health and reflection until the shutdown token fires,
//! then cancels what is still running (finish reason `cancelled`) and joins
//! the engine thread.
//!
//! Flow: gRPC handler -> `convert` (proto to `GenerateSpec`) -> `prepare`
//! (tokenize, check against the model) -> bounded job channel -> step loop
//! (`Planner` picks each step, backend runs it, sampler, `TextStream`) ->
//! per-request bounded event channel -> gRPC stream.

mod backend;
mod cancels;
mod convert;
mod error;
mod register;
mod request;
mod service;
mod step_io;
mod step_loop;
mod threads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reservoir_domain::ModelId;
use reservoir_proto::v1::worker_service_server::{SERVICE_NAME, WorkerServiceServer};
use reservoir_runtime::{InternalToken, Shutdown};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tonic::service::Routes;

pub use backend::{BackendInfo, EngineBackend, InferenceBackend};
pub use error::WorkerError;
pub use register::{Advertise, own_id, register_with_scheduler};
pub use request::{DEFAULT_MAX_TOKENS, FinishReason, Usage};
pub use reservoir_engine::text::{Piece, TextStream};
pub use reservoir_sched::planner::{Plan, PlannedEntry, Planner, PlannerConfig, Running, Waiting};
pub use threads::lower_compute_priority;

/// The `[worker]` section of the configuration: one inference worker, a
/// model behind the engine's step loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSettings {
    pub listen: SocketAddr,
    /// GGUF file of the model (`scripts/fetch-model` puts SmolLM2 there).
    pub model_path: PathBuf,
    /// The model's id in the catalog, reported by `Stats`.
    pub model_id: String,
    /// Memory for the KV cache; the block pool gets as many blocks as fit.
    pub kv_budget_bytes: usize,
    /// Requests in the worker at once, queued or running (RESOURCE_EXHAUSTED beyond).
    pub queue_capacity: usize,
    /// What one engine step carries at most, in prompt tokens, a decode
    /// counting `decode_token_cost` of them (`PlannerConfig`). It sets a
    /// step's duration, which is both how long a new request waits for the
    /// step in progress and the pace at which every running decode gets its
    /// tokens; too small, and steps carry too little to keep the pool busy.
    pub step_token_budget: usize,
    /// What a decode costs the engine, in prompt tokens: the inverse of the
    /// model's measured prompt weight (0.46 to 0.55 in calibrations on one
    /// 2-core machine with SmolLM2-135M, 0.60 to 0.66 on a slower one: a
    /// decode costs about 1.6 to 2 prompt tokens), rounded.
    pub decode_token_cost: usize,
    /// The worker's name in the scheduler, metrics and usage records. When
    /// unset, the worker names itself (its host name and random letters,
    /// `register::own_id`), so identical replicas are distinct workers.
    pub id: Option<String>,
    /// When set, the worker registers itself with this scheduler
    /// (`RegisterWorker`) instead of being listed in `scheduler.workers`.
    pub scheduler_url: Option<String>,
    /// The URL the scheduler reaches this worker at. When unset:
    /// `http://{listen}`, or, listening on every interface (0.0.0.0), this
    /// host's address on the route to the scheduler (`register::Advertise`).
    pub advertise_url: Option<String>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
            model_path: PathBuf::from(".reservoir/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
            model_id: "smollm2-135m-instruct".into(),
            kv_budget_bytes: 256 << 20,
            queue_capacity: 256,
            step_token_budget: 96,
            decode_token_cost: 2,
            id: None,
            scheduler_url: None,
            advertise_url: None,
        }
    }
}

/// Loads the configured model with its KV budget.
pub fn load_backend(c: &WorkerSettings) -> anyhow::Result<EngineBackend> {
    EngineBackend::load(&c.model_path, c.kv_budget_bytes)
        .map_err(|e| anyhow::anyhow!("cannot load model {}: {e}", c.model_path.display()))
}

pub struct Server {
    listener: TcpListener,
    worker: service::Worker,
    stopping: Arc<AtomicBool>,
    engine_thread: std::thread::JoinHandle<()>,
    internal_token: InternalToken,
}

/// Starts the engine thread over `backend` and binds the service's port;
/// call `run_until_stopped` to serve.
/// The internal token, when set, is required of every caller.
pub async fn build<B: InferenceBackend>(
    settings: &WorkerSettings,
    backend: B,
    internal_token: InternalToken,
) -> anyhow::Result<Server> {
    let info = backend.info();
    if settings.queue_capacity == 0 || settings.queue_capacity > Semaphore::MAX_PERMITS {
        anyhow::bail!("worker.queue_capacity must be at least 1");
    }
    if settings.step_token_budget == 0 || settings.step_token_budget > info.max_batch_tokens {
        anyhow::bail!("worker.step_token_budget must be in 1..={}", info.max_batch_tokens);
    }
    if settings.decode_token_cost == 0 || settings.decode_token_cost > settings.step_token_budget {
        anyhow::bail!("worker.decode_token_cost must be in 1..=worker.step_token_budget");
    }
    let listener = TcpListener::bind(settings.listen).await?;
    let tokenizer = backend.tokenizer();
    let planner = Planner::new(PlannerConfig {
        step_token_budget: settings.step_token_budget,
        block_size: info.block_size,
        decode_cost: settings.decode_token_cost,
    });
    let (jobs_tx, jobs_rx) = mpsc::channel(settings.queue_capacity);
    let (stats_tx, stats_rx) = watch::channel(step_loop::LoopStats {
        free_blocks: info.total_blocks,
        total_blocks: info.total_blocks,
        block_size: info.block_size,
        ..Default::default()
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let urgent = Arc::new(AtomicBool::new(false));
    let cancels = Arc::new(cancels::Cancels::default());
    let step_loop = step_loop::StepLoop::new(
        backend,
        planner,
        jobs_rx,
        stats_tx,
        step_loop::Signals { stopping: stopping.clone(), urgent: urgent.clone(), cancels: cancels.clone() },
    );
    let engine_thread = std::thread::Builder::new().name("engine".into()).spawn(move || step_loop.run())?;
    let worker = service::Worker {
        jobs: jobs_tx,
        permits: Arc::new(Semaphore::new(settings.queue_capacity)),
        queue_capacity: settings.queue_capacity,
        stats: stats_rx,
        info,
        tokenizer,
        model_id: settings.model_id.parse::<ModelId>()?.to_string(),
        shutdown: Shutdown::new(),
        urgent,
        cancels,
    };
    Ok(Server { listener, worker, stopping, engine_thread, internal_token })
}

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Server { listener, mut worker, stopping, engine_thread, internal_token } = self;
        worker.shutdown = shutdown.clone();
        // On shutdown, running generations end with `cancelled` (the
        // scheduler resumes them elsewhere) instead of holding the server open.
        let watcher = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.wait().await;
                stopping.store(true, Ordering::Relaxed);
            })
        };
        let routes = Routes::new(WorkerServiceServer::new(worker));
        let served = reservoir_runtime::grpc::serve(listener, routes, &[SERVICE_NAME], &internal_token, shutdown).await;
        watcher.abort();
        // The job sender went with the routes: the thread ends once idle.
        let joined = tokio::task::spawn_blocking(move || engine_thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("the engine thread panicked");
        }
        served
    }
}
