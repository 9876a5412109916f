//! Fixtures of the worker tests: tiny models, a gated backend, helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use reservoir_engine::test_support::{TinySpec, tiny_model};
use reservoir_engine::{
    CacheSalt, Engine, EngineConfig, EngineError, EngineStats, Model, SamplingParams, SeqId, StepBatch, StepOutput,
    Tokenizer,
};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_runtime::Shutdown;
use reservoir_worker::{BackendInfo, EngineBackend, InferenceBackend, WorkerSettings};
use tonic::transport::Channel;

pub type Client = WorkerServiceClient<Channel>;

// ---------------------------------------------------------------- fixtures

pub const VOCAB: usize = 96;

/// Token i is the letter `a + i % 26` followed by `i / 26` underscores; no
/// merges, no end-of-sequence token: generation runs to max_tokens.
pub fn letter_tokenizer() -> Arc<Tokenizer> {
    reservoir_engine::test_support::letter_tokenizer(VOCAB).unwrap()
}

pub fn model() -> Arc<Model> {
    tiny_model(&TinySpec::default()).unwrap()
}

pub fn engine(model: &Arc<Model>, block_size: usize, blocks: usize) -> Engine {
    let c = &model.config;
    let per_block = reservoir_engine::attention::KvStore::bytes_per_block(c.n_layers, block_size, c.kv_dim());
    let cfg = EngineConfig { block_size, kv_budget_bytes: blocks * per_block, ..EngineConfig::default() };
    Engine::new(model.clone(), cfg).unwrap()
}

pub fn backend(model: &Arc<Model>, block_size: usize, blocks: usize) -> EngineBackend {
    EngineBackend::new(engine(model, block_size, blocks), letter_tokenizer(), 8192)
}

pub async fn start(
    backend: impl InferenceBackend,
    queue_capacity: usize,
    step_token_budget: usize,
) -> (Client, Shutdown) {
    let settings = WorkerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        model_id: "tiny".into(),
        queue_capacity,
        step_token_budget,
        ..WorkerSettings::default()
    };
    let server = reservoir_worker::build(&settings, backend, Default::default()).await.unwrap();
    let port = server.port();
    let shutdown = Shutdown::new();
    tokio::spawn(server.run_until_stopped(shutdown.clone()));
    let client = WorkerServiceClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
    (client, shutdown)
}

/// `class` is a wire name ("reserved", "burst", "spot"), for short tests.
pub fn request(id: &str, class: &str, prompt: &str, max_tokens: u32) -> pb::GenerateRequest {
    let class: reservoir_domain::PriorityClass = class.parse().expect("a class name");
    pb::GenerateRequest {
        request_id: id.into(),
        tenant_id: "acme".into(),
        priority_class: pb::PriorityClass::from(class).into(),
        input: Some(pb::generate_request::Input::Prompt(prompt.into())),
        params: Some(pb::GenerationParams { max_tokens, ..Default::default() }),
        continue_from_token_ids: vec![],
        prompt_token_ids: vec![],
        cache_salt: String::new(),
        first_token_due_in_ms: None,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub tokens: Vec<u32>,
    pub logprobs: Vec<Option<f32>>,
    pub text: String,
    pub finish: pb::FinishEvent,
}

impl Outcome {
    pub fn usage(&self) -> pb::Usage {
        self.finish.usage.unwrap()
    }
}

pub async fn collect(stream: tonic::Response<tonic::Streaming<pb::GenerateEvent>>) -> Outcome {
    let mut stream = stream.into_inner();
    let (mut tokens, mut logprobs, mut text, mut finish) = (Vec::new(), Vec::new(), String::new(), None);
    while let Some(ev) = stream.message().await.unwrap() {
        assert!(finish.is_none(), "nothing may follow the final event");
        match ev.event.unwrap() {
            pb::generate_event::Event::Token(t) => {
                tokens.push(t.token_id);
                logprobs.push(t.logprob);
                text.push_str(&t.text);
            }
            pb::generate_event::Event::Finish(f) => {
                text.push_str(&f.text);
                finish = Some(f);
            }
        }
    }
    Outcome { tokens, logprobs, text, finish: finish.expect("a final event") }
}

pub async fn generate(client: &mut Client, req: pb::GenerateRequest) -> Outcome {
    collect(client.generate(req).await.unwrap()).await
}

/// What the engine's own `Generation` produces for this prompt, alone.
pub fn reference(model: &Arc<Model>, prompt: &[u32], params: SamplingParams) -> (Vec<u32>, Vec<f32>, String) {
    let tok = letter_tokenizer();
    let mut eng = engine(model, 16, 256);
    let mut g = reservoir_engine::generate(&mut eng, &tok, 1, prompt, params).unwrap();
    let (mut ids, mut lps) = (Vec::new(), Vec::new());
    for t in g.by_ref() {
        let t = t.unwrap();
        ids.push(t.id);
        lps.push(t.logprob);
    }
    let text = g.text().to_string();
    (ids, lps, text)
}

pub fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams { max_tokens, ..SamplingParams::default() }
}

pub fn encode(prompt: &str) -> Vec<u32> {
    letter_tokenizer().encode(prompt, true)
}

/// Distinct letter prompts of various lengths.
pub fn prompt(i: usize, len: usize) -> String {
    (0..len).map(|j| (b'a' + ((i * 7 + j * 3) % 26) as u8) as char).collect()
}

