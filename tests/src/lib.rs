//! The test harness: the real services, started in-process on port 0
//! against a database of the test's own (`#[sqlx::test]` creates one per
//! test and applies the migrations), talked to over real HTTP and gRPC.

use std::net::SocketAddr;
use std::path::PathBuf;

use reservoir_domain::{ModelId, Role};
use reservoir_platform::{Config, Given, Service};
use reservoir_runtime::Shutdown;
use reservoir_runtime::config::AuthConfig;
use rust_decimal::Decimal;
use sqlx::PgPool;

pub mod billing_support;
pub mod browser;
pub mod cluster;
pub mod portal_support;
pub mod sla_support;
pub mod webhooks;

pub use reservoir_runtime::db::MIGRATOR;

/// The model every test platform starts with.
pub const MODEL: &str = "smollm2-135m-instruct";
/// Its pool capacity; with the default headroom of 10%, 900 are sellable.
pub const MODEL_CAPACITY: u32 = 1000;
pub const MODEL_SELLABLE: u32 = 900;

/// A secret for test tokens only.
pub const TEST_SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

pub fn hs256_auth() -> AuthConfig {
    AuthConfig { hs256_secret: Some(TEST_SECRET.into()), ..AuthConfig::default() }
}

pub fn rs256_auth() -> AuthConfig {
    AuthConfig {
        rs256_public_key_pem_file: Some(fixture("rs256-test-public.pem")),
        rs256_private_key_pem_file: Some(fixture("rs256-test-private.pem")),
        ..AuthConfig::default()
    }
}

pub struct Options {
    pub auth: AuthConfig,
    pub body_limit_bytes: usize,
    pub rate_limit: reservoir_gateway::RateLimit,
    /// Inference workers to run, each over a tiny seeded model (in-process
    /// gRPC servers; `reservoir up` runs real ones as child processes).
    pub workers: usize,
    /// The model those workers run (a bigger one is slower: a prefill
    /// long enough to act on a request while it runs).
    pub worker_model: reservoir_engine::test_support::TinySpec,
}

impl Default for Options {
    fn default() -> Self {
        let gateway = reservoir_gateway::GatewaySettings::default();
        // Tests send bursts of thousands of requests; the limit has its own test.
        let rate_limit = reservoir_gateway::RateLimit { requests_per_s: 100_000, burst: 100_000 };
        Options {
            auth: hs256_auth(),
            body_limit_bytes: gateway.body_limit_bytes,
            rate_limit,
            workers: 0,
            worker_model: Default::default(),
        }
    }
}

/// The platform's services run with an internal token, as `reservoir up`
/// does, so every test goes through service-to-service authentication.
pub fn internal_token() -> reservoir_runtime::InternalToken {
    reservoir_runtime::InternalToken::new(Some("e2e-internal-token"))
}

/// Every service (workers when asked), running until dropped.
pub struct Platform {
    pub gateway: String,
    pub contracts: String,
    pub scheduler: String,
    /// The scheduler's Prometheus page.
    pub scheduler_metrics: String,
    pub metering: String,
    pub sla_url: String,
    /// The SLA job, run by tests with a clock of their own (its own loop
    /// waits `sla.job_interval_s`, an hour in tests).
    pub sla: reservoir_sla_service::Sla,
    pub billing_url: String,
    /// The billing service, for runs and finalizations with the test's clock.
    pub billing: reservoir_billing_service::Billing,
    /// The usage spool's folder (removed with the platform).
    pub spool: tempfile::TempDir,
    pub auth: AuthConfig,
    pub pool: PgPool,
    pub http: reqwest::Client,
    shutdown: Shutdown,
}

impl Platform {
    /// A channel to one of the platform's internal services (`url`) that
    /// carries the internal token.
    pub async fn internal_channel(&self, url: &str) -> reservoir_runtime::InternalChannel {
        let channel =
            tonic::transport::Endpoint::from_shared(url.to_owned()).expect("url").connect().await.expect("connect");
        internal_token().attach(channel)
    }

    pub async fn start(pool: PgPool) -> Platform {
        Self::start_with(pool, Options::default()).await
    }

