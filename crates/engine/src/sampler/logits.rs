//! What the sampler does to the model's logits before drawing (penalties
//! and biases), and the log-probabilities it reports.
//!
//! Adjustments, in order (each token's new logit depends only on its own
//! old logit and counts, so the result does not depend on the order of
//! `history` or of `logit_bias`):
//! 1. repetition penalty (HF, multiplicative) over the whole history,
//!    prompt included;
//! 2. presence and frequency penalties (OpenAI, additive) over the
//!    generated tokens only: `l[t] -= count(t) * frequency + presence` for
//!    every token generated at least once;
//! 3. `logit_bias`: `l[t] += bias`.

use super::SamplingParams;

/// The logits to draw from: `None` when no adjustment applies (the model's
/// own logits are used, and nothing is copied).
pub(super) fn adjusted(p: &SamplingParams, logits: &[f32], history: &[u32], prompt_len: usize) -> Option<Vec<f32>> {
    let penalties = p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
    if p.repetition_penalty == 1.0 && !penalties && p.logit_bias.is_empty() {
        return None;
    }
    let mut l = logits.to_vec();
    if p.repetition_penalty != 1.0 {
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
    }
    if penalties {
        let mut generated = history.get(prompt_len..).unwrap_or_default().to_vec();
        generated.sort_unstable();
        for run in generated.chunk_by(|a, b| a == b) {
            if let Some(v) = l.get_mut(run[0] as usize) {
                *v -= run.len() as f32 * p.frequency_penalty + p.presence_penalty;
            }
        }
    }
    for &(token, bias) in &p.logit_bias {
        // Ids beyond the vocabulary were refused where the vocabulary is
        // known (the worker's `prepare`); here they change nothing.
        if let Some(v) = l.get_mut(token as usize) {
            *v += bias;
        }
    }
    Some(l)
}

/// Log-softmax over a vector of logits, computed stably (the sum in f64).
#[derive(Debug, Clone, Copy)]
pub(super) struct LogSoftmax {
    max: f32,
    ln_z: f32,
}

impl LogSoftmax {
    pub(super) fn of(l: &[f32]) -> Self {
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f64 = l.iter().map(|v| ((v - max) as f64).exp()).sum();
        LogSoftmax { max, ln_z: z.ln() as f32 }
    }

    /// The log-probability of a token whose logit is `v`.
    pub(super) fn at(&self, v: f32) -> f32 {
        (v - self.max) - self.ln_z
    }
}

/// The `k` most likely tokens under `l` with their log-probabilities, most
/// likely first, ties by lower id (so the list is deterministic). One pass
/// keeping a sorted list of at most `k` (k is at most 20): no sort of the
/// vocabulary.
pub(super) fn top_logprobs(l: &[f32], k: usize, norm: LogSoftmax) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    for (i, &v) in l.iter().enumerate() {
        // A later id ties lose to an earlier one, so only a strictly larger
        // logit enters a full list.
        if best.len() == k && best.last().is_some_and(|&(_, w)| v.total_cmp(&w).is_le()) {
            continue;
        }
        let at = best.partition_point(|&(_, w)| w.total_cmp(&v).is_ge());
        best.insert(at, (i as u32, v));
        best.truncate(k);
    }
    best.iter_mut().for_each(|c| c.1 = norm.at(c.1));
    best
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(presence: f32, frequency: f32, bias: Vec<(u32, f32)>) -> SamplingParams {
        SamplingParams {
            presence_penalty: presence,
            frequency_penalty: frequency,
            logit_bias: bias,
            ..Default::default()
        }
    }

    #[test]
    fn nothing_to_adjust_copies_nothing() {
        assert_eq!(adjusted(&SamplingParams::default(), &[1.0, 2.0], &[0, 1], 0), None);
    }

    #[test]
    fn penalties_count_generated_tokens_only() {
        // Prompt [1, 1], generated [2, 2, 2, 3]: token 1 (prompt only) is
        // untouched; 2 loses 3 x 0.5 + 0.25; 3 loses 1 x 0.5 + 0.25.
        let l = adjusted(&params(0.25, 0.5, vec![]), &[0.0; 5], &[1, 1, 2, 2, 2, 3], 2).unwrap();
        assert_eq!(l, vec![0.0, 0.0, -1.75, -0.75, 0.0]);
        // Negative values encourage repetition instead.
        let l = adjusted(&params(-1.0, -2.0, vec![]), &[0.0; 3], &[0, 2, 2], 1).unwrap();
        assert_eq!(l, vec![0.0, 0.0, 5.0]);
        // The order of the generated tokens does not matter.
        let a = adjusted(&params(0.3, 0.7, vec![]), &[0.5; 4], &[3, 1, 3, 2], 0).unwrap();
        let b = adjusted(&params(0.3, 0.7, vec![]), &[0.5; 4], &[2, 3, 3, 1], 0).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bias_adds_to_its_tokens_and_ignores_ids_beyond_the_vocabulary() {
        let l = adjusted(&params(0.0, 0.0, vec![(0, -100.0), (2, 5.5), (99, 1.0)]), &[1.0, 1.0, 1.0], &[], 0).unwrap();
        assert_eq!(l, vec![-99.0, 1.0, 6.5]);
    }

    #[test]
    fn top_logprobs_are_the_k_best_normalized_best_first_ties_by_id() {
        let l = [0.0, 3.0, 1.0, 3.0, 2.0];
        let norm = LogSoftmax::of(&l);
        let top = top_logprobs(&l, 3, norm);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 4]);
        let z: f32 = l.iter().map(|v| v.exp()).sum();
        assert!((top[0].1 - (3.0 - z.ln())).abs() < 1e-5);
        assert!((top[2].1 - (2.0 - z.ln())).abs() < 1e-5);
        assert_eq!(top_logprobs(&l, 0, norm), vec![]);
        assert_eq!(top_logprobs(&l, 20, norm).len(), 5, "k beyond the vocabulary gives them all");
        // Probabilities of every token sum to one.
        let all: f32 = top_logprobs(&l, 5, norm).iter().map(|t| t.1.exp()).sum();
        assert!((all - 1.0).abs() < 1e-5);
    }
}
