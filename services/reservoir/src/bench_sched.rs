//! `reservoir bench sched`: how long the scheduling policy takes per decision
//! with 1,000 and 10,000 requests waiting, against the time of one decode
//! step (target: under 1% of it). Pure CPU work on the real policy code; the
//! yardstick is a decode step of the real model at batch 1 (the shortest
//! step there is), measured in the same run.

use std::time::Instant;

use reservoir_domain::PriorityClass;
use reservoir_engine::bench::Spec;
use reservoir_sched::planner::{NO_DEADLINE, Planner, PlannerConfig, Running, Waiting};
use reservoir_sched::queues::{ClassQueues, Entry, QueueLimits};

/// Running sequences in the measured step (a busy worker).
const RUNNING: usize = 64;
/// Repetitions per figure; the median is reported.
const ROUNDS: usize = 200;
/// Decode steps timed for the yardstick (their mean is used).
const DECODE_STEPS: usize = 64;

fn class(i: usize) -> PriorityClass {
    PriorityClass::ALL[i % 3]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median microseconds of one planner step with `queued` waiting sequences.
fn planner_step_us(queued: usize) -> f64 {
    // The worker's own step budget.
    let settings = reservoir_worker::WorkerSettings::default();
    let planner = Planner::new(PlannerConfig {
        step_token_budget: settings.step_token_budget,
        block_size: 16,
        decode_cost: settings.decode_token_cost,
    });
    let running: Vec<Running> = (0..RUNNING)
        .map(|i| Running {
            id: i as u64,
            class: class(i),
            started: i as u64,
            computed: 100 + i,
            pending: 1,
            due: NO_DEADLINE,
        })
        .collect();
    // Reserved ones with deadlines, as the worker queues them: sorted.
    let waiting: Vec<Waiting> = (0..queued)
        .map(|i| {
            let class = class(i);
            let due = if class == PriorityClass::Reserved { i as u64 } else { NO_DEADLINE };
            Waiting { id: (RUNNING + i) as u64, class, tokens: 50 + i % 200, due }
        })
        .collect();
    let samples = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let plan = planner.next_step(&running, &waiting, 4096);
            std::hint::black_box(plan);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(samples)
}

/// Median microseconds to pop one request from the global class queues
/// holding `queued` requests from 100 tenants (fair share picking included).
fn queue_pop_us(queued: usize) -> f64 {
    let mut queues: ClassQueues<usize> = ClassQueues::new(QueueLimits {
        burst_capacity: usize::MAX,
        spot_capacity: usize::MAX,
        ..QueueLimits::default()
    });
    for i in 0..queued {
        let entry =
            Entry { tenant: format!("t{}", i % 100), cost_milli: 1000, enqueued_at: 0, deadline: None, item: i };
        let _ = queues.push(class(i), entry, 0);
    }
    let samples = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let popped = queues.pop();
            let elapsed = t.elapsed().as_secs_f64() * 1e6;
            if let Some((c, e)) = popped {
                queues.push_front(c, e);
            }
            elapsed
        })
        .collect();
    median(samples)
}

/// Mean microseconds of one decode step of `model` at batch 1.
fn decode_step_us(model: &crate::engine_cli::ModelArg) -> anyhow::Result<f64> {
    let loaded = model.load()?;
    let report = reservoir_engine::bench::run(
        &loaded.model,
        &Spec { prefill_tokens: 16, prefill_chunk: 16, batches: &[1], decode_steps: DECODE_STEPS, decode_context: 16 },
    )?;
    let point = report.decode.first().ok_or_else(|| anyhow::anyhow!("the engine bench measured no decode step"))?;
    Ok(point.step_ms_mean * 1000.0)
}

pub fn run(model: &crate::engine_cli::ModelArg) -> anyhow::Result<()> {
    let step_us = decode_step_us(model)?;
    println!(
        "scheduling policy time per decision (median of {ROUNDS}); decode step at batch 1 measured at {step_us:.0} us"
    );
    println!("{:>8}  {:>14}  {:>12}  {:>14}", "queued", "planner us", "% of step", "queue pop us");
    let mut json = serde_json::Map::new();
    for queued in [1_000usize, 10_000] {
        let plan = planner_step_us(queued);
        let pop = queue_pop_us(queued);
        println!("{queued:>8}  {plan:>14.1}  {:>11.3}%  {pop:>14.2}", 100.0 * plan / step_us);
        json.insert(format!("planner_us_{queued}"), serde_json::json!((plan * 10.0).round() / 10.0));
        json.insert(format!("planner_step_share_{queued}"), serde_json::json!((plan / step_us * 1e5).round() / 1e5));
        json.insert(format!("queue_pop_us_{queued}"), serde_json::json!((pop * 100.0).round() / 100.0));
    }
    json.insert("decode_step_us".into(), serde_json::json!(step_us.round()));
    println!("{}", serde_json::Value::Object(json));
    Ok(())
}
