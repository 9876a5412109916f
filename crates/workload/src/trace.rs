//! Seeded request traces: Poisson arrivals (exponential gaps), prompt
//! lengths from a log-normal truncated to `[min, max]` (most prompts short,
//! a long tail of long ones, as chat traffic has), `max_tokens` log-uniform
//! over its range, and a distinct prompt text per request, so no two
//! requests share more than the chat template's first tokens and a prefix
//! cache cannot serve one from another.
//!
//! Lengths are in words of a fixed list of common English words, each one
//! token in a GPT-2-style BPE vocabulary after a space; the caller counts
//! the real tokens with the model's tokenizer.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::WorkloadError;

/// At most this many requests in one trace (a bound on memory).
pub const TRACE_REQUESTS_MAX: usize = 1_000_000;
/// A drawn length outside the range is drawn again at most this many
/// times, then clamped (the truncated distribution, bounded work).
const REDRAWS_MAX: usize = 64;

const WORDS: &[&str] = &[
    "the", "sea", "river", "mountain", "city", "garden", "light", "stone", "winter", "summer", "market", "bridge",
    "train", "letter", "music", "window", "forest", "island", "morning", "evening", "story", "question", "answer",
    "number", "color", "water", "paper", "road", "house", "table", "friend", "teacher", "doctor", "engine", "power",
    "garage", "history", "science", "language", "problem", "system", "people", "world", "school", "family", "money",
    "night", "country", "field", "energy", "animal", "machine", "picture", "village", "kitchen", "travel", "weather",
    "planet", "ocean", "desert", "cloud", "storm", "harbor", "station",
];

/// What a trace looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    /// The same seed gives the same trace.
    pub seed: u64,
    /// Names the trace's prompts (two traces with other tags never share one).
    pub tag: String,
    /// Arrivals from 0 to this, in microseconds.
    pub duration_us: u64,
    /// Mean arrival rate (Poisson).
    pub requests_per_s: f64,
    pub prompt: Lengths,
    /// `max_tokens`, log-uniform between these, inclusive.
    pub max_tokens_min: u32,
    pub max_tokens_max: u32,
}

impl TraceSpec {
    /// Chat traffic: `Lengths::CHAT_PROMPTS`, `max_tokens` 16 to 256. What
    /// `bench isolation` sends and what calibration measures the engine on.
    pub fn chat(seed: u64, tag: &str, duration_us: u64, requests_per_s: f64) -> TraceSpec {
        TraceSpec {
            seed,
            tag: tag.into(),
            duration_us,
            requests_per_s,
            prompt: Lengths::CHAT_PROMPTS,
            max_tokens_min: 16,
            max_tokens_max: 256,
        }
    }
}

/// A log-normal length distribution truncated to `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lengths {
    pub median: f64,
    /// Standard deviation of the length's natural logarithm: 1.0 puts the
    /// 99th percentile near 10x the median.
    pub sigma: f64,
    pub min: u32,
    pub max: u32,
}

impl Lengths {
    /// Chat prompts: median 120 tokens, long tail, 20 to 1,000.
    pub const CHAT_PROMPTS: Lengths = Lengths { median: 120.0, sigma: 1.0, min: 20, max: 1000 };

    fn draw(&self, rng: &mut ChaCha8Rng) -> u32 {
        let (lo, hi) = (f64::from(self.min), f64::from(self.max));
        let mut x = self.median;
        for _ in 0..REDRAWS_MAX {
            x = self.median * (self.sigma * standard_normal(rng)).exp();
            if (lo..=hi).contains(&x) {
                break;
            }
        }
        // In range after the clamp, so the cast cannot truncate.
        x.round().clamp(lo, hi) as u32
    }
}

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// Its place in the trace, from 0.
    pub index: usize,
    /// When it is sent, microseconds from the trace's start.
    pub at_us: u64,
    /// The prompt's length drawn, in words (about that many tokens).
    pub prompt_words: u32,
    pub max_tokens: u32,
    /// Distinct from every other prompt of this and other tags' traces.
    pub prompt: String,
}

