//! The worker over real gRPC on loopback (port 0), on tiny seeded models
//! built in memory: every test runs in milliseconds. One test uses the real
//! SmolLM2 model when `scripts/fetch-model` has put it in place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use reservoir_engine::{ChatMessage, Engine, EngineConfig, SamplingParams, SeqId};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_runtime::Shutdown;
use reservoir_worker::{EngineBackend, WorkerSettings};
use support::*;
use tonic::Code;
use tonic::transport::Channel;

// ------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_stream_equals_the_engines_own_generation() {
    let m = model();
    let (mut client, _shutdown) = start(backend(&m, 16, 256), 16, 512).await;

    let text = "thequickbrownfox";
    let (ids, lps, expected_text) = reference(&m, &encode(text), greedy(24));
    assert!(ids.len() == 24 && ids.iter().collect::<std::collections::HashSet<_>>().len() > 1, "{ids:?}");
    let mut req = request("r1", "reserved", text, 24);
    req.params.as_mut().unwrap().logprobs = true;
    let got = generate(&mut client, req).await;
    assert_eq!(got.tokens, ids);
    assert_eq!(got.text, expected_text);
    assert_eq!(got.finish.finish_reason(), pb::FinishReason::Length);
    assert_eq!(
        got.usage(),
        pb::Usage { prompt_tokens: text.len() as u32, completion_tokens: 24, cached_prompt_tokens: 0 }
    );
    for (got, want) in got.logprobs.iter().zip(&lps) {
        assert!((got.unwrap() - want).abs() < 1e-4, "{got:?} vs {want}");
    }
    // The engine prefilled the prompt and fed back every generated token but the last.
    let s = wait_idle(&mut client).await;
    assert_eq!((s.prefilled_tokens, s.decoded_tokens), (text.len() as u64, 23));

    // Handed the prompt's tokens (as the scheduler counted them), the worker
    // uses them as they are: the same generation. Ids outside the vocabulary
    // are refused.
    let mut pretokenized = request("r1-ids", "reserved", text, 24);
    pretokenized.prompt_token_ids = encode(text);
    assert_eq!(generate(&mut client, pretokenized).await.tokens, ids);
    let mut bad = request("r1-bad", "reserved", text, 24);
    bad.prompt_token_ids = vec![u32::MAX];
    let refused = client.generate(bad).await.map(|_| ()).expect_err("outside the vocabulary");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // The same prompt again is served from the prefix cache: same tokens,
    // and the cached prompt tokens are reported (whole 16-token blocks).
    let again = generate(&mut client, request("r2", "spot", text, 24)).await;
    assert_eq!(again.tokens, ids);
    assert!(again.logprobs.iter().all(Option::is_none), "logprobs only when asked");
    assert_eq!(again.usage().cached_prompt_tokens, 0, "the last prompt token is never cached; 16 tokens = 1 block - 1");
    let long = "thequickbrownfoxjumpsoverthelazydog";
    let first = generate(&mut client, request("r3", "burst", long, 4)).await;
    let cached = generate(&mut client, request("r4", "burst", long, 4)).await;
    assert_eq!(first.tokens, cached.tokens);
    assert_eq!(cached.usage().cached_prompt_tokens, 32);

    // Chat input goes through the chat template.
    let messages = vec![ChatMessage::new("user", "hello there")];
    let prompt_ids = reservoir_engine::chat_prompt(&letter_tokenizer(), &messages);
    let (ids, _, _) = reference(&m, &prompt_ids, greedy(8));
    let mut req = request("r5", "burst", "", 8);
    req.input = Some(pb::generate_request::Input::Messages(pb::ChatInput {
        messages: vec![pb::ChatTurn { role: "user".into(), content: "hello there".into() }],
    }));
    let got = generate(&mut client, req).await;
    assert_eq!(got.tokens, ids);
    assert_eq!(got.usage().prompt_tokens as usize, prompt_ids.len());

    let s = wait_idle(&mut client).await;
    assert_eq!(s.model_id, "tiny");
    assert_eq!(s.total_kv_blocks, 256);
    assert_eq!(s.kv_block_size, 16);
    assert_eq!(s.context_length, 512);
    assert!(s.tokens_per_s > 0.0 && s.generated_tokens_per_s > 0.0, "{s:?}");
    assert!(s.prefix_hit_rate > 0.0, "{s:?}");
}

