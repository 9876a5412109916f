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

    /// Picks the next token from `logits` given the tokens so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<Sampled, EngineError> {
        if logits.is_empty() {
            return Err(EngineError::InvalidArgument("empty logits".into()));
        }
        let p = &self.params;
        let mut l = logits.to_vec();
        if p.repetition_penalty != 1.0 {
            let mut seen = vec![false; l.len()];
            for &t in history {
                if let Some(s) = seen.get_mut(t as usize)
                    && !*s {
                        *s = true;
                        let v = &mut l[t as usize];
                        *v = if *v > 0.0 { *v / p.repetition_penalty } else { *v * p.repetition_penalty };
                    }
            }
        }
        let token = if p.temperature == 0.0 {
            argmax(&l)
        } else {
            let mut cand: Vec<(u32, f32)> =
                l.iter().enumerate().map(|(i, &v)| (i as u32, v / p.temperature)).collect();
            // Descending by logit; ties by id keep the order deterministic.
            cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if p.top_k > 0 {
                cand.truncate(p.top_k);
            }
            let max = cand[0].1;
            let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
            let z: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|q| *q /= z);
            if p.top_p < 1.0 {
                let mut acc = 0.0;
                let mut keep = probs.len();
                for (i, q) in probs.iter().enumerate() {
                    acc += q;
                    if acc >= p.top_p {
                        keep = i + 1;
                        break;
                    }
                }
                probs.truncate(keep);
            }
            let total: f32 = probs.iter().sum();
            let mut r = self.rng.random::<f32>() * total;
            let mut pick = cand[probs.len() - 1].0;
            for (c, q) in cand.iter().zip(&probs) {
                if r < *q {
                    pick = c.0;
                    break;
                }
                r -= q;
            }
            pick
        };
        Ok(Sampled { token, logprob: log_softmax_at(logits, token as usize) })
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

/// Finds the earliest stop string in `text`; returns the byte offset where it starts.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

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
    fn bad_params_are_errors_and_stops_are_found() {
        assert!(Sampler::new(SamplingParams { top_p: 0.0, ..Default::default() }).is_err());
        assert!(Sampler::new(SamplingParams { temperature: -1.0, ..Default::default() }).is_err());
        assert_eq!(find_stop("hello world", &["wor".into(), "lo".into()]), Some(3));
        assert_eq!(find_stop("hello", &["x".into()]), None);
    }
}
