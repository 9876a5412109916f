//! The scheduler with real workers (tiny seeded models, in-process gRPC
//! servers), the real contracts service and PostgreSQL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reservoir_engine::test_support::{TinySpec, letter_tokenizer, tiny_model};
use reservoir_engine::{Engine, EngineConfig, Model, SamplingParams};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::scheduler_service_client::SchedulerServiceClient;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_runtime::Shutdown;
use reservoir_runtime::db::MIGRATOR;
use reservoir_runtime::{InternalChannel, InternalToken};
use reservoir_scheduler::{QueueLimits, SchedulerSettings};
use reservoir_worker::{EngineBackend, WorkerSettings};
use sqlx::PgPool;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const MODEL: &str = "smollm2-135m-instruct";
const VOCAB: usize = 96;
const LOOPBACK: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

fn model() -> Arc<Model> {
    tiny_model(&TinySpec::default()).expect("tiny model")
}

fn engine(model: &Arc<Model>) -> Engine {
    Engine::new(model.clone(), EngineConfig::default()).expect("engine")
}

/// A worker on loopback; answers its URL and its shutdown handle.
async fn worker(model: &Arc<Model>) -> (String, Shutdown) {
    worker_with_queue(model, 64).await
}

/// A worker that holds at most `queue_capacity` requests (running or queued).
async fn worker_with_queue(model: &Arc<Model>, queue_capacity: usize) -> (String, Shutdown) {
    secured_worker(model, queue_capacity, InternalToken::default()).await
}

/// A worker that requires `internal_token` of its callers.
async fn secured_worker(
    model: &Arc<Model>,
    queue_capacity: usize,
    internal_token: InternalToken,
) -> (String, Shutdown) {
    let backend = EngineBackend::new(engine(model), letter_tokenizer(VOCAB).expect("tokenizer"), 8192);
    let settings = WorkerSettings {
        listen: SocketAddr::from(LOOPBACK),
        model_id: MODEL.into(),
        queue_capacity,
        step_token_budget: 256,
        ..WorkerSettings::default()
    };
    let server = reservoir_worker::build(&settings, backend, internal_token).await.expect("worker");
    let url = format!("http://127.0.0.1:{}", server.port());
    let shutdown = Shutdown::new();
    tokio::spawn(server.run_until_stopped(shutdown.clone()));
    (url, shutdown)
}

struct Platform {
    /// Clients that send the platform's internal token (if any).
    scheduler: SchedulerServiceClient<InternalChannel>,
    metrics_url: String,
    contracts: ContractServiceClient<InternalChannel>,
    scheduler_url: String,
    contracts_url: String,
    _spool: tempfile::TempDir,
    _shutdown: Shutdown,
}

async fn platform(
    pool: PgPool,
    workers: Vec<String>,
    per_worker_in_flight: usize,
    queue_limits: QueueLimits,
) -> Platform {
    secured_platform(pool, workers, per_worker_in_flight, queue_limits, InternalToken::default()).await
}

/// Contracts and scheduler services that require `internal_token` of their callers.
async fn secured_platform(
    pool: PgPool,
    workers: Vec<String>,
    per_worker_in_flight: usize,
    queue_limits: QueueLimits,
    internal_token: InternalToken,
) -> Platform {
    let shutdown = Shutdown::new();
    reservoir_contracts::seed_model(&pool, &MODEL.parse().expect("id"), 1000, rust_decimal::Decimal::new(10, 2))
        .await
        .expect("seed");
    let contracts = reservoir_contracts::build(
        &reservoir_contracts::ContractsSettings { listen: SocketAddr::from(LOOPBACK), ..Default::default() },
        pool.clone(),
        internal_token.clone(),
    )
    .await
    .expect("contracts");
    let contracts_url = format!("http://127.0.0.1:{}", contracts.port());
    tokio::spawn(contracts.run_until_stopped(shutdown.clone()));
    let metering = reservoir_metering::build(
        &reservoir_metering::MeteringSettings { listen: SocketAddr::from(LOOPBACK) },
        pool,
        internal_token.clone(),
    )
    .await
    .expect("metering");
    let metering_url = format!("http://127.0.0.1:{}", metering.port());
    tokio::spawn(metering.run_until_stopped(shutdown.clone()));
    let spool = tempfile::tempdir().expect("spool folder");
    let settings = SchedulerSettings {
        listen: SocketAddr::from(LOOPBACK),
        metrics_listen: SocketAddr::from(LOOPBACK),
        contracts_url: contracts_url.clone(),
        metering_url,
        spool_dir: spool.path().to_path_buf(),
        workers,
        per_worker_in_flight,
        queue_limits,
        fcfs: false,
    };
    let scheduler = reservoir_scheduler::build(&settings, internal_token.clone()).await.expect("scheduler");
    let scheduler_url = format!("http://127.0.0.1:{}", scheduler.port());
    let metrics_url = format!("http://127.0.0.1:{}/metrics", scheduler.metrics_port());
    tokio::spawn(scheduler.run_until_stopped(shutdown.clone()));
    let connect =
        |url: String| async move { Endpoint::from_shared(url).expect("url").connect().await.expect("connect") };
    Platform {
        scheduler: SchedulerServiceClient::new(internal_token.attach(connect(scheduler_url.clone()).await)),
        metrics_url,
        contracts: ContractServiceClient::new(internal_token.attach(connect(contracts_url.clone()).await)),
        scheduler_url,
        contracts_url,
        _spool: spool,
        _shutdown: shutdown,
    }
}