/// The prefix cache is keyed by tenant: a tenant sending another's prompt
/// right after it computes it afresh (`cached_prompt_tokens` 0, so it cannot
/// learn that anyone sent it), while each tenant's own repeats are cached;
/// requests that name the same `cache_salt` share one cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_prompt_tokens_never_come_from_another_tenant() {
    let m = model();
    let (mut client, _shutdown) = start(backend(&m, 16, 256), 16, 512).await;
    let text = "thequickbrownfoxjumpsoverthelazydog";
    let from = |tenant: &str, id: &str, salt: &str| pb::GenerateRequest {
        tenant_id: tenant.into(),
        cache_salt: salt.into(),
        ..request(id, "spot", text, 4)
    };
    let cached = |o: &Outcome| o.usage().cached_prompt_tokens;

    let a = generate(&mut client, from("acme", "a1", "")).await;
    assert_eq!(cached(&a), 0);
    let b = generate(&mut client, from("globex", "b1", "")).await;
    assert_eq!(cached(&b), 0, "globex must not hit acme's cache");
    assert_eq!(b.tokens, a.tokens, "computed afresh, the same tokens");
    assert_eq!(cached(&generate(&mut client, from("acme", "a2", "")).await), 32, "acme's own prompt again");
    assert_eq!(cached(&generate(&mut client, from("globex", "b2", "")).await), 32, "globex's own too");

    // Opting into a shared cache: a salt of its own, shared by all who name it.
    assert_eq!(cached(&generate(&mut client, from("acme", "a3", "public")).await), 0);
    assert_eq!(cached(&generate(&mut client, from("initech", "c1", "public")).await), 32);
    assert_eq!(cached(&generate(&mut client, from("initech", "c2", "")).await), 0, "initech's own is apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let settings = WorkerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        model_id: "tiny".into(),
        queue_capacity: 4,
        step_token_budget: 64,
        ..WorkerSettings::default()
    };
    let server = reservoir_worker::build(&settings, backend(&model(), 16, 64), Default::default()).await.unwrap();
    let port = server.port();
    let shutdown = Shutdown::new();
    let serving = tokio::spawn(server.run_until_stopped(shutdown.clone()));
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    let service = reservoir_proto::v1::worker_service_server::SERVICE_NAME.to_string();
    let answer = health.check(HealthCheckRequest { service }).await.unwrap().into_inner();
    assert_eq!(answer.status, ServingStatus::Serving as i32);
    // Shutdown stops the server and the engine thread.
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(20), serving).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_streams_exactly_the_rest_of_the_undisturbed_run() {
    let m = model();
    let (mut client, _shutdown) = start(backend(&m, 4, 256), 16, 512).await;
    let text = "failoverisnotanexcuse";
    let n = 20;
    let full = generate(&mut client, request("full", "reserved", text, n)).await;
    assert_eq!(full.tokens.len(), n as usize);
    for k in [1usize, 7, 19] {
        let mut req = request("resume", "reserved", text, n);
        req.continue_from_token_ids = full.tokens[..k].to_vec();
        let rest = generate(&mut client, req).await;
        assert_eq!(rest.tokens, full.tokens[k..], "resumed after {k}");
        let tok = letter_tokenizer();
        assert_eq!(rest.text, tok.decode(&full.tokens[k..]));
        assert_eq!(rest.finish.finish_reason(), pb::FinishReason::Length);
        assert_eq!(rest.usage().completion_tokens, n, "continued tokens count as sent");
        assert_eq!(rest.usage().prompt_tokens as usize, text.len());
    }
    // All tokens given: nothing left to generate.
    let mut req = request("done", "reserved", text, n);
    req.continue_from_token_ids = full.tokens.clone();
    let done = generate(&mut client, req).await;
    assert!(done.tokens.is_empty());
    assert_eq!(done.finish.finish_reason(), pb::FinishReason::Length);

    // Seeded sampling resumes on the same random stream.
    let sampled = |id: &str, from: &[u32]| {
        let mut r = request(id, "spot", text, n);
        let p = r.params.as_mut().unwrap();
        p.temperature = 1.0;
        p.top_k = 40;
        p.seed = 7;
        r.continue_from_token_ids = from.to_vec();
        r
    };
    let full = generate(&mut client, sampled("s", &[])).await;
    let rest = generate(&mut client, sampled("s2", &full.tokens[..5])).await;
    assert_eq!(rest.tokens, full.tokens[5..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_the_same_tokens_as_alone() {
    let m = model();
    // A small step budget forces chunked prefill next to running decodes.
    let (client, _shutdown) = start(backend(&m, 4, 512), 32, 12).await;
    let prompts: Vec<String> = (0..6).map(|i| prompt(i, 5 + i * 9)).collect();
    let expected: Vec<Vec<u32>> = prompts.iter().map(|p| reference(&m, &encode(p), greedy(10)).0).collect();
    let tasks: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut c = client.clone();
            let class = ["reserved", "burst", "spot"][i % 3];
            let req = request(&format!("c{i}"), class, p, 10);
            tokio::spawn(async move { generate(&mut c, req).await })
        })
        .collect();
    for (t, want) in tasks.into_iter().zip(&expected) {
        assert_eq!(&t.await.unwrap().tokens, want);
    }
}

/// Sends `requests` (request i asking for `prompt(i + 1, 8)`) while the
/// engine is busy with a first spot request, lets them all finish, and
/// answers the order in which the engine took them in, as prompt numbers
/// (0: the first spot request).
async fn admission_order(requests: Vec<pb::GenerateRequest>) -> Vec<usize> {
    let m = model();
    let (backend, gate) = gated(backend(&m, 16, 256));
    let (mut client, _shutdown) = start(backend, 16, 512).await;
    // The engine is busy with a first spot request (its step is paused).
    let first = client.generate(request("s0", "spot", &prompt(0, 8), 4)).await.unwrap();
    gate.wait_entered(1).await;
    let n = requests.len();
    let mut streams = Vec::new();
    for r in requests {
        streams.push(client.generate(r).await.unwrap());
    }
    gate.open();
    let _ = collect(first).await;
    for s in streams {
        assert_eq!(collect(s).await.finish.finish_reason(), pb::FinishReason::Length);
    }
    let number = |id: SeqId| (0..=n).find(|&i| gate.seq_of(&encode(&prompt(i, 8))) == id).unwrap();
    gate.log().iter().filter(|(add, _)| *add).map(|(_, id)| number(*id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_reserved_requests_are_admitted_before_spot() {
    let order = [("s1", "spot"), ("r1", "reserved"), ("b1", "burst"), ("s2", "spot"), ("r2", "reserved")];
    let requests = order.iter().enumerate().map(|(i, (id, class))| request(id, class, &prompt(i + 1, 8), 4)).collect();
    // s0 first (it was alone), then reserved, burst, spot, FIFO within a class.
    assert_eq!(admission_order(requests).await, vec![0, 2, 5, 3, 1, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_reserved_requests_are_admitted_earliest_deadline_first() {
    // Arrival order is not deadline order; one has no deadline at all.
    let due = [("late", Some(60_000)), ("none", None), ("soon", Some(1_000)), ("now", Some(0))];
    let requests = due
        .iter()
        .enumerate()
        .map(|(i, (id, due_in_ms))| pb::GenerateRequest {
            first_token_due_in_ms: *due_in_ms,
            ..request(id, "reserved", &prompt(i + 1, 8), 4)
        })
        .collect();
    assert_eq!(admission_order(requests).await, vec![0, 4, 3, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_prefill_cuts_into_a_spot_step_in_progress() {
    let m = model();
    let (backend, gate) = gated(backend(&m, 16, 256));
    let (mut client, _shutdown) = start(backend, 16, 512).await;
    // A long spot prefill is about to run (its step is held at the gate)
    // when a reserved request and a later spot one arrive.
    let (ps, pr, ps2) = (prompt(1, 40), prompt(2, 8), prompt(3, 8));
    let spot = client.generate(request("s", "spot", &ps, 4)).await.unwrap();
    gate.wait_entered(1).await;
    let reserved = client.generate(request("r", "reserved", &pr, 4)).await.unwrap();
    let spot2 = client.generate(request("s2", "spot", &ps2, 4)).await.unwrap();
    gate.open();
    let (spot, reserved, spot2) = (collect(spot).await, collect(reserved).await, collect(spot2).await);
    // Nothing changes in what anyone gets...
    for (got, p) in [(&spot, &ps), (&reserved, &pr), (&spot2, &ps2)] {
        assert_eq!(got.tokens, reference(&m, &encode(p), greedy(4)).0, "prompt {p}");
    }
    // ...but the reserved prompt ran between the layers of the spot step and
    // got its first token before it; the later spot request did not cut in.
    let (s, r, s2) = (gate.seq_of(&encode(&ps)), gate.seq_of(&encode(&pr)), gate.seq_of(&encode(&ps2)));
    let finished = gate.finished();
    assert_eq!(finished[0], vec![r], "{finished:?}");
    assert_eq!(finished[1], vec![s], "{finished:?}");
    assert!(!finished[1].contains(&s2), "{finished:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_in_steps_are_counted_while_the_step_they_paused_waits() {
    let m = model();
    let (backend, gate) = gated(backend(&m, 16, 256));
    let (mut client, _shutdown) = start(backend, 16, 8).await;
    // A spot step is about to begin when a reserved prompt of two chunks
    // arrives: the spot step pauses, the first chunk runs, the second is
    // held at the gate.
    let (ps, pr) = (prompt_with_tokens(1, 8), prompt_with_tokens(2, 12));
    let spot = client.generate(request("s", "spot", &ps, 2)).await.unwrap();
    gate.wait_entered(1).await;
    let reserved = client.generate(request("r", "reserved", &pr, 2)).await.unwrap();
    gate.allow(2);
    gate.wait_entered(3).await;
    // The first chunk's tokens and time are in the figures already, though
    // the spot step it ran inside has not ended.
    let s = stats(&mut client).await;
    assert_eq!((s.prefilled_tokens, s.decoded_tokens), (8, 0), "{s:?}");
    assert!(s.step_seconds > 0.0, "{s:?}");
    gate.open();
    let (spot, reserved) = (collect(spot).await, collect(reserved).await);
    assert_eq!(spot.tokens, reference(&m, &encode(&ps), greedy(2)).0);
    assert_eq!(reserved.tokens, reference(&m, &encode(&pr), greedy(2)).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_prompt_one_token_over_a_step_gets_its_first_token_in_the_cut_in_run() {
    let m = model();
    let (backend, gate) = gated(backend(&m, 16, 256));
    let (mut client, _shutdown) = start(backend, 16, 8).await;
    // The spot prompt fills one step; the reserved one is a step and one
    // token, so its last chunk is a single token, which the planner cannot
    // tell from a decode.
    let (ps, pr) = (prompt_with_tokens(1, 8), prompt_with_tokens(2, 9));
    let spot = client.generate(request("s", "spot", &ps, 2)).await.unwrap();
    gate.wait_entered(1).await;
    let reserved = client.generate(request("r", "reserved", &pr, 2)).await.unwrap();
    gate.open();
    let (spot, reserved) = (collect(spot).await, collect(reserved).await);
    assert_eq!(spot.tokens, reference(&m, &encode(&ps), greedy(2)).0);
    assert_eq!(reserved.tokens, reference(&m, &encode(&pr), greedy(2)).0);
    // Both of the reserved prompt's chunks ran between the spot step's
    // layers: its first token came before the spot step's.
    let (s, r) = (gate.seq_of(&encode(&ps)), gate.seq_of(&encode(&pr)));
    assert!(gate.step_of(r) < gate.step_of(s), "{:?}", gate.finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_prompt_that_arrives_between_steps_runs_ahead_of_the_decodes() {
    let m = model();
    let (backend, gate) = gated(backend(&m, 16, 256));
    // 8 tokens a step, a decode counting 2.
    let (mut client, _shutdown) = start(backend, 16, 8).await;
    let (p0, ps, pr) = (prompt_with_tokens(1, 8), prompt_with_tokens(2, 8), prompt_with_tokens(3, 12));
    // A reserved step (it never pauses) is held at the gate when a spot
    // request and a 12-token reserved prompt arrive: the loop takes them in
    // after it, between two steps.
    let first = client.generate(request("r0", "reserved", &p0, 8)).await.unwrap();
    gate.wait_entered(1).await;
    let spot = client.generate(request("s", "spot", &ps, 4)).await.unwrap();
    let reserved = client.generate(request("r", "reserved", &pr, 2)).await.unwrap();
    gate.open();
    let (first, spot, reserved) = (collect(first).await, collect(spot).await, collect(reserved).await);
    for (got, p, n) in [(&first, &p0, 8), (&spot, &ps, 4), (&reserved, &pr, 2)] {
        assert_eq!(got.tokens, reference(&m, &encode(p), greedy(n)).0, "prompt {p}");
    }
    // Its two chunks ran as a cut-in would have (a step of their own each),
    // not a chunk per regular step beside the reserved decode: the step
    // that gave it its first token gave no one else a token.
    let (r0, r) = (gate.seq_of(&encode(&p0)), gate.seq_of(&encode(&pr)));
    let finished = gate.finished();
    assert_eq!(finished[1], Vec::<SeqId>::new(), "{finished:?}");
    assert_eq!(finished[2], vec![r], "{finished:?}");
    assert!(finished[3].contains(&r0), "{finished:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_request_due_sooner_joins_a_cut_in_run_already_going() {
    let m = model();
    let (backend, gate) = gated(backend(&m, 16, 256));
    // 8 tokens a step: the long reserved prompt takes four cut-in steps.
    let (mut client, _shutdown) = start(backend, 16, 8).await;
    let (ps, long, short) = (prompt(1, 8), prompt(2, 32), prompt(3, 8));
    let spot = client.generate(request("s", "spot", &ps, 4)).await.unwrap();
    gate.wait_entered(1).await;
    let due = |ms| move |r: pb::GenerateRequest| pb::GenerateRequest { first_token_due_in_ms: Some(ms), ..r };
    let long_req = client.generate(due(60_000)(request("long", "reserved", &long, 2))).await.unwrap();
    // The spot step starts, pauses between layers, and the long prompt's
    // first cut-in step is held at the gate.
    gate.allow(1);
    gate.wait_entered(2).await;
    let short_req = client.generate(due(0)(request("short", "reserved", &short, 2))).await.unwrap();
    gate.open();
    let (_, long_out, short_out) = (collect(spot).await, collect(long_req).await, collect(short_req).await);
    assert_eq!(short_out.tokens, reference(&m, &encode(&short), greedy(2)).0);
    assert_eq!(long_out.tokens, reference(&m, &encode(&long), greedy(2)).0);
    // The short one, due first, ran in the next cut-in step and got its
    // first token before the long prompt was done.
    let (l, sh) = (gate.seq_of(&encode(&long)), gate.seq_of(&encode(&short)));
    assert!(gate.step_of(sh) < gate.step_of(l), "{:?}", gate.finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_is_preempted_for_reserved_and_still_finishes_correctly() {
    let m = model();
    // 12 blocks of 4 tokens: two spot requests of 16 + 16 tokens (8 blocks
    // each) cannot both finish at once, nor next to a reserved one.
    let (backend, gate) = gated(backend(&m, 4, 12));
    let (mut client, _shutdown) = start(backend, 16, 512).await;
    let (pa, pb_, pr) = (prompt(1, 16), prompt(2, 16), prompt(3, 16));
    let a = client.generate(request("a", "spot", &pa, 16)).await.unwrap();
    let b = client.generate(request("b", "spot", &pb_, 16)).await.unwrap();
    gate.wait_entered(1).await;
    gate.allow(5);
    gate.wait_entered(6).await; // both spots are decoding and hold most blocks
    let r = client.generate(request("r", "reserved", &pr, 16)).await.unwrap();
    gate.open();
    let (a, b, r) = (collect(a).await, collect(b).await, collect(r).await);
    for (got, p) in [(&a, &pa), (&b, &pb_), (&r, &pr)] {
        assert_eq!(got.tokens, reference(&m, &encode(p), greedy(16)).0, "prompt {p}");
        assert_eq!(got.tokens.len(), 16, "already streamed tokens are not sent again");
        assert_eq!(got.finish.finish_reason(), pb::FinishReason::Length);
    }
    // The reserved request got its blocks by preempting the most recent spot
    // (removed right before the reserved one was added, and added again later).
    let log = gate.log();
    let (sr, sb) = (gate.seq_of(&encode(&pr)), gate.seq_of(&encode(&pb_)));
    let at = log.iter().position(|&e| e == (true, sr)).unwrap();
    assert_eq!(log[at - 1], (false, sb), "{log:?}");
    assert!(log[at..].contains(&(true, sb)), "the preempted spot is recomputed");
    let s = wait_idle(&mut client).await;
    assert!(s.preemptions["spot"] >= 1, "{s:?}");
    assert_eq!(s.preemptions["reserved"], 0, "reserved is never preempted for spot");
    // What the preempted spot recomputed is prefill work too: more than the three prompts.
    assert!(s.prefilled_tokens > 3 * 16, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_resource_exhausted_and_cancel_frees_blocks() {
    let m = model();
    let (backend, gate) = gated(backend(&m, 4, 256));
    let (mut client, _shutdown) = start(backend, 2, 512).await;
    let long = client.generate(request("long", "spot", &prompt(1, 30), 400)).await.unwrap();
    gate.wait_entered(1).await;
    let short = client.generate(request("short", "reserved", &prompt(2, 8), 5)).await.unwrap();
    let err = client.generate(request("third", "reserved", &prompt(3, 8), 5)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("queue is full"), "{}", err.message());

    // The client of the long request goes away after its first token.
    let mut long = long.into_inner();
    // Two steps: the long prefill, and the reserved prefill cutting into it.
    gate.allow(2);
    let first = long.message().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(pb::generate_event::Event::Token(_))));
    drop(long);
    // Let steps run one at a time until the worker is idle: the long request
    // (400 tokens) must be dropped long before it could finish.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = stats(&mut client).await;
        if s.running_sequences == 0 && s.waiting_sequences == 0 {
            assert_eq!(s.free_kv_blocks, s.total_kv_blocks, "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "cancelled request still running: {s:?}");
        gate.allow(1);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(gate.entered() < 300, "{} steps: the cancelled request ran on", gate.entered());
    gate.open();
    assert_eq!(collect(short).await.tokens.len(), 5);
    // Room again.
    let again = generate(&mut client, request("fourth", "spot", &prompt(4, 8), 3)).await;
    assert_eq!(again.tokens.len(), 3);
    wait_idle(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_with_a_clear_message() {
    let (mut client, _shutdown) = start(backend(&model(), 16, 64), 4, 512).await;
    let cases: Vec<(pb::GenerateRequest, &str)> = vec![
        (
            pb::GenerateRequest { priority_class: 0, ..request("x", "spot", "abc", 4) },
            "invalid priority_class: a value is required",
        ),
        (pb::GenerateRequest { priority_class: 9, ..request("x", "spot", "abc", 4) }, "reserved, burst, spot"),
        (request("x", "reserved", "", 4), "prompt is empty"),
        (request("x", "reserved", "abc", 600), "exceeds the context"),
        (request("x", "reserved", &"a".repeat(600), 4), "context holds 512"),
        (request("x", "reserved", &"a".repeat(1000), 0), "context holds 512"),
        (request("x", "reserved", "abc", 510), "at most 509"),
        (request("x", "reserved", "   ", 4), "no tokens"),
        (pb::GenerateRequest { input: None, ..request("x", "spot", "abc", 4) }, "input is required"),
        (pb::GenerateRequest { tenant_id: String::new(), ..request("x", "spot", "abc", 4) }, "tenant"),
        (pb::GenerateRequest { continue_from_token_ids: vec![5, 96], ..request("x", "spot", "abc", 4) }, "vocabulary"),
        (
            pb::GenerateRequest { continue_from_token_ids: vec![1; 5], ..request("x", "spot", "abc", 4) },
            "more than max_tokens",
        ),
    ];
    for (req, needle) in cases {
        let err = client.generate(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(needle), "{:?} should mention {needle:?}", err.message());
    }
    // 64 blocks of 16 tokens = 1024 > 512 context: fits. A smaller pool refuses
    // what it could never hold.
    let (mut small, _s) = start(backend(&model(), 16, 2), 4, 512).await;
    let err = small.generate(request("x", "spot", "abcdefgh", 40)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("KV cache"), "{}", err.message());
    assert_eq!(generate(&mut small, request("x", "spot", "abcdefgh", 8)).await.tokens.len(), 8);
}

/// The real SmolLM2-135M (`scripts/fetch-model`): chat over gRPC gives the
/// engine's own greedy tokens and text. `scripts/test` fetches the model
/// first; without it this test fails and says how to get it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_chat_matches_the_engine() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = reservoir_engine::default_model_path(&root);
    assert!(path.exists(), "{} not found: run scripts/fetch-model (scripts/test does)", path.display());
    let kv = 16 << 20;
    let backend = EngineBackend::load(&path, kv).unwrap();
    let (mut client, _shutdown) = start(backend, 4, 512).await;
    let loaded = reservoir_engine::load(&path).unwrap();
    let messages = vec![ChatMessage::new("user", "What is the capital of France?")];
    let prompt = reservoir_engine::chat_prompt(&loaded.tokenizer, &messages);
    let mut eng =
        Engine::new(loaded.model.clone(), EngineConfig { kv_budget_bytes: kv, ..EngineConfig::default() }).unwrap();
    let mut g = reservoir_engine::generate(&mut eng, &loaded.tokenizer, 1, &prompt, greedy(12)).unwrap();
    let ids: Vec<u32> = g.by_ref().map(|t| t.unwrap().id).collect();
    let text = g.text().to_string();
    drop(g);

    let mut req = request("real", "reserved", "", 12);
    req.input = Some(pb::generate_request::Input::Messages(pb::ChatInput {
        messages: vec![pb::ChatTurn { role: "user".into(), content: "What is the capital of France?".into() }],
    }));
    let got = generate(&mut client, req).await;
    assert_eq!(got.tokens, ids);
    assert_eq!(got.text, text);
    assert!(!got.text.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_end_the_stream_like_the_engine() {
    let m = model();
    let (mut client, _shutdown) = start(backend(&m, 16, 256), 8, 512).await;
    let text = prompt(9, 12);
    let (_, _, full) = reference(&m, &encode(&text), greedy(30));
    assert!(full.len() >= 8, "{full:?}");
    let stop = full[5..7].to_string();
    let params = SamplingParams { stop_strings: vec![stop.clone()], ..greedy(30) };
    let (ids, _, expected) = reference(&m, &encode(&text), params);
    let mut req = request("stop", "burst", &text, 30);
    req.params.as_mut().unwrap().stop = vec![stop.clone()];
    let got = generate(&mut client, req).await;
    assert_eq!(got.tokens, ids);
    assert_eq!(got.text, expected);
    assert_eq!(got.text, &full[..full.find(&stop).unwrap()]);
    assert_eq!(got.finish.finish_reason(), pb::FinishReason::Stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_running_generations() {
    let m = model();
    let (backend, gate) = gated(backend(&m, 16, 256));
    let settings = WorkerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        model_id: "tiny".into(),
        queue_capacity: 4,
        step_token_budget: 64,
        ..WorkerSettings::default()
    };
    let server = reservoir_worker::build(&settings, backend, Default::default()).await.unwrap();
    let port = server.port();
    let shutdown = Shutdown::new();
    let serving = tokio::spawn(server.run_until_stopped(shutdown.clone()));
    let mut client = WorkerServiceClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
    let running = client.generate(request("r", "reserved", &prompt(1, 10), 300)).await.unwrap();
    gate.wait_entered(1).await;
    shutdown.trigger();
    gate.open();
    let got = collect(running).await;
    assert_eq!(got.finish.finish_reason(), pb::FinishReason::Cancelled);
    assert!(got.tokens.len() < 300);
    assert_eq!(got.usage().completion_tokens as usize, got.tokens.len());
    drop(client);
    tokio::time::timeout(Duration::from_secs(20), serving).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_reports_the_prompt_it_processed() {
    let m = model();
    let (backend, gate) = gated(backend(&m, 16, 256));
    // Steps of 16 tokens: a 40-token prompt takes three prefill chunks.
    let (mut client, _shutdown) = start(backend, 16, 16).await;
    let long = prompt(1, 40);
    let stream = client.generate(request("c", "spot", &long, 8)).await.unwrap();
    gate.wait_entered(1).await; // the first chunk is about to run
    gate.allow(1);
    gate.wait_entered(2).await; // it ran; the second chunk waits at the gate
    let found = client.cancel(pb::CancelRequest { request_id: "c".into() }).await.unwrap().into_inner().found;
    assert!(found, "the request is in the worker");
    gate.open();
    let got = collect(stream).await;
    assert_eq!(got.finish.finish_reason(), pb::FinishReason::Cancelled);
    let usage = got.usage();
    // The chunk held at the gate when the cancel came ran too: 32 of the 40
    // prompt tokens were processed, none generated.
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (32, 0), "{usage:?}");
    let unknown = client.cancel(pb::CancelRequest { request_id: "c".into() }).await.unwrap().into_inner();
    assert!(!unknown.found, "a finished request is no longer in the worker");
}
