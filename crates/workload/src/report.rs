//! The figures of one phase of a run, from what the client saw of each
//! request. Work is in capacity units (weighted tokens: prompt tokens x the
//! prompt weight + generated tokens x the completion weight).
//!
//! - The window is measured in steady state: traffic starts a warm-up
//!   before it, so the platform is as loaded at its start as at its end.
//!   Requests sent during the warm-up count only for the work they got
//!   within the window; every other figure is of requests sent within it.
//! - Useful work counts each prompt token once, when its request's first
//!   token arrives (its prefill is done), less what the prefix cache served,
//!   and each generated token as it arrives, within the window: a prompt
//!   prefilled before the window whose first token comes within it counts,
//!   as one prefilled within it whose first token comes after does not, so
//!   the two edges weigh alike. A recomputation after a failover is
//!   invisible to the client, so never counted.
//! - Delivered over demanded, as the platform meters it: a request served
//!   in full demanded what it got; one refused, failed or cut demanded its
//!   prompt and its `max_tokens`, and delivered what arrived.

/// What the client saw of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub reserved: bool,
    /// Prompt tokens as the platform counts them (chat template included).
    pub prompt_tokens: u32,
    /// Of those, served by the prefix cache (not computed for this request).
    pub cached_prompt_tokens: u32,
    pub max_tokens: u32,
    /// Its TTFT target: tier base + prompt tokens / prefill rate.
    pub ttft_target_ms: f64,
    /// From sending to the first token; `None`: no token came.
    pub ttft_ms: Option<f64>,
    /// From sending to the last generated token received.
    pub last_token_ms: Option<f64>,
    /// Whether the first token arrived within the window.
    pub first_token_in_window: bool,
    /// Generated tokens received, all and within the window.
    pub completion_tokens: u32,
    pub completion_tokens_in_window: u32,
    /// Ended with a finish reason.
    pub finished: bool,
    /// Refused or failed by the platform (an error answer or event), as
    /// opposed to cut by the client at the end of the phase.
    pub shed: bool,
    /// The class the platform served it in, as it answered (a reserved
    /// tenant's request beyond its contract's rate is not reserved).
    pub served_as: Option<String>,
    /// When it was sent (to tell what was in flight before it).
    pub sent_at: Option<std::time::Instant>,
    /// Sent during the warm-up, before the window: only its work within
    /// the window counts.
    pub warm_up: bool,
}

impl Observed {
    /// Reserved requests sent before `self`, due no later (sent + TTFT
    /// target), that still had no first token when it was sent: prompts
    /// that any order meeting their targets finishes first. Answers how
    /// many, and their prompt tokens.
    pub fn reserved_prompts_ahead(&self, all: &[Observed]) -> (usize, u64) {
        let Some(sent) = self.sent_at else { return (0, 0) };
        let after = |t: std::time::Instant, ms: f64| t + std::time::Duration::from_secs_f64(ms.max(0.0) / 1e3);
        let own_due = after(sent, self.ttft_target_ms);
        let waiting_ahead = |o: &&Observed| {
            o.reserved
                && o.sent_at.is_some_and(|t| {
                    t < sent && after(t, o.ttft_target_ms) <= own_due && o.ttft_ms.is_none_or(|ms| after(t, ms) > sent)
                })
        };
        all.iter().filter(waiting_ahead).fold((0, 0), |(n, tokens), o| (n + 1, tokens + u64::from(o.prompt_tokens)))
    }

    /// Generated tokens per second after the first, as a tier's decode
    /// floor counts them; `None` below two tokens.
    pub fn decode_tokens_per_s(&self) -> Option<f64> {
        let (first, last) = (self.ttft_ms?, self.last_token_ms?);
        (self.completion_tokens >= 2 && last > first)
            .then(|| f64::from(self.completion_tokens - 1) * 1e3 / (last - first))
    }
}

/// Token weights as figures (these feed a report, never a bill).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub prompt: f64,
    pub completion: f64,
}

