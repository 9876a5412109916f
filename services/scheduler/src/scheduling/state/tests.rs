use std::time::Instant;

use reservoir_domain::Tier;
use reservoir_sched::queues::ShedReason;
use tokio::sync::mpsc;

use super::*;
use crate::scheduling::tokenizers::PromptTokens;

const A: &str = "model-a";
const B: &str = "model-b";

fn core() -> Core {
    Core::new(QueueLimits::default(), Arc::new(Notify::new()), InternalToken::default())
}

fn contract(rate_tokens_per_s: u32, allow_burst: bool) -> ActiveContract {
    ActiveContract { id: Uuid::nil(), rate_tokens_per_s, allow_burst, tier: Tier::Standard }
}

/// A worker `id` of `model`, healthy (as after its first stats).
fn add_worker(core: &mut Core, id: &str, model: &str, metrics: &Metrics) -> usize {
    // Each worker at an address of its own: a second registration from the
    // same address would take the first one's place.
    let endpoint = WorkerEndpoint { id: id.into(), url: format!("http://{id}.workers.test:50061") };
    let Ok(Registered::Added(index)) = core.register(endpoint) else { panic!("{id} added") };
    let stats =
        pb::WorkerStats { model_id: model.into(), free_kv_blocks: 100, total_kv_blocks: 100, ..Default::default() };
    core.note_stats(index, Some(&stats), metrics);
    index
}

fn entry(model: &str, id: &str, deadline: Option<Micros>) -> Entry<Pending> {
    let (events, _) = mpsc::channel(1);
    let request = pb::CompleteRequest {
        request_id: id.into(),
        tenant_id: "t".into(),
        model: model.into(),
        input: Some(pb::complete_request::Input::Prompt(id.into())),
        ..Default::default()
    };
    let pending = Pending {
        request,
        class: PriorityClass::Reserved,
        contract: None,
        weights: reservoir_sched::Weights::DEFAULT,
        prompt_tokens: PromptTokens::Estimated(1),
        charged_milli: 0,
        events,
        received_at: Instant::now(),
        first_token_due: None,
    };
    Entry { tenant: "t".into(), cost_milli: 1000, enqueued_at: 0, deadline, item: pending }
}

fn placed(d: &Dispatched) -> Vec<(String, String)> {
    d.started.iter().map(|(p, l)| (p.request.request_id.clone(), l.worker_id().to_owned())).collect()
}

#[test]
fn only_full_buckets_are_forgotten_and_forgetting_them_changes_nothing() {
    let contract = contract(10, true);
    let mut core = core();
    // 10 tokens/s, 30 s of burst: a bucket of 300.
    let (admission, _) = core.admit(&[contract], 30_000, false, 0);
    assert_eq!(admission.class, PriorityClass::Reserved);
    core.forget_full_buckets(1_000_000);
    assert_eq!(core.buckets.len(), 1, "280 of 300 tokens after 1 s: kept");
    core.forget_full_buckets(3_000_000);
    assert!(core.buckets.is_empty(), "full again after 3 s: forgotten");
    core.settle(&contract, 0, 0, 3_000_000);
    assert_eq!(core.buckets[&contract.id].bucket, new_bucket(&contract, 3_000_000).bucket);
}

#[test]
fn the_spillover_switch_is_read_from_the_contract_each_time() {
    // 1 token/s, 30 s of burst: the first request takes the bucket into debt.
    let mut contract = contract(1, true);
    let mut core = core();
    assert_eq!(core.admit(&[contract], 40_000, false, 0).0.class, PriorityClass::Reserved);
    assert_eq!(core.admit(&[contract], 1_000, false, 0).0.class, PriorityClass::Burst);
    contract.allow_burst = false;
    assert_eq!(core.admit(&[contract], 1_000, false, 0).0.class, PriorityClass::Spot);
}

