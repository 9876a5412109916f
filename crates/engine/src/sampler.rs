//! Token sampling: penalties, logit bias, temperature, top-k, top-p, seeded RNG.
//!
//! Order as in llama.cpp / HF: adjustments on raw logits (repetition,
//! presence and frequency penalties, logit bias: `logits`) -> (greedy if
//! temperature == 0) -> temperature -> top-k -> top-p -> draw. Greedy takes
//! no random number; a sampled token takes exactly one, so a seed fixes the
//! whole sequence. The reported logprobs (the chosen token's and the top
//! alternatives') are log-softmax under the model's raw logits (what
//! OpenAI-style `logprobs` report), independent of sampling knobs.

mod logits;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reservoir_domain::limits::{
    LOGIT_BIAS_ABS_MAX, LOGIT_BIAS_ENTRIES_COUNT_MAX, PENALTY_ABS_MAX, TOP_LOGPROBS_COUNT_MAX,
};

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
    /// OpenAI's, in [-2, 2]; 0 disables. Subtracted once from the logit of
    /// every token generated so far (the prompt does not count).
    pub presence_penalty: f32,
    /// OpenAI's, in [-2, 2]; 0 disables. Subtracted from a token's logit
    /// once for each time it was generated so far.
    pub frequency_penalty: f32,
    /// OpenAI's `logit_bias`: (token id, bias in [-100, 100]) added to the
    /// token's logit before sampling (greedy included); ids distinct.
    pub logit_bias: Vec<(u32, f32)>,
    /// Alternatives `sample` reports beside the chosen token (0 to 20).
    pub top_logprobs: usize,
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
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            top_logprobs: 0,
            seed: 0,
            max_tokens: 256,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::InvalidArgument(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be finite and >= 0".into());
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]".into());
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty must be > 0".into());
        }
        for (name, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            // `contains` is false for NaN.
            if !(-PENALTY_ABS_MAX..=PENALTY_ABS_MAX).contains(&v) {
                return bad(format!("{name} must be between -{PENALTY_ABS_MAX} and {PENALTY_ABS_MAX}"));
            }
        }
        if self.logit_bias.len() > LOGIT_BIAS_ENTRIES_COUNT_MAX {
            return bad(format!("logit_bias has more than {LOGIT_BIAS_ENTRIES_COUNT_MAX} entries"));
        }
        if let Some((token, _)) =
            self.logit_bias.iter().find(|(_, b)| !(-LOGIT_BIAS_ABS_MAX..=LOGIT_BIAS_ABS_MAX).contains(b))
        {
            return bad(format!("logit_bias for token {token} must be between -100 and 100"));
        }
        let mut ids: Vec<u32> = self.logit_bias.iter().map(|b| b.0).collect();
        ids.sort_unstable();
        if let Some(twice) = ids.windows(2).find(|w| w[0] == w[1]) {
            return bad(format!("logit_bias names token {} twice", twice[0]));
        }
        if self.top_logprobs > TOP_LOGPROBS_COUNT_MAX as usize {
            return bad(format!("top_logprobs must be at most {TOP_LOGPROBS_COUNT_MAX}"));
        }
        Ok(())
    }

    /// Checks what needs the model: every `logit_bias` token is in its
    /// vocabulary of `vocab_size` tokens.
    pub fn validate_for_vocab(&self, vocab_size: usize) -> Result<(), EngineError> {
        match self.logit_bias.iter().find(|(t, _)| *t as usize >= vocab_size) {
            Some((t, _)) => Err(EngineError::InvalidArgument(format!(
                "logit_bias names token {t}, outside the vocabulary of {vocab_size}"
            ))),
            None => Ok(()),
        }
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprob: f32,
    /// The `top_logprobs` most likely tokens with their logprobs, most
    /// likely first (ties by id); empty when none were asked for.
    pub top_logprobs: Vec<(u32, f32)>,
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

    /// Picks the next token from `logits` given the tokens so far
    /// (`history`: the prompt's `prompt_len` tokens, then the generated
    /// ones), with its logprob and the top alternatives asked for.
    pub fn sample(&mut self, logits: &[f32], history: &[u32], prompt_len: usize) -> Result<Sampled, EngineError> {
        let token = self.sample_token(logits, history, prompt_len)?;
        let norm = logits::LogSoftmax::of(logits);
        let top_logprobs = logits::top_logprobs(logits, self.params.top_logprobs, norm);
        Ok(Sampled { token, logprob: norm.at(logits[token as usize]), top_logprobs })
    }

    /// Picks the next token without its logprob (a pass over the vocabulary
    /// saved when nobody asked for it).
    pub fn sample_token(&mut self, logits: &[f32], history: &[u32], prompt_len: usize) -> Result<u32, EngineError> {
        if logits.is_empty() {
            return Err(EngineError::InvalidArgument("empty logits".into()));
        }
        let p = &self.params;
        let adjusted = logits::adjusted(p, logits, history, prompt_len);
        let l = adjusted.as_deref().unwrap_or(logits);
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

    /// Moves the random stream past `tokens` sampled tokens without
    /// sampling them: a generation resumed after `tokens` already generated
    /// elsewhere then draws what the undisturbed one would have. Greedy
    /// takes no random numbers, so skips none.
    pub fn skip_draws(&mut self, tokens: usize) {
        if self.params.temperature > 0.0 {
            for _ in 0..tokens {
                let _ = self.rng.random::<f32>();
            }
        }
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
    logits::LogSoftmax::of(l).at(l[i])
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
        let out = s.sample(&[0.0, 2.0, 1.0], &[], 0).unwrap();
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
            (0..30).map(|_| s.sample(&logits, &[], 0).unwrap().token).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        let distinct: std::collections::HashSet<_> = run().into_iter().collect();
        assert!(distinct.len() > 1, "temperature sampling should vary across draws");
    }

    #[test]
    fn top_k_one_is_greedy_and_penalty_applies() {
        let params = SamplingParams { temperature: 1.0, top_k: 1, ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        assert_eq!(s.sample(&[1.0, 3.0, 2.0], &[], 0).unwrap().token, 1);
        let params = SamplingParams { repetition_penalty: 2.0, ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        assert_eq!(s.sample(&[1.0, 3.0, 2.0], &[1], 1).unwrap().token, 2);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let params = SamplingParams { temperature: 1.0, top_p: 0.5, seed: 1, ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.0, 5.0, 0.0, 0.0], &[], 0).unwrap().token, 1);
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
    fn logit_bias_steers_greedy_and_sampled_draws() {
        // -100 bans the argmax; greedy then takes the next best.
        let banned = SamplingParams { logit_bias: vec![(1, -100.0)], ..Default::default() };
        let mut s = Sampler::new(banned).unwrap();
        assert_eq!(s.sample(&[1.0, 3.0, 2.0], &[], 0).unwrap().token, 2);
        // +100 forces a token whatever the temperature and seed.
        for seed in 0..20 {
            let forced = SamplingParams { temperature: 1.5, seed, logit_bias: vec![(0, 100.0)], ..Default::default() };
            let mut s = Sampler::new(forced).unwrap();
            assert_eq!(s.sample_token(&[1.0, 3.0, 2.0], &[], 0).unwrap(), 0);
        }
    }

    #[test]
    fn presence_and_frequency_penalties_move_greedy_off_repeated_tokens() {
        // Token 1 leads by 1.0; generated twice, a frequency penalty of 0.6
        // takes 1.2 off it and token 2 wins. Seen only in the prompt, it keeps
        // its lead.
        let logits = [0.0, 3.0, 2.0];
        let p = SamplingParams { frequency_penalty: 0.6, ..Default::default() };
        assert_eq!(Sampler::new(p.clone()).unwrap().sample_token(&logits, &[1, 1], 0).unwrap(), 2);
        assert_eq!(Sampler::new(p).unwrap().sample_token(&logits, &[1, 1], 2).unwrap(), 1);
        // Presence counts once: 1.1 off token 1 whatever its count.
        let p = SamplingParams { presence_penalty: 1.1, ..Default::default() };
        assert_eq!(Sampler::new(p.clone()).unwrap().sample_token(&logits, &[7, 1], 1).unwrap(), 2);
        let p = SamplingParams { presence_penalty: 0.9, ..Default::default() };
        assert_eq!(Sampler::new(p).unwrap().sample_token(&logits, &[1, 1, 1, 1], 0).unwrap(), 1);
    }

    #[test]
    fn adjusted_sampling_is_deterministic_per_seed_and_resumes_after_skipped_draws() {
        let logits: Vec<f32> = (0..64).map(|i| (i as f32 * 0.71).cos()).collect();
        let params = SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            presence_penalty: 0.4,
            frequency_penalty: 0.3,
            logit_bias: vec![(5, 3.0), (9, -100.0)],
            top_logprobs: 4,
            seed: 42,
            ..Default::default()
        };
        let run = |skip: usize| {
            let mut s = Sampler::new(params.clone()).unwrap();
            s.skip_draws(skip);
            let mut history = vec![1, 2, 3];
            let mut out = Vec::new();
            for _ in skip..40 {
                let x = s.sample(&logits, &history, 3).unwrap();
                history.push(x.token);
                out.push(x);
            }
            out
        };
        let whole = run(0);
        assert_eq!(whole, run(0), "the same seed gives the same tokens and logprobs");
        assert!(whole.iter().all(|x| x.token != 9), "a banned token is never drawn");
        assert!(whole.iter().all(|x| x.top_logprobs.len() == 4));
        // Alternatives are the model's own distribution: the same every step.
        assert!(whole.iter().all(|x| x.top_logprobs == whole[0].top_logprobs));
        // With the history rebuilt, skipping the draws of the first 10 tokens
        // continues exactly where the undisturbed run was (failover).
        let mut s = Sampler::new(params.clone()).unwrap();
        s.skip_draws(10);
        let mut history: Vec<u32> = [1, 2, 3].into_iter().chain(whole[..10].iter().map(|x| x.token)).collect();
        for want in &whole[10..] {
            let x = s.sample(&logits, &history, 3).unwrap();
            assert_eq!(&x, want);
            history.push(x.token);
        }
    }

    #[test]
    fn out_of_range_knobs_are_refused() {
        let refused = |p: SamplingParams| Sampler::new(p).is_err();
        assert!(refused(SamplingParams { presence_penalty: 2.5, ..Default::default() }));
        assert!(refused(SamplingParams { frequency_penalty: f32::NAN, ..Default::default() }));
        assert!(refused(SamplingParams { logit_bias: vec![(1, 100.5)], ..Default::default() }));
        assert!(refused(SamplingParams { logit_bias: vec![(1, 1.0), (1, 2.0)], ..Default::default() }));
        assert!(refused(SamplingParams { logit_bias: (0..301).map(|t| (t, 0.0)).collect(), ..Default::default() }));
        assert!(refused(SamplingParams { top_logprobs: 21, ..Default::default() }));
        assert!(!refused(SamplingParams {
            presence_penalty: -2.0,
            frequency_penalty: 2.0,
            logit_bias: vec![(0, -100.0), (1, 100.0)],
            top_logprobs: 20,
            ..Default::default()
        }));
        let p = SamplingParams { logit_bias: vec![(3, 1.0)], ..Default::default() };
        assert!(p.validate_for_vocab(4).is_ok());
        assert!(p.validate_for_vocab(3).is_err());
    }

    #[test]
    fn bad_params_are_errors_and_stops_are_found() {
        assert!(Sampler::new(SamplingParams { top_p: 0.0, ..Default::default() }).is_err());
        assert!(Sampler::new(SamplingParams { temperature: -1.0, ..Default::default() }).is_err());
        assert_eq!(find_stop("hello world", &["wor".into(), "lo".into()]), Some(3));
        assert_eq!(find_stop("hello", &["x".into()]), None);
    }
}