impl TraceSpec {
    /// Request `index` of the trace, sent at `at_us`: its prompt's length,
    /// its `max_tokens` and its text, drawn in that order.
    fn draw(&self, rng: &mut ChaCha8Rng, index: usize, at_us: u64) -> TraceRequest {
        let prompt_words = self.prompt.draw(rng);
        let max_tokens = log_uniform(rng, self.max_tokens_min, self.max_tokens_max);
        let prompt = prompt_text(rng, &self.tag, index, prompt_words);
        TraceRequest { index, at_us, prompt_words, max_tokens, prompt }
    }

    fn check(&self) -> Result<(), WorkloadError> {
        let rate_ok = self.requests_per_s.is_finite() && self.requests_per_s > 0.0;
        let prompt = &self.prompt;
        let lengths_ok = prompt.median.is_finite()
            && prompt.median > 0.0
            && prompt.sigma.is_finite()
            && prompt.sigma >= 0.0
            && 0 < prompt.min
            && prompt.min <= prompt.max;
        let max_tokens_ok = 0 < self.max_tokens_min && self.max_tokens_min <= self.max_tokens_max;
        if !rate_ok || !lengths_ok || !max_tokens_ok {
            return Err(WorkloadError::Invalid(format!("{self:?}")));
        }
        let expected = self.requests_per_s * self.duration_us as f64 / 1e6;
        if expected > TRACE_REQUESTS_MAX as f64 / 2.0 {
            return Err(WorkloadError::Invalid(format!("{expected} requests expected; at most {TRACE_REQUESTS_MAX}")));
        }
        Ok(())
    }
}

/// The trace `spec` describes, in order of arrival.
pub fn generate(spec: &TraceSpec) -> Result<Vec<TraceRequest>, WorkloadError> {
    spec.check()?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut out = Vec::new();
    let mut at_s = 0.0f64;
    loop {
        // Exponential gap: -ln(U) / rate, with U in (0, 1].
        at_s += -(1.0 - rng.random::<f64>()).ln() / spec.requests_per_s;
        let at_us = (at_s * 1e6).round();
        if at_us >= spec.duration_us as f64 || out.len() >= TRACE_REQUESTS_MAX {
            break;
        }
        out.push(spec.draw(&mut rng, out.len(), at_us as u64));
    }
    Ok(out)
}

/// A trace that offers `work` over the spec's duration, in the unit of
/// `cost` (the caller counts a request's real tokens): requests are drawn
/// as `generate` draws them until their costs sum to `work` (the last one
/// kept when that lands closer to it), then sent at times drawn uniformly
/// over the duration, in order. Given how many arrive, that is exactly
/// how a Poisson process places them; what differs from `generate` is that
/// the count follows from the work, so a short trace of a long-tailed load
/// offers the load asked for rather than whatever its sample happens to
/// hold (a 30 s sample of 40 requests can hold half as much again).
/// `requests_per_s` is not used.
pub fn generate_offering(
    spec: &TraceSpec,
    work: f64,
    cost: impl Fn(&TraceRequest) -> f64,
) -> Result<Vec<TraceRequest>, WorkloadError> {
    // Checked as `generate` checks it, less the unused arrival rate.
    TraceSpec { requests_per_s: 1.0, ..spec.clone() }.check()?;
    if !work.is_finite() || work < 0.0 || spec.duration_us == 0 {
        return Err(WorkloadError::Invalid(format!("{work} of work over {} us", spec.duration_us)));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut out = Vec::new();
    let mut offered = 0.0;
    while offered < work && out.len() < TRACE_REQUESTS_MAX {
        let request = spec.draw(&mut rng, out.len(), 0);
        let c = cost(&request).max(0.0);
        if offered + c - work > work - offered {
            break;
        }
        offered += c;
        out.push(request);
    }
    let mut times: Vec<u64> = (0..out.len()).map(|_| rng.random_range(0..spec.duration_us)).collect();
    times.sort_unstable();
    for (r, at_us) in out.iter_mut().zip(times) {
        r.at_us = at_us;
    }
    Ok(out)
}

/// Mean `prompt words x prompt_weight + max_tokens x completion_weight` of
/// `spec`'s requests, estimated from `samples` draws of its distributions
/// (seeded, so the same every time): what sizes an arrival rate to a load
/// in weighted tokens/s before the trace exists.
pub fn mean_cost(spec: &TraceSpec, prompt_weight: f64, completion_weight: f64, samples: usize) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5eed);
    let n = samples.max(1);
    let total: f64 = (0..n)
        .map(|_| {
            let p = f64::from(spec.prompt.draw(&mut rng));
            let m = f64::from(log_uniform(&mut rng, spec.max_tokens_min, spec.max_tokens_max));
            p * prompt_weight + m * completion_weight
        })
        .sum();
    total / n as f64
}

