//! Prompts built to cost the platform CPU, sent to a real scheduler over
//! gRPC with a real worker (tiny seeded model, in-process) whose tokenizer
//! merges runs of letters: the worst case of byte-pair merging.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reservoir_engine::test_support::{TinySpec, tiny_model};
use reservoir_engine::{Engine, EngineConfig, Tokenizer};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::scheduler_service_client::SchedulerServiceClient;
use reservoir_runtime::Shutdown;
use reservoir_runtime::db::MIGRATOR;
use reservoir_scheduler::{QueueLimits, SchedulerSettings};
use reservoir_worker::{EngineBackend, WorkerSettings};
use sqlx::PgPool;
use tonic::transport::{Channel, Endpoint};

const MODEL: &str = "smollm2-135m-instruct";
const LOOPBACK: ([u8; 4], u16) = ([127, 0, 0, 1], 0);
/// The scheduler's cap (`reservoir_tokenizer::PROMPT_BYTES_MAX`).
const PROMPT_BYTES_MAX: usize = 128 * 1024;

/// Letters, then "aa", "aaaa", ... "a" x 128 with the merges that build
/// them: a run of letters without spaces is one piece that merges all the
/// way down, which cost the old merge loop O(n^2).
fn doubling_tokenizer() -> Arc<Tokenizer> {
    let mut tokens: Vec<String> = (b'a'..=b'z').map(|c| (c as char).to_string()).collect();
    tokens.extend((1..=7).map(|k| "a".repeat(1 << k)));
    let merges: Vec<String> = (0..7).map(|k| format!("{0} {0}", "a".repeat(1 << k))).collect();
    Arc::new(Tokenizer::new(tokens, &merges, &[], None, None, false).expect("tokenizer"))
}

struct Platform {
    scheduler: SchedulerServiceClient<Channel>,
    metrics_url: String,
    _spool: tempfile::TempDir,
    _shutdown: Shutdown,
}

/// Contracts, scheduler and one worker whose context holds a prompt at the cap.
async fn platform(pool: PgPool) -> Platform {
    let shutdown = Shutdown::new();
    // 128 KiB of "a" is 1024 tokens of "a" x 128: room for them and a reply.
    let model = tiny_model(&TinySpec { ctx_len: 2048, ..TinySpec::default() }).expect("tiny model");
    let engine = Engine::new(model, EngineConfig::default()).expect("engine");
    let worker_settings = WorkerSettings {
        listen: SocketAddr::from(LOOPBACK),
        model_id: MODEL.into(),
        queue_capacity: 64,
        step_token_budget: 256,
        ..WorkerSettings::default()
    };
    let backend = EngineBackend::new(engine, doubling_tokenizer(), 8192);
    let worker = reservoir_worker::build(&worker_settings, backend, Default::default()).await.expect("worker");
    let worker_url = format!("http://127.0.0.1:{}", worker.port());
    tokio::spawn(worker.run_until_stopped(shutdown.clone()));

    reservoir_contracts::seed_model(&pool, &MODEL.parse().expect("id"), 1000, rust_decimal::Decimal::new(10, 2))
        .await
        .expect("seed");
    let contracts_settings =
        reservoir_contracts::ContractsSettings { listen: SocketAddr::from(LOOPBACK), ..Default::default() };
    let contracts =
        reservoir_contracts::build(&contracts_settings, pool.clone(), Default::default()).await.expect("contracts");
    let contracts_url = format!("http://127.0.0.1:{}", contracts.port());
    tokio::spawn(contracts.run_until_stopped(shutdown.clone()));
    let metering_settings = reservoir_metering::MeteringSettings { listen: SocketAddr::from(LOOPBACK) };
    let metering = reservoir_metering::build(&metering_settings, pool, Default::default()).await.expect("metering");
    let metering_url = format!("http://127.0.0.1:{}", metering.port());
    tokio::spawn(metering.run_until_stopped(shutdown.clone()));
    let spool = tempfile::tempdir().expect("spool folder");
    let settings = SchedulerSettings {
        listen: SocketAddr::from(LOOPBACK),
        metrics_listen: SocketAddr::from(LOOPBACK),
        contracts_url,
        metering_url,
        spool_dir: spool.path().to_path_buf(),
        workers: vec![worker_url],
        per_worker_in_flight: 4,
        queue_limits: QueueLimits::default(),
        fcfs: false,
    };
    let scheduler = reservoir_scheduler::build(&settings, Default::default()).await.expect("scheduler");
    let scheduler_url = format!("http://127.0.0.1:{}", scheduler.port());
    let metrics_url = format!("http://127.0.0.1:{}/metrics", scheduler.metrics_port());
    tokio::spawn(scheduler.run_until_stopped(shutdown.clone()));
    let channel = Endpoint::from_shared(scheduler_url).expect("url").connect().await.expect("connect");
    Platform { scheduler: SchedulerServiceClient::new(channel), metrics_url, _spool: spool, _shutdown: shutdown }
}