fn request(id: &str, tenant: &str, prompt: &str, max_tokens: u32) -> pb::CompleteRequest {
    pb::CompleteRequest {
        request_id: id.into(),
        tenant_id: tenant.into(),
        model: MODEL.into(),
        input: Some(pb::complete_request::Input::Prompt(prompt.into())),
        params: Some(pb::GenerationParams { max_tokens, ..Default::default() }),
        wants_spot: false,
    }
}

struct Streamed {
    admitted: pb::Admitted,
    tokens: Vec<u32>,
    finish: pb::FinishEvent,
}

async fn complete(p: &mut Platform, req: pb::CompleteRequest) -> Result<Streamed, tonic::Status> {
    let mut stream = p.scheduler.complete(req).await?.into_inner();
    let (mut admitted, mut tokens, mut finish) = (None, Vec::new(), None);
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(pb::complete_event::Event::Admitted(a)) => admitted = Some(a),
            Some(pb::complete_event::Event::Token(t)) => tokens.push(t.token_id),
            Some(pb::complete_event::Event::Finish(f)) => finish = Some(f),
            None => {}
        }
    }
    Ok(Streamed { admitted: admitted.expect("admitted first"), tokens, finish: finish.expect("a finish") })
}

/// What the engine alone generates greedily for `prompt`.
fn reference(model: &Arc<Model>, prompt: &str, max_tokens: usize) -> Vec<u32> {
    let tokenizer = letter_tokenizer(VOCAB).expect("tokenizer");
    let mut eng = engine(model);
    let ids = tokenizer.encode(prompt, false);
    let params = SamplingParams { max_tokens, ..SamplingParams::default() };
    reservoir_engine::generate(&mut eng, &tokenizer, 1, &ids, params)
        .expect("generation")
        .map(|t| t.expect("token").id)
        .collect()
}