/// Log-uniform integer in `[lo, hi]` (as many draws between 16 and 32 as
/// between 128 and 256).
fn log_uniform(rng: &mut ChaCha8Rng, lo: u32, hi: u32) -> u32 {
    let (a, b) = (f64::from(lo).ln(), (f64::from(hi) + 1.0).ln());
    let x = (a + (b - a) * rng.random::<f64>()).exp().floor();
    (x as u32).clamp(lo, hi)
}

/// Box-Muller: one standard normal draw.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `words` words: the trace's tag and the request's index first (so no two
/// prompts share a first block), then words drawn from the list.
fn prompt_text(rng: &mut ChaCha8Rng, tag: &str, index: usize, words: u32) -> String {
    let mut text = format!("{tag} {index}:");
    for _ in 2..words {
        text.push(' ');
        text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64, requests_per_s: f64, duration_s: u64) -> TraceSpec {
        TraceSpec::chat(seed, "reserved", duration_s * 1_000_000, requests_per_s)
    }

    fn quantile(mut v: Vec<u32>, q: f64) -> u32 {
        v.sort_unstable();
        v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
    }

    #[test]
    fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
        let a = generate(&spec(7, 5.0, 60)).unwrap();
        assert_eq!(a, generate(&spec(7, 5.0, 60)).unwrap());
        assert_ne!(a, generate(&spec(8, 5.0, 60)).unwrap());
    }

    #[test]
    fn arrivals_are_poisson_at_the_rate_asked() {
        let t = generate(&spec(1, 20.0, 1000)).unwrap();
        // 20,000 expected; a Poisson count's standard deviation is ~141.
        assert!((19_500..=20_500).contains(&t.len()), "{}", t.len());
        assert!(t.windows(2).all(|w| w[0].at_us <= w[1].at_us) && t.iter().all(|r| r.at_us < 1_000_000_000));
        // Exponential gaps: the standard deviation equals the mean (50 ms).
        let gaps: Vec<f64> = t.windows(2).map(|w| (w[1].at_us - w[0].at_us) as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!((48_000.0..52_000.0).contains(&mean) && (sd / mean - 1.0).abs() < 0.05, "{mean} {sd}");
    }

    #[test]
    fn prompt_lengths_are_long_tailed_within_their_range_and_max_tokens_within_theirs() {
        let t = generate(&spec(2, 50.0, 200)).unwrap();
        let lengths: Vec<u32> = t.iter().map(|r| r.prompt_words).collect();
        assert!(lengths.iter().all(|l| (20..=1000).contains(l)));
        let (p50, p99) = (quantile(lengths.clone(), 0.5), quantile(lengths.clone(), 0.99));
        assert!((100..=140).contains(&p50) && p99 >= 5 * p50, "p50 {p50} p99 {p99}");
        // Truncated, not clamped: no pile-up at either bound.
        let at_max = lengths.iter().filter(|&&l| l == 1000).count();
        assert!(at_max < lengths.len() / 500, "{at_max} at the bound");
        let max_tokens: Vec<u32> = t.iter().map(|r| r.max_tokens).collect();
        assert!(max_tokens.iter().all(|m| (16..=256).contains(m)));
        assert!(max_tokens.contains(&16) && max_tokens.contains(&256));
        // Log-uniform: the median is near the geometric mean, 64.
        assert!((56..=72).contains(&quantile(max_tokens, 0.5)));
        for r in &t {
            assert_eq!(r.prompt.split(' ').count(), r.prompt_words as usize, "{}", r.prompt);
        }
    }

    #[test]
    fn every_prompt_is_distinct_and_starts_differently() {
        let mut t = generate(&spec(3, 50.0, 100)).unwrap();
        let mut other = spec(3, 50.0, 100);
        other.tag = "spot".into();
        t.extend(generate(&other).unwrap());
        let prompts: std::collections::HashSet<&str> = t.iter().map(|r| r.prompt.as_str()).collect();
        assert_eq!(prompts.len(), t.len());
        let heads: std::collections::HashSet<String> =
            t.iter().map(|r| r.prompt.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(heads.len(), t.len(), "the first two words already differ");
    }

    #[test]
    fn the_mean_cost_matches_the_trace() {
        let s = spec(4, 50.0, 400);
        let t = generate(&s).unwrap();
        let actual =
            t.iter().map(|r| f64::from(r.prompt_words) * 0.8 + f64::from(r.max_tokens)).sum::<f64>() / t.len() as f64;
        let estimated = mean_cost(&s, 0.8, 1.0, 20_000);
        assert!((estimated / actual - 1.0).abs() < 0.05, "{estimated} vs {actual}");
    }

    #[test]
    fn a_trace_offering_work_offers_it_at_poisson_times() {
        let s = spec(5, 1.0, 30);
        let cost = |r: &TraceRequest| f64::from(r.prompt_words) * 0.5 + f64::from(r.max_tokens);
        let t = generate_offering(&s, 6_000.0, cost).unwrap();
        let offered: f64 = t.iter().map(cost).sum();
        let largest = t.iter().map(cost).fold(0.0, f64::max);
        assert!((offered - 6_000.0).abs() <= largest / 2.0 + 1e-9, "{offered} (largest request {largest})");
        assert!(t.windows(2).all(|w| w[0].at_us <= w[1].at_us) && t.iter().all(|r| r.at_us < 30_000_000));
        assert_eq!(t.iter().map(|r| r.index).collect::<Vec<_>>(), (0..t.len()).collect::<Vec<_>>());
        assert_eq!(t, generate_offering(&s, 6_000.0, cost).unwrap());
        // Uniform times given the count: as many in each half, give or take.
        let long = generate_offering(&spec(6, 1.0, 1000), 400_000.0, cost).unwrap();
        let first_half = long.iter().filter(|r| r.at_us < 500_000_000).count() as f64;
        assert!((first_half / long.len() as f64 - 0.5).abs() < 0.05, "{first_half} of {}", long.len());
        // Exponential gaps: standard deviation near the mean.
        let gaps: Vec<f64> = long.windows(2).map(|w| (w[1].at_us - w[0].at_us) as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!((sd / mean - 1.0).abs() < 0.1, "{mean} {sd}");
        assert!(generate_offering(&s, f64::NAN, cost).is_err());
        assert!(generate_offering(&s, 0.0, cost).unwrap().is_empty());
    }

    #[test]
    fn impossible_specs_are_refused() {
        let mut bad = vec![spec(1, 0.0, 10), spec(1, f64::NAN, 10), spec(1, 1e9, 10)];
        let mut s = spec(1, 1.0, 10);
        s.prompt.min = 0;
        bad.push(s.clone());
        s.prompt.min = 2000;
        bad.push(s.clone());
        let mut s = spec(1, 1.0, 10);
        s.max_tokens_min = 300;
        bad.push(s);
        for s in bad {
            assert!(matches!(generate(&s), Err(WorkloadError::Invalid(_))), "{s:?}");
        }
    }
}