/// TTFT quantiles in ms (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSummary {
    pub reserved_requests: usize,
    /// Of reserved requests that got a first token; `None` when none did.
    pub reserved_ttft_ms: Option<Quantiles>,
    pub reserved_without_token: usize,
    /// Median of the reserved requests' decode speeds (tokens/s after the
    /// first), what a tier's decode floor is held against; `None` without
    /// a request of two tokens.
    pub reserved_decode_tokens_per_s_p50: Option<f64>,
    /// Share of reserved requests whose first token came within target (a
    /// request without one missed it).
    pub reserved_within_target: f64,
    pub reserved_delivered_over_demanded: f64,
    pub reserved_shed: usize,
    /// Useful reserved work per second of the window.
    pub reserved_work_per_s: f64,
    pub spot_requests: usize,
    pub spot_shed: usize,
    /// Useful spot work per second of the window.
    pub spot_goodput_per_s: f64,
    /// Spot goodput over the capacity reserved work left (capacity less
    /// reserved useful work per second).
    pub spot_share_of_left: f64,
    /// All useful work over capacity x window.
    pub utilization: f64,
    /// Share of prompt tokens the prefix cache served.
    pub cached_prompt_share: f64,
}

/// The `q` quantile of `v` by nearest rank; `None` for no values.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied()
}

fn useful_work(o: &Observed, w: Weights) -> f64 {
    let prompt = if o.first_token_in_window { o.prompt_tokens.saturating_sub(o.cached_prompt_tokens) } else { 0 };
    f64::from(prompt) * w.prompt + f64::from(o.completion_tokens_in_window) * w.completion
}

fn delivered_and_demanded(o: &Observed, w: Weights) -> (f64, f64) {
    let prompt = f64::from(o.prompt_tokens) * w.prompt;
    let delivered = if o.ttft_ms.is_some() { prompt } else { 0.0 } + f64::from(o.completion_tokens) * w.completion;
    let demanded =
        if o.finished { delivered } else { prompt + f64::from(o.max_tokens.max(o.completion_tokens)) * w.completion };
    (delivered, demanded)
}

/// The phase's figures; `capacity_per_s` in weighted tokens/s, `window_s`
/// the window's length.
pub fn summarize(observed: &[Observed], w: Weights, capacity_per_s: f64, window_s: f64) -> PhaseSummary {
    let (reserved_all, spot_all): (Vec<&Observed>, Vec<&Observed>) = observed.iter().partition(|o| o.reserved);
    let (reserved, spot): (Vec<&Observed>, Vec<&Observed>) =
        observed.iter().filter(|o| !o.warm_up).partition(|o| o.reserved);
    let ttfts: Vec<f64> = reserved.iter().filter_map(|o| o.ttft_ms).collect();
    let reserved_ttft_ms = match (quantile(&ttfts, 0.5), quantile(&ttfts, 0.95), quantile(&ttfts, 0.99)) {
        (Some(p50), Some(p95), Some(p99)) => Some(Quantiles { p50, p95, p99 }),
        _ => None,
    };
    let within = reserved.iter().filter(|o| o.ttft_ms.is_some_and(|t| t <= o.ttft_target_ms)).count();
    let decode_speeds: Vec<f64> = reserved.iter().filter_map(|o| o.decode_tokens_per_s()).collect();
    let (delivered, demanded) =
        reserved.iter().map(|o| delivered_and_demanded(o, w)).fold((0.0, 0.0), |(a, b), (d, m)| (a + d, b + m));
    let per_s = |work: f64| if window_s > 0.0 { work / window_s } else { 0.0 };
    // Folded from +0.0: an empty `sum` of floats is -0.0, which prints as "-0".
    let work = |of: &[&Observed]| per_s(of.iter().fold(0.0, |total, o| total + useful_work(o, w)));
    let (reserved_work_per_s, spot_goodput_per_s) = (work(&reserved_all), work(&spot_all));
    let left = capacity_per_s - reserved_work_per_s;
    let measured = || reserved.iter().chain(&spot);
    let prompt_tokens: u64 = measured().map(|o| u64::from(o.prompt_tokens)).sum();
    let cached: u64 = measured().map(|o| u64::from(o.cached_prompt_tokens.min(o.prompt_tokens))).sum();
    PhaseSummary {
        reserved_requests: reserved.len(),
        reserved_ttft_ms,
        reserved_without_token: reserved.len() - ttfts.len(),
        reserved_decode_tokens_per_s_p50: quantile(&decode_speeds, 0.5),
        reserved_within_target: ratio(within as f64, reserved.len() as f64),
        reserved_delivered_over_demanded: ratio(delivered, demanded),
        reserved_shed: reserved.iter().filter(|o| o.shed).count(),
        reserved_work_per_s,
        spot_requests: spot.len(),
        spot_shed: spot.iter().filter(|o| o.shed).count(),
        spot_goodput_per_s,
        spot_share_of_left: ratio(spot_goodput_per_s, left),
        utilization: ratio(reserved_work_per_s + spot_goodput_per_s, capacity_per_s),
        cached_prompt_share: ratio(cached as f64, prompt_tokens as f64),
    }
}