/// Usage records are written in batches: wait (bounded) until `id`'s is stored.
async fn usage_row(pool: &PgPool, id: &str) -> (String, Option<uuid::Uuid>, i32, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row: Option<(String, Option<uuid::Uuid>, i32, String)> = sqlx::query_as(
            "SELECT class, contract_id, completion_tokens, outcome FROM metering.usage_records WHERE request_id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await
        .expect("query");
        if let Some(row) = row {
            return row;
        }
        assert!(Instant::now() < deadline, "usage of {id} was not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn requests_are_classified_streamed_exactly_and_metered_once(pool: PgPool) {
    let model = model();
    let (w0, _s0) = worker(&model).await;
    let mut p = platform(pool.clone(), vec![w0], 4, QueueLimits::default()).await;

    // No contract: spot, and the engine's own greedy tokens.
    let spot = complete(&mut p, request("r-spot", "walk-in", "hello there", 12)).await.expect("spot");
    assert_eq!(spot.admitted.class(), pb::PriorityClass::Spot);
    assert_eq!(spot.tokens, reference(&model, "hello there", 12));
    assert_eq!(spot.finish.finish_reason(), pb::FinishReason::Length);
    assert_eq!(usage_row(&pool, "r-spot").await, ("spot".into(), None, 12, "ok".into()));

    // A contract holder within its rate: reserved, under its contract.
    let contract = reserve(&mut p, "acme", 5, true).await;
    let reserved = complete(&mut p, request("r-res", "acme", "hello there", 12)).await.expect("reserved");
    assert_eq!(reserved.admitted.class(), pb::PriorityClass::Reserved);
    assert_eq!(reserved.admitted.contract_id, contract.to_string());
    assert_eq!(reserved.tokens, spot.tokens);
    assert_eq!(usage_row(&pool, "r-res").await, ("reserved".into(), Some(contract), 12, "ok".into()));

    // 5 tokens/s, 30 s of burst: a bucket of 150 weighted tokens, about 135
    // left. A request larger than that is still reserved while tokens are
    // left, and puts the contract about 67 tokens (13 s) in debt...
    let large = complete(&mut p, request("r-large", "acme", "hello there", 200)).await.expect("reserved");
    assert_eq!(large.admitted.class(), pb::PriorityClass::Reserved);
    // ...so the next one is over its rate: burst, billed on demand.
    let over = complete(&mut p, request("r-burst", "acme", "hello there", 4)).await.expect("burst");
    assert_eq!(over.admitted.class(), pb::PriorityClass::Burst);

    // Asking for flex is spot even with a contract.
    let flex = complete(&mut p, pb::CompleteRequest { wants_spot: true, ..request("r-flex", "acme", "hi", 4) })
        .await
        .expect("flex");
    assert_eq!(flex.admitted.class(), pb::PriorityClass::Spot);

    // What the worker refuses reaches the client as is, and the worker stays in service.
    let too_long = complete(&mut p, request("r-long", "walk-in", "abc", 100_000)).await.err().expect("refused");
    assert_eq!(too_long.code(), tonic::Code::InvalidArgument, "{too_long:?}");
    let after = complete(&mut p, request("r-after", "walk-in", "abc", 3)).await.expect("the worker still serves");
    assert_eq!(after.tokens.len(), 3);

    // Prometheus sees what happened.
    let metrics = reqwest::get(&p.metrics_url).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains(r#"reservoir_scheduler_admitted_total{class="reserved"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"reservoir_scheduler_admitted_total{class="burst"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"reservoir_scheduler_ttft_seconds_count{class="spot"}"#), "{metrics}");
    // Nothing waits now; the gauge says so per model and class.
    let depth = format!(r#"reservoir_scheduler_queue_depth{{class="reserved",model="{MODEL}"}} 0"#);
    assert!(metrics.contains(&depth), "{metrics}");
}

async fn reserve(p: &mut Platform, tenant: &str, rate_tokens_per_s: u32, allow_burst: bool) -> uuid::Uuid {
    reserve_tier(p, tenant, rate_tokens_per_s, allow_burst, pb::Tier::Standard).await
}

async fn reserve_tier(
    p: &mut Platform,
    tenant: &str,
    rate_tokens_per_s: u32,
    allow_burst: bool,
    tier: pb::Tier,
) -> uuid::Uuid {
    p.contracts.ensure_tenant(pb::EnsureTenantRequest { id: tenant.into() }).await.expect("tenant");
    let order = pb::QuoteRequest {
        tenant_id: tenant.into(),
        model: MODEL.into(),
        rate_tokens_per_s,
        tier: tier.into(),
        term: pb::Term::Hourly.into(),
        starts_at: None,
        ends_at: None,
    };
    let created = p
        .contracts
        .create_reservation(pb::CreateReservationRequest {
            order: Some(order),
            idempotency_key: String::new(),
            allow_burst: Some(allow_burst),
        })
        .await
        .expect("reserve")
        .into_inner();
    uuid::Uuid::parse_str(&created.id).expect("uuid")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_tenant_with_two_contracts_gets_the_sum_of_their_rates(pool: PgPool) {
    let model = model();
    let (w0, _s0) = worker(&model).await;
    let mut p = platform(pool.clone(), vec![w0], 4, QueueLimits::default()).await;
    // Contracts of 3 and 2 tokens/s, 30 s of burst each: buckets of 90 and
    // 60 weighted tokens. Each request below costs about 121 (a few prompt
    // tokens at 0.25 and 120 completion tokens): it is reserved under a
    // contract with tokens left and puts that contract in debt for 10 s or
    // more, so the next request goes to the other contract.
    let bigger = reserve(&mut p, "duo", 3, false).await;
    let smaller = reserve(&mut p, "duo", 2, true).await;
    let first = complete(&mut p, request("d1", "duo", "abc", 120)).await.expect("first");
    let second = complete(&mut p, request("d2", "duo", "abc", 120)).await.expect("second");
    let third = complete(&mut p, request("d3", "duo", "abc", 120)).await.expect("third");
    let served = |s: &Streamed| (s.admitted.class(), s.admitted.contract_id.clone());
    assert_eq!(
        served(&first),
        (pb::PriorityClass::Reserved, bigger.to_string()),
        "the larger contract's bucket is tried first"
    );
    assert_eq!(
        served(&second),
        (pb::PriorityClass::Reserved, smaller.to_string()),
        "the second contract adds its rate"
    );
    assert_eq!(
        served(&third),
        (pb::PriorityClass::Burst, smaller.to_string()),
        "over both: burst, under the one that allows it"
    );
    assert_eq!(usage_row(&pool, "d1").await.1, Some(bigger), "each contract's usage is its own for the SLA");
    assert_eq!(usage_row(&pool, "d2").await.1, Some(smaller));
    let flex = complete(&mut p, pb::CompleteRequest { wants_spot: true, ..request("d4", "duo", "abc", 2) })
        .await
        .expect("flex");
    assert_eq!(served(&flex), (pb::PriorityClass::Spot, String::new()), "spot is served under no contract");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn admission_counts_prompt_tokens_with_the_workers_tokenizer(pool: PgPool) {
    let model = model();
    let (w0, _s0) = worker(&model).await;
    let mut p = platform(pool.clone(), vec![w0], 4, QueueLimits::default()).await;
    wait_metric(&p, &format!(r#"reservoir_scheduler_tokenizer_known{{model="{MODEL}"}} 1"#)).await;
    // 2 tokens/s, 30 s of burst: 60 weighted tokens. The letter tokenizer
    // makes one token of each letter; prompt tokens weigh 0.25.
    reserve(&mut p, "counted", 2, true).await;
    // 240 prompt tokens (60 weighted) + 8 completion: reserved, and the
    // contract is 8 tokens (4 s) in debt, so the next request is over the
    // rate. Had the prompt been estimated from its length (4 characters a
    // token: 15 + 8 = 23), 37 tokens would be left and the next request
    // would be reserved too.
    let large = complete(&mut p, request("c1", "counted", &"ab".repeat(120), 8)).await.expect("served");
    assert_eq!(large.admitted.class(), pb::PriorityClass::Reserved);
    let next = complete(&mut p, request("c2", "counted", "ab", 8)).await.expect("served");
    assert_eq!(next.admitted.class(), pb::PriorityClass::Burst);
    let metrics = reqwest::get(&p.metrics_url).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains(r#"reservoir_scheduler_prompt_tokens_at_admission_total{how="counted"} 2"#), "{metrics}");
}

async fn bare_channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned()).expect("url").connect().await.expect("connect")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn with_an_internal_token_every_internal_call_must_carry_it(pool: PgPool) {
    let model = model();
    let token = InternalToken::new(Some("internal-s3cret"));
    let (w0, _s0) = secured_worker(&model, 64, token.clone()).await;
    let mut p = secured_platform(pool.clone(), vec![w0.clone()], 4, QueueLimits::default(), token).await;
    // The scheduler sends the token to the contracts service and the worker.
    let served = complete(&mut p, request("t1", "walk-in", "abc", 5)).await.expect("served with the token");
    assert_eq!(served.tokens, reference(&model, "abc", 5));

    // Without it, or with another, every internal service refuses.
    let refused = Some(tonic::Code::Unauthenticated);
    let mut scheduler = SchedulerServiceClient::new(bare_channel(&p.scheduler_url).await);
    assert_eq!(scheduler.complete(request("t2", "walk-in", "abc", 5)).await.err().map(|e| e.code()), refused);
    let rogue = pb::RegisterWorkerRequest { worker_id: "rogue".into(), url: "http://127.0.0.1:9".into() };
    assert_eq!(scheduler.register_worker(rogue).await.err().map(|e| e.code()), refused);
    let mut contracts = ContractServiceClient::new(bare_channel(&p.contracts_url).await);
    let tenant = pb::EnsureTenantRequest { id: "intruder".into() };
    assert_eq!(contracts.ensure_tenant(tenant).await.err().map(|e| e.code()), refused);
    let wrong = InternalToken::new(Some("internal-guess"));
    let mut worker = WorkerServiceClient::new(wrong.attach(bare_channel(&w0).await));
    assert_eq!(worker.stats(pb::WorkerStatsRequest {}).await.err().map(|e| e.code()), refused);

    // Health checks stay open to probes.
    let mut health = HealthClient::new(bare_channel(&p.scheduler_url).await);
    let check = HealthCheckRequest { service: "reservoir.v1.SchedulerService".into() };
    let status = health.check(check).await.expect("health answers without the token").into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let (records,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM metering.usage_records").fetch_one(&pool).await.expect("count");
    assert!(records <= 1, "the refused request was never admitted");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_dead_worker_is_routed_around_without_loss(pool: PgPool) {
    let model = model();
    let (w0, s0) = worker(&model).await;
    let (w1, _s1) = worker(&model).await;
    // The first worker dies before the scheduler's health check notices.
    s0.trigger();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut p = platform(pool.clone(), vec![w0, w1], 4, QueueLimits::default()).await;
    for i in 0..4 {
        let id = format!("r{i}");
        let done = complete(&mut p, request(&id, "walk-in", "abc", 10)).await.expect("completes on the live worker");
        assert_eq!(done.tokens, reference(&model, "abc", 10), "{id}");
        assert_eq!(usage_row(&pool, &id).await.2, 10, "usage counted once for {id}");
    }
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM metering.usage_records").fetch_one(&pool).await.expect("count");
    assert_eq!(rows, 4);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_worker_with_a_full_queue_is_asked_again_not_taken_out(pool: PgPool) {
    // The worker holds one request; the scheduler sends it up to four.
    let model = model();
    let (w0, _s0) = worker_with_queue(&model, 1).await;
    let mut p = platform(pool.clone(), vec![w0], 4, QueueLimits::default()).await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut scheduler = p.scheduler.clone();
        clients.push(tokio::spawn(async move {
            let mut stream = scheduler.complete(request(&format!("b{i}"), "walk-in", "abc", 40)).await?.into_inner();
            let mut tokens = Vec::new();
            while let Some(event) = stream.message().await? {
                if let Some(pb::complete_event::Event::Token(t)) = event.event {
                    tokens.push(t.token_id);
                }
            }
            Ok::<_, tonic::Status>(tokens)
        }));
    }
    for (i, client) in clients.into_iter().enumerate() {
        let tokens = client.await.expect("join").expect("served once the worker has room");
        assert_eq!(tokens, reference(&model, "abc", 40), "b{i}");
        assert_eq!(usage_row(&pool, &format!("b{i}")).await.3, "ok");
    }
    // Still in rotation: the next request is served at once.
    let after = complete(&mut p, request("b-after", "walk-in", "abc", 3)).await.expect("served");
    assert_eq!(after.tokens.len(), 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_full_spot_queue_sheds_with_retry_after_and_bad_requests_are_refused(pool: PgPool) {
    // No worker at all: everything waits, so the second spot request finds the queue full.
    let limits = QueueLimits { spot_capacity: 1, ..QueueLimits::default() };
    let mut p = platform(pool.clone(), Vec::new(), 1, limits).await;
    let _waiting = p.scheduler.complete(request("q1", "walk-in", "abc", 5)).await.expect("queued");
    let shed = p.scheduler.complete(request("q2", "walk-in", "abc", 5)).await.expect_err("shed");
    assert_eq!(shed.code(), tonic::Code::ResourceExhausted);
    let retry_after: u32 =
        shed.metadata().get("retry-after").expect("retry-after").to_str().expect("ascii").parse().expect("seconds");
    assert!(retry_after >= 1);
    assert_eq!(usage_row(&pool, "q2").await, ("spot".into(), None, 0, "shed".into()), "a shed request is metered too");

    let unknown =
        p.scheduler.complete(pb::CompleteRequest { model: "no-such".into(), ..request("q3", "walk-in", "a", 1) }).await;
    assert_eq!(unknown.map(|_| ()).expect_err("unknown model").code(), tonic::Code::NotFound);
    let bad = p
        .scheduler
        .complete(pb::CompleteRequest { tenant_id: "bad tenant".into(), ..request("q4", "x", "a", 1) })
        .await;
    assert_eq!(bad.map(|_| ()).expect_err("bad tenant").code(), tonic::Code::InvalidArgument);
    let empty = p.scheduler.complete(pb::CompleteRequest { input: None, ..request("q5", "walk-in", "a", 1) }).await;
    assert_eq!(empty.map(|_| ()).expect_err("no input").code(), tonic::Code::InvalidArgument);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_reserved_request_past_its_queue_deadline_is_unavailable_and_a_platform_error(pool: PgPool) {
    // No worker: nothing can serve the request. Enterprise's TTFT target is
    // 500 ms (the model's prefill rate is not measured), so the request
    // leaves the queue after four times that, not never.
    let mut p = platform(pool.clone(), Vec::new(), 4, QueueLimits::default()).await;
    // 1 token/s, 30 s of burst: a bucket of 30 weighted tokens; the request
    // costs about 40, so it is reserved and leaves the contract in debt.
    let contract = reserve_tier(&mut p, "gold", 1, false, pb::Tier::Enterprise).await;
    let mut stream = p.scheduler.complete(request("late", "gold", "abc", 40)).await.expect("admitted").into_inner();
    let answer = stream.message().await.expect_err("answered with an error, not left waiting");
    assert_eq!(answer.code(), tonic::Code::Unavailable, "{answer:?}");
    let retry_after: u32 =
        answer.metadata().get("retry-after").expect("retry-after").to_str().expect("ascii").parse().expect("seconds");
    assert!(retry_after >= 1);
    assert_eq!(
        usage_row(&pool, "late").await,
        ("reserved".into(), Some(contract), 0, "platform_error".into()),
        "counted against the contract's SLA as a platform error"
    );
    wait_metric(&p, r#"reservoir_scheduler_queue_deadline_passed_total{class="reserved"} 1"#).await;
    // Nothing ran, so its charge went back to the bucket: the next request
    // is reserved again (still in debt, it would have been spot).
    let _next = p.scheduler.complete(request("next", "gold", "abc", 40)).await.expect("admitted");
    let next = usage_row(&pool, "next").await;
    assert_eq!((next.0.as_str(), next.3.as_str()), ("reserved", "platform_error"));
}

/// Waits (bounded) until the scheduler's metrics contain `line`.
async fn wait_metric(p: &Platform, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = reqwest::get(&p.metrics_url).await.expect("metrics").text().await.expect("text");
        if metrics.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {line} in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn workers_register_themselves_and_their_stats_stream_is_their_health(pool: PgPool) {
    let model = model();
    // A scheduler that knows no worker.
    let mut p = platform(pool.clone(), Vec::new(), 4, QueueLimits::default()).await;
    let (url, stop) = worker(&model).await;
    let register = |id: &str, url: &str| pb::RegisterWorkerRequest { worker_id: id.into(), url: url.into() };
    for (id, bad_url) in [("", url.as_str()), ("w 1", url.as_str()), ("w1", "not a url"), ("w1", "ftp://host:1")] {
        let err = p.scheduler.register_worker(register(id, bad_url)).await.expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{id:?} {bad_url:?}: {err:?}");
    }
    let first = p.scheduler.register_worker(register("late", &url)).await.expect("registered").into_inner();
    assert!(!first.known);
    let again = p.scheduler.register_worker(register("late", &url)).await.expect("registered").into_inner();
    assert!(again.known, "registering again changes nothing");

    let done = complete(&mut p, request("r-registered", "walk-in", "abc", 6)).await.expect("served");
    assert_eq!(done.admitted.worker_id, "late");
    assert_eq!(done.tokens, reference(&model, "abc", 6));
    // The scheduler follows the worker's stats stream: up while it streams,
    // down as soon as the worker is gone.
    wait_metric(&p, r#"reservoir_scheduler_worker_up{worker="late"} 1"#).await;
    stop.trigger();
    wait_metric(&p, r#"reservoir_scheduler_worker_up{worker="late"} 0"#).await;
}