    pub async fn start_with(pool: PgPool, options: Options) -> Platform {
        let model: ModelId = MODEL.parse().expect("model id");
        reservoir_contracts::seed_model(&pool, &model, MODEL_CAPACITY, Decimal::new(10, 2)).await.expect("seed model");
        let shutdown = Shutdown::new();
        let spool = tempfile::tempdir().expect("spool folder");
        let config = test_config(&options, spool.path());
        let mut services = vec![
            Service::Contracts,
            Service::Metering,
            Service::Scheduler,
            Service::Sla,
            Service::Billing,
            Service::Gateway,
        ];
        if options.workers > 0 {
            services.push(Service::Worker);
        }
        let worker_backends = (0..options.workers).map(|_| backend_of(&options.worker_model)).collect();
        let given = Given { pool: Some(pool.clone()), worker_backends };
        let platform = reservoir_platform::build(config, &services, given).await.expect("platform");
        let e = platform.endpoints.clone();
        let sla = platform.sla().expect("sla service");
        let billing = platform.billing().expect("billing service");
        tokio::spawn(platform.run_until_stopped(shutdown.clone()));
        Platform {
            gateway: e.gateway.expect("gateway"),
            contracts: e.contracts.expect("contracts"),
            scheduler: e.scheduler.expect("scheduler"),
            scheduler_metrics: e.scheduler_metrics.expect("scheduler metrics"),
            metering: e.metering.expect("metering"),
            sla_url: e.sla.expect("sla"),
            sla,
            billing_url: e.billing.expect("billing"),
            billing,
            spool,
            auth: options.auth,
            pool,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    /// A worker over a tiny seeded model that serves `model` and registers
    /// itself with this platform's scheduler, with the configuration every
    /// such worker gets (no `worker.id`: it names itself), as a replica in
    /// `docker compose --scale worker=N` does. Runs until the answer fires.
    pub async fn start_worker(&self, model: &str) -> Shutdown {
        let spool = tempfile::tempdir().expect("unused spool folder");
        let mut config = test_config(&Options::default(), spool.path());
        config.worker.model_id = model.into();
        config.worker.scheduler_url = Some(self.scheduler.clone());
        let given = Given { pool: None, worker_backends: vec![tiny_backend()] };
        let worker = reservoir_platform::build(config, &[Service::Worker], given).await.expect("worker");
        let shutdown = Shutdown::new();
        tokio::spawn(worker.run_until_stopped(shutdown.clone()));
        shutdown
    }

    /// The workers the scheduler follows, once `ready` holds of them
    /// (waits a bounded time for registrations and stats to arrive).
    pub async fn workers_when(
        &self,
        ready: impl Fn(&[reservoir_proto::v1::WorkerStatus]) -> bool,
    ) -> Vec<reservoir_proto::v1::WorkerStatus> {
        use reservoir_proto::v1::scheduler_service_client::SchedulerServiceClient;
        let mut scheduler = SchedulerServiceClient::new(self.internal_channel(&self.scheduler).await);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let request = reservoir_proto::v1::ListWorkersRequest {};
            let workers = scheduler.list_workers(request).await.expect("list workers").into_inner().workers;
            if ready(&workers) {
                return workers;
            }
            assert!(std::time::Instant::now() < deadline, "the workers never got ready: {workers:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gateway, path)
    }

    pub fn tenant_token(&self, tenant: &str) -> String {
        reservoir_gateway::auth::mint(&self.auth, tenant, Role::Tenant).expect("mint tenant token")
    }

    pub fn admin_token(&self) -> String {
        reservoir_gateway::auth::mint(&self.auth, "ops", Role::Admin).expect("mint admin token")
    }

    /// A gRPC client of the contracts service.
    pub async fn contracts_client(
        &self,
    ) -> reservoir_proto::v1::contract_service_client::ContractServiceClient<tonic::transport::Channel> {
        reservoir_proto::v1::contract_service_client::ContractServiceClient::connect(self.contracts.clone())
            .await
            .expect("connect to contracts")
    }

    /// Sends a JSON request with a bearer token; answers status and JSON body
    /// (`Null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body read");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The vocabulary of the tiny test models.
pub const TINY_VOCAB: usize = 96;

/// The configuration of a test platform: every service on a free loopback
/// port, the internal token on, a spool folder of its own.
pub fn test_config(options: &Options, spool: &std::path::Path) -> Config {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = Config::default();
    config.internal.token = Some("e2e-internal-token".into());
    config.auth = options.auth.clone();
    config.contracts.listen = loopback;
    config.metering.listen = loopback;
    config.scheduler.listen = loopback;
    config.scheduler.metrics_listen = loopback;
    config.scheduler.per_worker_in_flight = 16;
    config.scheduler.spool_dir = spool.to_path_buf();
    config.worker.listen = loopback;
    config.worker.model_id = MODEL.into();
    config.worker.queue_capacity = 64;
    config.worker.step_token_budget = 256;
    config.sla.listen = loopback;
    config.sla.job_interval_s = 3600;
    // Tests store their records before they run the job.
    config.sla.settle_s = 0;
    config.sla.delivery_interval_ms = 100;
    // Webhook receivers in tests listen on the loopback.
    config.sla.webhooks_allow_private = true;
    config.billing.listen = loopback;
    // Tests run periods and finalize with their own clock.
    config.billing.job_interval_s = 3600;
    config.billing.publish_interval_ms = 100;
    config.gateway.listen = loopback;
    config.gateway.body_limit_bytes = options.body_limit_bytes;
    config.gateway.rate_limit = options.rate_limit;
    config
}

/// A worker backend over a tiny seeded model.
pub fn tiny_backend() -> reservoir_worker::EngineBackend {
    backend_of(&reservoir_engine::test_support::TinySpec::default())
}

/// A worker backend over the seeded model `spec` describes.
pub fn backend_of(spec: &reservoir_engine::test_support::TinySpec) -> reservoir_worker::EngineBackend {
    use reservoir_engine::test_support::{letter_tokenizer, tiny_model};
    let model = tiny_model(spec).expect("tiny model");
    let engine = reservoir_engine::Engine::new(model, reservoir_engine::EngineConfig::default()).expect("engine");
    reservoir_worker::EngineBackend::new(engine, letter_tokenizer(TINY_VOCAB).expect("tokenizer"), 8192)
}

/// The row `query` (which binds `$1` to the request id) answers once the
/// request's usage record is stored: records are written in batches, so
/// this waits (at most 20 s).
pub async fn recorded<T>(pool: &PgPool, query: &'static str, request_id: &str) -> T
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let row = sqlx::query_as(query).bind(request_id).fetch_optional(pool).await.expect("query");
        if let Some(row) = row {
            return row;
        }
        assert!(std::time::Instant::now() < deadline, "request {request_id} was not recorded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Asserts the uniform error shape and answers the error's code.
pub fn error_code(body: &serde_json::Value) -> &str {
    let error = &body["error"];
    assert!(error["message"].is_string(), "error body without a message: {body}");
    assert!(error.get("details").is_some(), "error body without details: {body}");
    error["code"].as_str().unwrap_or_else(|| panic!("error body without a code: {body}"))
}
