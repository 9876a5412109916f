//! Token sampling: repetition penalty, temperature, top-k, top-p, seeded RNG.
//!
//! Order as in llama.cpp / HF: penalty on raw logits -> (greedy if
//! temperature == 0) -> temperature -> top-k -> top-p -> draw. The reported
//! logprob is the chosen token's log-softmax under the model's raw logits
//! (what OpenAI-style `logprobs` report), independent of sampling knobs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::EngineError;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    /// 1.0 disables top-p.
    pub top_p: f32,
    /// 1.0 disables; > 1 discourages tokens already in the history.
    pub repetition_penalty: f32,
    pub seed: u64,
    pub max_tokens: usize,
    pub stop_token_ids: Vec<u32>,
    pub stop_strings: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            max_tokens: 256,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::InvalidArgument(m.to_string()));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be finite and >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty must be > 0");
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprob: f32,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self, EngineError> {
        params.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Ok(Sampler { params, rng })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` given the tokens so far, with its
    /// logprob.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<Sampled, EngineError> {
        let token = self.sample_token(logits, history)?;
        Ok(Sampled { token, logprob: log_softmax_at(logits, token as usize) })
    }

    /// Picks the next token without its logprob (a pass over the vocabulary
    /// saved when nobody asked for it).
    pub fn sample_token(&mut self, logits: &[f32], history: &[u32]) -> Result<u32, EngineError> {
        if logits.is_empty() {
            return Err(EngineError::InvalidArgument("empty logits".into()));
        }
        let p = &self.params;
        let penalized;
        let l = if p.repetition_penalty != 1.0 {
            let mut l = logits.to_vec();
            let mut seen = vec![false; l.len()];
            for &t in history {
                if let Some(s) = seen.get_mut(t as usize)
                    && !*s
                {
                    *s = true;
                    let v = &mut l[t as usize];
                    *v = if *v > 0.0 { *v / p.repetition_penalty } else { *v * p.repetition_penalty };
                }
            }
            penalized = l;
            penalized.as_slice()
        } else {
            logits
        };
        if p.temperature == 0.0 {
            return Ok(argmax(l));
        }
        let cand = nucleus(l, p.temperature, p.top_k, p.top_p);
        let total: f32 = cand.iter().map(|c| c.1).sum();
        let mut r = self.rng.random::<f32>() * total;
        let mut pick = cand[cand.len() - 1].0;
        for &(id, q) in &cand {
            if r < q {
                pick = id;
                break;
            }
            r -= q;
        }
        Ok(pick)
    }
}

/// The candidates to draw from, as (token, unnormalized probability) with
/// probabilities `exp((logit - max) / temperature)`: the `top_k` most likely
/// (all when 0), then the smallest most-likely prefix whose share reaches
/// `top_p`. Candidates are ordered by logit, ties by id, so draws are
/// deterministic. Without truncation nothing is sorted (vocabulary order); a
/// full sort of 50k logits per token would cost more than a decode step's
/// share of the forward pass. With truncation only the head is sorted,
/// grown until it holds the nucleus.
fn nucleus(l: &[f32], temperature: f32, top_k: usize, top_p: f32) -> Vec<(u32, f32)> {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weight = |v: f32| ((v - max) / temperature).exp();
    let top_k = if top_k == 0 { l.len() } else { top_k.min(l.len()) };
    if top_k == l.len() && top_p >= 1.0 {
        return l.iter().enumerate().map(|(i, &v)| (i as u32, weight(v))).collect();
    }
    let by_rank = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut all: Vec<(u32, f32)> = l.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
    // The `n` best, sorted, as weights.
    let mut head = |n: usize| {
        if n < all.len() {
            all.select_nth_unstable_by(n - 1, by_rank);
        }
        let mut cand = all[..n].to_vec();
        cand.sort_by(by_rank);
        cand.iter_mut().for_each(|c| c.1 = weight(c.1));
        cand
    };
    // Cuts `cand` to its shortest prefix holding `top_p` of `total`; false
    // when the whole of it holds less.
    let cut = |cand: &mut Vec<(u32, f32)>, total: f32| {
        let mut acc = 0.0;
        match cand.iter().position(|c| {
            acc += c.1;
            acc >= top_p * total
        }) {
            Some(keep) => {
                cand.truncate(keep + 1);
                true
            }
            None => false,
        }
    };
    if top_k < l.len() {
        let mut cand = head(top_k);
        if top_p < 1.0 {
            let total = cand.iter().map(|c| c.1).sum();
            cut(&mut cand, total);
        }
        return cand;
    }
    let total: f32 = l.iter().map(|&v| weight(v)).sum();
    let mut n = 64.min(l.len());
    loop {
        let mut cand = head(n);
        if cut(&mut cand, total) || n == l.len() {
            return cand;
        }
        n = (n * 4).min(l.len());
    }
}

pub fn argmax(l: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, v) in l.iter().enumerate() {
        if *v > l[best] {
            best = i;
        }
    }
    best as u32
}

/// log(softmax(l)[i]) computed stably.
pub fn log_softmax_at(l: &[f32], i: usize) -> f32 {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f64 = l.iter().map(|v| ((v - max) as f64).exp()).sum();
    (l[i] - max) - z.ln() as f32
}

/// Stop strings are text, so their search lives with the tokenizer's
/// `TextStream`; re-exported where it always was.
pub use reservoir_tokenizer::find_stop;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax_and_reports_logprob() {
        let mut s = Sampler::new(SamplingParams::default()).unwrap();
        let out = s.sample(&[0.0, 2.0, 1.0], &[]).unwrap();
        assert_eq!(out.token, 1);
        let z = (0f32.exp() + 2f32.exp() + 1f32.exp()).ln();
        assert!((out.logprob - (2.0 - z)).abs() < 1e-5);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = SamplingParams { temperature: 1.0, top_k: 20, top_p: 0.9, seed: 9, ..Default::default() };
        let run = || {
            let mut s = Sampler::new(params.clone()).unwrap();
            (0..30).map(|_| s.sample(&logits, &[]).unwrap().token).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        let distinct: std::collections::HashSet<_> = run().into_iter().collect();
        assert!(distinct.len() > 1, "temperature sampling should vary across draws");
    }

    #[test]
    fn top_k_one_is_greedy_and_penalty_applies() {
        let params = SamplingParams { temperature: 1.0, top_k: 1, ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        assert_eq!(s.sample(&[1.0, 3.0, 2.0], &[]).unwrap().token, 1);
        let params = SamplingParams { repetition_penalty: 2.0, ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        assert_eq!(s.sample(&[1.0, 3.0, 2.0], &[1]).unwrap().token, 2);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let params = SamplingParams { temperature: 1.0, top_p: 0.5, seed: 1, ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.0, 5.0, 0.0, 0.0], &[]).unwrap().token, 1);
        }
    }

    #[test]
    fn truncation_keeps_the_most_likely_in_order_without_sorting_everything() {
        let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 5000) as f32 / 500.0).collect();
        let order = |c: &[(u32, f32)]| c.iter().map(|x| x.0).collect::<Vec<_>>();
        let mut sorted: Vec<u32> = (0..5000).collect();
        sorted.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        // top-k: exactly the k best, best first.
        assert_eq!(order(&nucleus(&logits, 1.0, 10, 1.0)), sorted[..10]);
        // top-p with a flat tail needs more than the first head of 64: the
        // prefix found is the shortest reaching p of the whole mass.
        let c = nucleus(&logits, 1.0, 0, 0.9);
        let w: Vec<f32> = sorted.iter().map(|&i| (logits[i as usize] - 9.998).exp()).collect();
        let total: f32 = w.iter().sum();
        let mut acc = 0.0;
        let want = w.iter().position(|x| {
            acc += x;
            acc >= 0.9 * total
        });
        assert_eq!(Some(c.len() - 1), want);
        assert!(c.len() > 64);
        assert_eq!(order(&c), sorted[..c.len()]);
        // No truncation: every token, in vocabulary order.
        assert_eq!(nucleus(&logits, 1.0, 0, 1.0).len(), 5000);
    }

    #[test]
    fn bad_params_are_errors_and_stops_are_found() {
        assert!(Sampler::new(SamplingParams { top_p: 0.0, ..Default::default() }).is_err());
        assert!(Sampler::new(SamplingParams { temperature: -1.0, ..Default::default() }).is_err());
        assert_eq!(find_stop("hello world", &["wor".into(), "lo".into()]), Some(3));
        assert_eq!(find_stop("hello", &["x".into()]), None);
    }
}