/// Prompt `i` at the first of its lengths (up to 63 letters) that encodes
/// to exactly `n` tokens.
pub fn prompt_with_tokens(i: usize, n: usize) -> String {
    (1..64).map(|len| prompt(i, len)).find(|p| encode(p).len() == n).expect("a prompt of that many tokens")
}

pub async fn stats(client: &mut Client) -> pb::WorkerStats {
    client.stats(pb::WorkerStatsRequest {}).await.unwrap().into_inner()
}

/// Polls Stats until the worker is idle with every KV block free.
pub async fn wait_idle(client: &mut Client) -> pb::WorkerStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = stats(client).await;
        if s.running_sequences == 0 && s.waiting_sequences == 0 && s.free_kv_blocks == s.total_kv_blocks {
            return s;
        }
        assert!(Instant::now() < deadline, "worker never became idle: {s:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ------------------------------------------------- a backend tests can pause

#[derive(Default)]
pub struct GateState {
    /// Steps that may still start (usize::MAX: open).
    pub allowed: usize,
    /// Steps started so far.
    pub entered: usize,
    /// (added?, sequence) in call order: add_sequence and remove_sequence.
    pub log: Vec<(bool, SeqId)>,
    /// Each sequence's tokens when first added.
    pub tokens: HashMap<SeqId, Vec<u32>>,
    /// Per finished step, in order: the sequences it returned logits for.
    pub finished: Vec<Vec<SeqId>>,
}

#[derive(Default)]
pub struct Gate {
    pub state: Mutex<GateState>,
    pub cv: Condvar,
}

impl Gate {
    pub fn allow(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        s.allowed = s.allowed.saturating_add(n);
        self.cv.notify_all();
    }

    pub fn open(&self) {
        self.allow(usize::MAX);
    }

    pub fn entered(&self) -> usize {
        self.state.lock().unwrap().entered
    }

    pub async fn wait_entered(self: &Arc<Self>, n: usize) {
        let gate = self.clone();
        tokio::task::spawn_blocking(move || {
            let s = gate.state.lock().unwrap();
            let (s, timeout) = gate.cv.wait_timeout_while(s, Duration::from_secs(20), |s| s.entered < n).unwrap();
            assert!(!timeout.timed_out(), "only {} steps started, waited for {n}", s.entered);
        })
        .await
        .unwrap();
    }

    pub fn finished(&self) -> Vec<Vec<SeqId>> {
        self.state.lock().unwrap().finished.clone()
    }

    /// The index of the finished step that gave `id` its logits first.
    pub fn step_of(&self, id: SeqId) -> usize {
        let finished = self.finished();
        finished.iter().position(|step| step.contains(&id)).unwrap_or_else(|| panic!("{id} never ran: {finished:?}"))
    }

    pub fn log(&self) -> Vec<(bool, SeqId)> {
        self.state.lock().unwrap().log.clone()
    }

    /// The sequence first added with exactly these tokens.
    pub fn seq_of(&self, tokens: &[u32]) -> SeqId {
        let s = self.state.lock().unwrap();
        *s.tokens.iter().find(|(_, t)| t.as_slice() == tokens).map(|(id, _)| id).expect("sequence was added")
    }
}

pub struct Gated<B> {
    pub inner: B,
    pub gate: Arc<Gate>,
}

impl<B: InferenceBackend> InferenceBackend for Gated<B> {
    fn info(&self) -> BackendInfo {
        self.inner.info()
    }
    fn tokenizer(&self) -> Arc<Tokenizer> {
        self.inner.tokenizer()
    }
    fn add_sequence(&mut self, id: SeqId, tokens: &[u32], salt: CacheSalt) -> Result<usize, EngineError> {
        let mut s = self.gate.state.lock().unwrap();
        s.log.push((true, id));
        s.tokens.entry(id).or_insert_with(|| tokens.to_vec());
        drop(s);
        self.inner.add_sequence(id, tokens, salt)
    }
    fn remove_sequence(&mut self, id: SeqId) -> Result<(), EngineError> {
        self.gate.state.lock().unwrap().log.push((false, id));
        self.inner.remove_sequence(id)
    }
    fn free_blocks(&self) -> usize {
        self.inner.free_blocks()
    }
    type Pending = B::Pending;
    fn begin_step(&mut self, batch: &StepBatch) -> Result<B::Pending, EngineError> {
        {
            let mut s = self.gate.state.lock().unwrap();
            s.entered += 1;
            self.gate.cv.notify_all();
            let mut s = self.gate.cv.wait_while(s, |s| s.allowed == 0).unwrap();
            if s.allowed != usize::MAX {
                s.allowed -= 1;
            }
        }
        self.inner.begin_step(batch)
    }
    fn advance(&mut self, step: &mut B::Pending, pause: &(dyn Fn() -> bool + Sync)) -> Result<bool, EngineError> {
        self.inner.advance(step, pause)
    }
    fn finish_step(&mut self, step: B::Pending) -> Result<StepOutput, EngineError> {
        let out = self.inner.finish_step(step)?;
        self.gate.state.lock().unwrap().finished.push(out.outputs.iter().map(|o| o.seq).collect());
        Ok(out)
    }
    fn stats(&self) -> EngineStats {
        self.inner.stats()
    }
}

pub fn gated(inner: EngineBackend) -> (Gated<EngineBackend>, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    (Gated { inner, gate: gate.clone() }, gate)
}