/// `a / b`, NaN when `b` is not positive (a figure with nothing to measure).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const W: Weights = Weights { prompt: 0.5, completion: 1.0 };

    fn served(reserved: bool, prompt: u32, completion: u32, ttft_ms: f64) -> Observed {
        Observed {
            reserved,
            prompt_tokens: prompt,
            max_tokens: completion,
            ttft_target_ms: 1000.0,
            ttft_ms: Some(ttft_ms),
            first_token_in_window: true,
            completion_tokens: completion,
            completion_tokens_in_window: completion,
            finished: true,
            ..Observed::default()
        }
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((quantile(&v, 0.5), quantile(&v, 0.99), quantile(&v, 1.0)), (Some(50.0), Some(99.0), Some(100.0)));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn useful_work_counts_prompts_once_without_cache_hits_and_only_within_the_window() {
        let mut cached = served(false, 100, 10, 5.0);
        cached.cached_prompt_tokens = 40;
        let mut late = served(false, 100, 10, 5.0);
        late.first_token_in_window = false;
        late.completion_tokens_in_window = 4;
        let reserved = served(true, 200, 20, 5.0);
        let s = summarize(&[cached, late, reserved], W, 100.0, 2.0);
        // Spot: (60 x 0.5 + 10) + (0 + 4) = 44 over 2 s; reserved: 120 over 2 s.
        assert_eq!((s.spot_goodput_per_s, s.reserved_work_per_s), (22.0, 60.0));
        assert_eq!(s.utilization, 0.82);
        assert_eq!(s.spot_share_of_left, 22.0 / 40.0);
        assert_eq!(s.cached_prompt_share, 40.0 / 400.0);
    }

    #[test]
    fn a_warm_up_request_counts_for_its_work_within_the_window_and_nothing_else() {
        // Sent before the window, first token within it, then cut.
        let mut early = served(true, 100, 30, 9000.0);
        early.warm_up = true;
        early.finished = false;
        early.completion_tokens_in_window = 20;
        let mut early_spot = served(false, 100, 10, 5.0);
        early_spot.warm_up = true;
        early_spot.shed = true;
        let within = served(true, 200, 20, 500.0);
        let s = summarize(&[early, early_spot, within], W, 100.0, 2.0);
        // Its work counts: (50 + 20) + (50 + 10) + (100 + 20) over 2 s...
        assert_eq!((s.reserved_work_per_s, s.spot_goodput_per_s), (95.0, 30.0));
        // ...but not its TTFT, target, delivery, shedding or count.
        assert_eq!((s.reserved_requests, s.spot_requests, s.spot_shed), (1, 0, 0));
        assert_eq!(s.reserved_ttft_ms, Some(Quantiles { p50: 500.0, p95: 500.0, p99: 500.0 }));
        assert_eq!((s.reserved_within_target, s.reserved_delivered_over_demanded), (1.0, 1.0));
    }

    #[test]
    fn delivered_over_demanded_counts_what_unfinished_requests_asked_for() {
        let full = served(true, 100, 50, 10.0);
        let mut cut = served(true, 100, 10, 10.0);
        cut.max_tokens = 60;
        cut.finished = false;
        let refused =
            Observed { reserved: true, prompt_tokens: 100, max_tokens: 40, shed: true, ..Observed::default() };
        let s = summarize(&[full, cut, refused], W, 100.0, 1.0);
        // Delivered 100 + 60 + 0; demanded 100 + 110 + 90.
        assert_eq!(s.reserved_delivered_over_demanded, 160.0 / 300.0);
        assert_eq!((s.reserved_shed, s.reserved_without_token, s.reserved_requests), (1, 1, 3));
    }

    #[test]
    fn a_request_without_a_first_token_misses_its_target() {
        let on_time = served(true, 10, 1, 999.0);
        let late = served(true, 10, 1, 1001.0);
        let none = Observed { reserved: true, ttft_target_ms: 1000.0, ..Observed::default() };
        let s = summarize(&[on_time, late, none, served(false, 10, 1, 5000.0)], W, 100.0, 1.0);
        assert_eq!(s.reserved_within_target, 1.0 / 3.0);
        assert_eq!(s.reserved_ttft_ms, Some(Quantiles { p50: 999.0, p95: 1001.0, p99: 1001.0 }));
    }

    #[test]
    fn nothing_to_measure_is_not_a_number_not_a_figure() {
        let s = summarize(&[], W, 100.0, 1.0);
        assert!(s.reserved_within_target.is_nan() && s.reserved_delivered_over_demanded.is_nan());
        assert_eq!(s.reserved_ttft_ms, None);
        assert_eq!(s.utilization, 0.0);
        assert!(s.spot_goodput_per_s.is_sign_positive() && s.utilization.is_sign_positive(), "{s:?}");
    }

    #[test]
    fn prompts_ahead_are_reserved_ones_sent_before_and_still_waiting() {
        let t0 = Instant::now();
        let at = |ms: u64, reserved: bool, prompt: u32, ttft_ms: Option<f64>| Observed {
            reserved,
            prompt_tokens: prompt,
            ttft_ms,
            ttft_target_ms: 1000.0,
            sent_at: Some(t0 + Duration::from_millis(ms)),
            ..Observed::default()
        };
        let all = vec![
            at(0, true, 100, Some(500.0)),   // first token at 500: still waiting at 400
            at(100, true, 200, Some(200.0)), // first token at 300: done by 400
            at(200, false, 300, None),       // spot: not counted
            at(300, true, 400, None),        // never got one: waiting
            at(400, true, 50, Some(900.0)),  // the one asked about
            at(500, true, 600, None),        // sent after it
            Observed { ttft_target_ms: 5000.0, ..at(350, true, 700, None) }, // due after it
        ];
        assert_eq!(all[4].reserved_prompts_ahead(&all), (2, 500));
        assert_eq!(all[0].reserved_prompts_ahead(&all), (0, 0));
        assert_eq!(Observed::default().reserved_prompts_ahead(&all), (0, 0), "no send time: nothing known");
    }

    #[test]
    fn decode_speed_counts_the_tokens_after_the_first() {
        let o = Observed {
            ttft_ms: Some(200.0),
            last_token_ms: Some(2200.0),
            completion_tokens: 21,
            ..Observed::default()
        };
        assert_eq!(o.decode_tokens_per_s(), Some(10.0));
        assert_eq!(Observed { completion_tokens: 1, ..o.clone() }.decode_tokens_per_s(), None);
        assert_eq!(Observed { last_token_ms: None, ..o }.decode_tokens_per_s(), None);
    }
}