fn request(id: &str, prompt: String, max_tokens: u32) -> pb::CompleteRequest {
    pb::CompleteRequest {
        request_id: id.into(),
        tenant_id: "walk-in".into(),
        model: MODEL.into(),
        input: Some(pb::complete_request::Input::Prompt(prompt)),
        params: Some(pb::GenerationParams { max_tokens, ..Default::default() }),
        wants_spot: false,
    }
}

/// Streams a request to its end; answers the tokens and the finish event.
async fn complete(
    mut scheduler: SchedulerServiceClient<Channel>,
    req: pb::CompleteRequest,
) -> Result<(Vec<u32>, pb::FinishEvent), tonic::Status> {
    let mut stream = scheduler.complete(req).await?.into_inner();
    let (mut tokens, mut finish) = (Vec::new(), None);
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(pb::complete_event::Event::Token(t)) => tokens.push(t.token_id),
            Some(pb::complete_event::Event::Finish(f)) => finish = Some(f),
            _ => {}
        }
    }
    Ok((tokens, finish.expect("a finish event")))
}

async fn metrics(p: &Platform) -> String {
    reqwest::get(&p.metrics_url).await.expect("metrics").text().await.expect("text")
}

/// Waits (bounded) until the scheduler has learned the worker's tokenizer.
async fn wait_tokenizer_known(p: &Platform) {
    let known = format!(r#"reservoir_scheduler_tokenizer_known{{model="{MODEL}"}} 1"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics(p).await.contains(&known) {
        assert!(Instant::now() < deadline, "the scheduler never learned the tokenizer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_prompt_over_the_cap_is_refused_before_tokenizing_and_one_at_it_is_served(pool: PgPool) {
    let p = platform(pool).await;
    wait_tokenizer_known(&p).await;

    // 256 KiB without spaces: refused on its size, never tokenized nor queued.
    let refused = complete(p.scheduler.clone(), request("huge", "a".repeat(256 * 1024), 4)).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("262144 bytes"), "{}", refused.message());
    assert!(!metrics(&p).await.contains("reservoir_scheduler_prompt_tokens_at_admission_total"), "nothing counted");

    // At the cap, beside a small request: both are answered, the big one
    // tokenized on the blocking pool (counted, one token per 128 letters).
    let big = tokio::spawn(complete(p.scheduler.clone(), request("at-cap", "a".repeat(PROMPT_BYTES_MAX), 4)));
    let small = tokio::spawn(complete(p.scheduler.clone(), request("small", "abc".into(), 4)));
    let (small_tokens, small_finish) = small.await.expect("join").expect("the small request is served");
    assert_eq!(small_tokens.len(), 4, "{small_finish:?}");
    let (big_tokens, big_finish) = big.await.expect("join").expect("the big request is served");
    assert_eq!(big_tokens.len(), 4);
    let usage = big_finish.usage.expect("usage");
    assert_eq!(usage.prompt_tokens, (PROMPT_BYTES_MAX / 128) as u32);
    let counted = r#"reservoir_scheduler_prompt_tokens_at_admission_total{how="counted"} 2"#;
    assert!(metrics(&p).await.contains(counted), "both were tokenized at admission");
}