#[tokio::test]
async fn a_request_goes_only_to_a_worker_of_its_model_and_one_model_never_blocks_another() {
    let metrics = Metrics::new().expect("metrics");
    let mut core = core();
    add_worker(&mut core, "a0", A, &metrics);
    // A worker that has not said which model it serves gets nothing.
    let silent = WorkerEndpoint { id: "quiet".into(), url: "http://127.0.0.1:9".into() };
    assert_eq!(core.register(silent).expect("added"), Registered::Added(1));
    for (i, model) in [B, A, B, A].into_iter().enumerate() {
        core.enqueue(PriorityClass::Reserved, entry(model, &format!("r{i}"), None), 0).expect("queued");
    }
    // One slot per worker: A's first request runs on a0; B has no worker
    // and waits, without holding up A's queue.
    let first = core.dispatch(0, |_| 1);
    assert_eq!(placed(&first), vec![("r1".to_owned(), "a0".to_owned())]);
    // B's two wait, and A's second; per model, as the queue_depth gauge shows them.
    assert_eq!((core.queue_depth(A, PriorityClass::Reserved), core.queue_depth(B, PriorityClass::Reserved)), (1, 2));
    let depths: Vec<_> = core.queue_depths().collect();
    assert!(depths.contains(&(A, PriorityClass::Reserved, 1)) && depths.contains(&(B, PriorityClass::Reserved, 2)));
    assert!(depths.contains(&(B, PriorityClass::Spot, 0)), "{depths:?}");
    assert_eq!(core.queue_depth("model-never-asked-for", PriorityClass::Reserved), 0);
    // A worker of B arrives: B's requests go there, never to a0.
    add_worker(&mut core, "b0", B, &metrics);
    let second = core.dispatch(0, |_| 4);
    let mut got = placed(&second);
    got.sort();
    let want = [("r0", "b0"), ("r2", "b0"), ("r3", "a0")].map(|(r, w)| (r.to_owned(), w.to_owned()));
    assert_eq!(got, want.to_vec());
    assert!(core.lease_another(B, 4, Some(2)).is_none(), "no other worker of B: the lost one is avoided");
    assert_eq!(core.lease_another(A, 4, None).map(|l| l.worker_id().to_owned()), Some("a0".into()));
}

#[tokio::test]
async fn leases_hold_slots_until_dropped() {
    let metrics = Metrics::new().expect("metrics");
    let mut core = core();
    add_worker(&mut core, "a0", A, &metrics);
    let in_flight = |core: &Core| core.statuses()[0].in_flight;
    let lease = core.lease_another(A, 1, None).expect("room");
    assert_eq!(in_flight(&core), 1);
    assert!(core.lease_another(A, 1, None).is_none(), "full at one");
    drop(lease);
    assert_eq!(in_flight(&core), 0, "given back on drop");
    assert!(core.lease_another(A, 1, None).is_some());
}

#[tokio::test]
async fn a_reserved_request_past_its_deadline_leaves_the_queue_unserved() {
    let mut core = core();
    core.enqueue(PriorityClass::Reserved, entry(A, "late", Some(5)), 0).expect("queued");
    core.enqueue(PriorityClass::Reserved, entry(A, "later", Some(9)), 0).expect("queued");
    assert!(core.dispatch(4, |_| 1).expired.is_empty());
    let expired = core.dispatch(5, |_| 1).expired;
    assert_eq!(expired.len(), 1);
    let (class, pending, shed) = &expired[0];
    assert_eq!((*class, pending.request.request_id.as_str()), (PriorityClass::Reserved, "late"));
    assert_eq!(shed.reason, ShedReason::DeadlinePassed);
    assert!(shed.retry_after_s >= 1);
    assert_eq!(core.queue_depth(A, PriorityClass::Reserved), 1);
}

#[tokio::test]
async fn a_worker_restarted_under_a_new_id_takes_over_its_address() {
    let mut core = core();
    let at = |id: &str, url: &str| WorkerEndpoint { id: id.into(), url: url.into() };
    assert_eq!(core.register(at("host-1111", "http://10.0.0.5:50061")).expect("added"), Registered::Added(0));
    assert_eq!(core.register(at("host-2222", "http://10.0.0.6:50061")).expect("added"), Registered::Added(1));
    // The first restarts and names itself anew: same address, same entry.
    assert_eq!(core.register(at("host-3333", "http://10.0.0.5:50061")).expect("known"), Registered::Known);
    let ids: Vec<String> = core.statuses().into_iter().map(|w| w.worker_id).collect();
    assert_eq!(ids, ["host-3333", "host-2222"]);
    // A known id at a new address moves.
    assert_eq!(core.register(at("host-2222", "http://10.0.0.7:50061")).expect("known"), Registered::Known);
    assert_eq!(core.statuses().len(), 2);
}

#[tokio::test]
async fn registrations_beyond_the_table_are_refused_but_known_workers_still_move() {
    let mut core = core();
    let at =
        |i: usize| WorkerEndpoint { id: format!("w{i}"), url: format!("http://10.1.{}.{}:50061", i / 250, i % 250) };
    for i in 0..WORKERS_MAX {
        assert_eq!(core.register(at(i)).expect("room"), Registered::Added(i));
    }
    let refused = core.register(at(WORKERS_MAX)).expect_err("the table is full");
    assert!(matches!(refused, RegisterError::Full), "{refused}");
    assert_eq!(core.statuses().len(), WORKERS_MAX, "nothing was added");
    let moved = WorkerEndpoint { id: "w0".into(), url: "http://10.9.9.9:50061".into() };
    assert_eq!(core.register(moved).expect("a known id"), Registered::Known);
}
