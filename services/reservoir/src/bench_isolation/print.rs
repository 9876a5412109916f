//! What `bench isolation` prints: the run's setup, the reserved requests
//! that missed their target, each phase's figures (a table and a JSON
//! line), the machine's pace around each phase, and which targets a run met.

use reservoir_workload::report::{self, Observed, PhaseSummary};
use reservoir_workload::targets::{self, Check};
use serde_json::{Value, json};

use super::{PhaseResult, Planned, RESERVED_TENANTS, Served, TIER, Timing};

pub fn setup(
    calibration: &reservoir_platform::calibrate::Calibration,
    served: &Served,
    rate_each: u32,
    timing: Timing,
    reserved: &[Planned],
    spot: &[Planned],
    capacity: f64,
) {
    let w = served.weights;
    let demand = |p: &[Planned]| -> f64 {
        p.iter().map(|p| f64::from(p.call.prompt_tokens) * w.prompt + f64::from(p.call.max_tokens) * w.completion).sum()
    };
    let secs = (timing.warm_up + timing.window).as_secs_f64();
    let prompts: Vec<f64> = reserved.iter().chain(spot).map(|p| f64::from(p.call.prompt_tokens)).collect();
    let q = |x: f64| report::quantile(&prompts, x).unwrap_or(f64::NAN);
    println!(
        "calibrated where chat traffic's work sits: capacity {} weighted tokens/s (decode at batch {} from {} tokens \
         of context), a prompt token weighs {} (prefill of a {}-token prompt), a generated one {} (as /v1/models \
         shows them); TTFT allowance: prefill {} tokens/s (a {}-token prompt)",
        calibration.tokens_per_s,
        reservoir_platform::calibrate::CALIBRATION_BATCH,
        calibration.at.decode_context,
        w.prompt,
        calibration.at.prompt_tokens,
        w.completion,
        served.prefill_tokens_per_s,
        reservoir_platform::calibrate::ALLOWANCE_PROMPT_TOKENS,
    );
    println!(
        "trace: {} reserved requests ({RESERVED_TENANTS} tenants at {rate_each} weighted tokens/s each, {TIER}), \
         offering {:.0}% of their rate; {} spot requests offering {:.1}x capacity; phases of {secs} s, measured \
         over the last {} s (the first {} s bring the platform to its steady state: requests sent then count only \
         for their work within the window)",
        reserved.len(),
        demand(reserved) / secs / (f64::from(rate_each) * RESERVED_TENANTS as f64) * 100.0,
        spot.len(),
        demand(spot) / secs / capacity,
        timing.window.as_secs(),
        timing.warm_up.as_secs(),
    );
    println!(
        "prompt tokens (chat template included) p50 {:.0}, p90 {:.0}, p99 {:.0}, max {:.0}; max_tokens 16 to 256 \
         (EOS banned: each request generates all of them)",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}

/// The reserved tenants' requests of a phase that missed their TTFT target,
/// so a miss can be traced to its prompt's length, to the reserved prompts
/// ahead of it (sent before, due no later, still without a first token:
/// any order that met their targets ran them first), or to the class it was
/// served in (beyond the contract's rate, a request is burst or spot). When
/// those prompts and its own need longer than its target at the measured
/// prefill rate, no order of that work could have met every target.
pub fn misses(label: &str, observed: &[Observed], prefill_tokens_per_s: u32) {
    let missed: Vec<&Observed> = observed
        .iter()
        .filter(|o| o.reserved && !o.warm_up && o.ttft_ms.is_none_or(|t| t > o.ttft_target_ms))
        .collect();
    for o in missed {
        let ttft = o.ttft_ms.map_or("no token".to_owned(), |t| format!("TTFT {t:.0} ms"));
        let class = o.served_as.as_deref().unwrap_or("unknown");
        let (ahead, ahead_tokens) = o.reserved_prompts_ahead(observed);
        let need_ms = (ahead_tokens + u64::from(o.prompt_tokens)) as f64 * 1e3 / f64::from(prefill_tokens_per_s.max(1));
        let verdict = if need_ms > o.ttft_target_ms { "more than its target" } else { "within its target" };
        println!(
            "{label}: missed: {} prompt tokens, max_tokens {}, {ttft} against a target of {:.0} ms, served as {class}; \
             {ahead} reserved prompts ahead ({ahead_tokens} tokens): with its own, {need_ms:.0} ms at the measured \
             prefill rate, {verdict}",
            o.prompt_tokens, o.max_tokens, o.ttft_target_ms
        );
    }
}

pub fn results(results: &[PhaseResult]) {
    let pct = |x: f64| if x.is_nan() { "-".to_owned() } else { format!("{:.1}%", x * 100.0) };
    let ms = |s: &PhaseSummary, f: fn(&report::Quantiles) -> f64| {
        s.reserved_ttft_ms.as_ref().map_or("-".to_owned(), |q| format!("{:.0}", f(q)))
    };
    println!(
        "\n{:<24} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>10} {:>6} {:>11} {:>10} {:>8} {:>8} {:>6} {:>12}",
        "phase",
        "reserved",
        "TTFT p50",
        "p95",
        "p99 ms",
        "in target",
        "decode",
        "delivered",
        "shed",
        "spot tok/s",
        "of left",
        "util",
        "engine",
        "busy",
        "pace"
    );
    for PhaseResult { label, summary: s, engine, pace } in results {
        let spot = |x: String| if s.spot_requests == 0 { "-".to_owned() } else { x };
        println!(
            "{label:<24} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>10} {:>6} {:>11} {:>10} {:>8} {:>8} {:>6} {:>12}",
            s.reserved_requests,
            ms(s, |q| q.p50),
            ms(s, |q| q.p95),
            ms(s, |q| q.p99),
            pct(s.reserved_within_target),
            s.reserved_decode_tokens_per_s_p50.map_or("-".to_owned(), |t| format!("{t:.1}")),
            pct(s.reserved_delivered_over_demanded),
            s.reserved_shed,
            spot(format!("{:.1}", s.spot_goodput_per_s)),
            spot(pct(s.spot_share_of_left)),
            pct(s.utilization),
            pct(engine.share_of_capacity),
            pct(engine.busy),
            pace.map_or("-".to_owned(), |(before, after)| format!("{before:.2}-{after:.2}x")),
        );
    }
    let p99 = |i: usize| results.get(i).and_then(|r| r.summary.reserved_ttft_ms.map(|q| q.p99)).unwrap_or(f64::NAN);
    println!(
        "\nreserved TTFT p99 under the flood / alone: {:.2}x; plain FCFS / alone: {:.2}x",
        p99(1) / p99(0),
        p99(2) / p99(0)
    );
    println!(
        "TTFT: client-side, sending to first token, reserved requests that got one. In target: first token within \
         the premium tier's 1 s + prompt tokens / measured prefill rate (none: a miss). Decode: median of the \
         reserved requests' tokens/s after their first (the premium floor is 6). Delivered: weighted tokens \
         received over demanded (a request not served in full demanded its prompt and max_tokens). Shed: refused \
         or failed by the platform. Spot tok/s: useful spot work, weighted tokens/s; of left: over the capacity \
         reserved work left. Util: useful work (prompt tokens once, prefix-cache hits and failover recomputation \
         not counted, plus generated tokens) over capacity, within the window. Engine: every token the engine \
         computed during the window (its own counters: work past its edges and recomputation included, \
         prefix-cache hits not), weighted, over capacity: how much of the calibrated capacity a busy engine \
         computes on this traffic. Busy: share of the window the engine spent in steps (its own clock); engine \
         over busy is how fast it ran while busy, against calibration. Pace: a short run of calibration's work just before and just after the \
         phase, with nothing else running, against the same run right after calibration (1.00x): the machine \
         the phase ran on (not measured with --quick)."
    );
    let mut json = serde_json::Map::new();
    for r in results {
        json.insert(r.label.replace([' ', ','], "_"), summary_json(r));
    }
    println!("{}", Value::Object(json));
}

fn summary_json(PhaseResult { summary: s, engine, pace, .. }: &PhaseResult) -> Value {
    let r3 = |x: f64| if x.is_nan() { Value::Null } else { json!((x * 1000.0).round() / 1000.0) };
    json!({
        "reserved_requests": s.reserved_requests,
        "reserved_ttft_ms_p50": s.reserved_ttft_ms.map(|q| q.p50.round()),
        "reserved_ttft_ms_p95": s.reserved_ttft_ms.map(|q| q.p95.round()),
        "reserved_ttft_ms_p99": s.reserved_ttft_ms.map(|q| q.p99.round()),
        "reserved_within_target": r3(s.reserved_within_target),
        "reserved_decode_tokens_per_s_p50": s.reserved_decode_tokens_per_s_p50.map(r3),
        "reserved_delivered_ratio": r3(s.reserved_delivered_over_demanded),
        "reserved_shed": s.reserved_shed,
        "reserved_without_token": s.reserved_without_token,
        "spot_requests": s.spot_requests,
        "spot_shed": s.spot_shed,
        "spot_goodput_tokens_per_s": r3(s.spot_goodput_per_s),
        "spot_share_of_left": r3(s.spot_share_of_left),
        "utilization": r3(s.utilization),
        "cached_prompt_share": r3(s.cached_prompt_share),
        "engine_work_over_capacity": r3(engine.share_of_capacity),
        "engine_busy": r3(engine.busy),
        "pace_before": pace.map(|p| r3(p.0)),
        "pace_after": pace.map(|p| r3(p.1)),
    })
}

/// One run's targets (`reservoir_workload::targets`), on a line.
pub fn targets(checks: &[Check]) {
    let each: Vec<String> =
        checks.iter().map(|c| format!("{} {} {}", c.name, c.shown, if c.held { "held" } else { "MISSED" })).collect();
    let all = targets::all_held(checks);
    println!("targets: {}; {}", each.join(", "), if all { "every target held" } else { "not every target held" });
}

/// Every run's targets, a row each, and how many runs in a row met them all.
pub fn runs(all: &[Vec<Check>]) {
    let Some(first) = all.first() else { return };
    // Each column as wide as its name, or a missed figure ("79.2% MISSED").
    let widths: Vec<usize> = first.iter().map(|c| c.name.len().max(12)).collect();
    let mut header = format!("\n{:<5}", "run");
    for (c, width) in first.iter().zip(&widths) {
        header += &format!(" {:>width$}", c.name);
    }
    println!("{header} {:>6}", "all");
    let mut held = Vec::with_capacity(all.len());
    for (i, checks) in all.iter().enumerate() {
        let mut row = format!("{:<5}", i + 1);
        for (c, width) in checks.iter().zip(&widths) {
            row += &format!(" {:>width$}", format!("{}{}", c.shown, if c.held { "" } else { " MISSED" }));
        }
        let every = targets::all_held(checks);
        held.push(every);
        println!("{row} {:>6}", if every { "held" } else { "no" });
    }
    println!(
        "every target held in {} of {} runs; at most {} runs in a row (thresholds: TTFT p99 flood/alone at most \
         {}x; in target and delivered at least {}% in both phases with our scheduler; no reserved request shed; \
         under the flood, spot of left at least {}% and util at least {}%)",
        held.iter().filter(|&&h| h).count(),
        held.len(),
        targets::longest_streak(&held),
        targets::TTFT_P99_RATIO_MAX,
        targets::WITHIN_TARGET_MIN * 100.0,
        targets::SPOT_SHARE_MIN * 100.0,
        targets::UTILIZATION_MIN * 100.0,
    );
}
