//! The shape of chat traffic as the engine meets it: how much context a
//! decoding sequence holds on average, and where a prompt token sits in its
//! prompt on average. Attention makes both a generated and a prompt token
//! cost more the later they come, so calibration measures the engine at
//! these points rather than at a round number that favours it.
//!
//! Averages are over the work, not over requests: a decode step of a request
//! with 200 tokens to generate counts 200 times, and a token of a 900-token
//! prompt counts as much as one of a 30-token prompt (so the long tail,
//! which holds most prompt tokens, weighs what it costs).

use crate::WorkloadError;
use crate::trace::{TraceRequest, TraceSpec, generate_offering};

/// Where the engine's work on a traffic sits, in tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrafficShape {
    /// Mean context a generated token is computed from: the prompt plus the
    /// tokens generated before it, averaged over every generated token.
    pub decode_context: f64,
    /// Mean position of a prompt token within its prompt (from 0),
    /// averaged over every prompt token.
    pub prompt_position: f64,
}

impl TrafficShape {
    /// The length of one prompt whose tokens sit, on average, where the
    /// traffic's do (a prompt of `n` tokens has its mean at `(n - 1) / 2`).
    pub fn equivalent_prompt_tokens(&self) -> usize {
        (2.0 * self.prompt_position + 1.0).round().max(1.0) as usize
    }

    /// `decode_context`, rounded, at least 1.
    pub fn decode_context_tokens(&self) -> usize {
        self.decode_context.round().max(1.0) as usize
    }
}

/// The shape of `samples` requests drawn as `spec`'s traces draw them, each
/// prompt counted by `prompt_tokens` (the caller counts real tokens, chat
/// template included). Every request generates its whole `max_tokens`.
pub fn shape(
    spec: &TraceSpec,
    samples: usize,
    prompt_tokens: impl Fn(&TraceRequest) -> usize,
) -> Result<TrafficShape, WorkloadError> {
    // One unit of work per request: exactly `samples` of them.
    let requests = generate_offering(spec, samples.max(1) as f64, |_| 1.0)?;
    let (mut decodes, mut decode_context, mut prompt, mut prompt_position) = (0f64, 0f64, 0f64, 0f64);
    for r in &requests {
        let (p, m) = (prompt_tokens(r) as f64, f64::from(r.max_tokens));
        // Generated token g (from 0) is computed from p + g tokens.
        decodes += m;
        decode_context += m * p + m * (m - 1.0) / 2.0;
        // Prompt token i (from 0) sits at position i.
        prompt += p;
        prompt_position += p * (p - 1.0) / 2.0;
    }
    if decodes == 0.0 || prompt == 0.0 {
        return Err(WorkloadError::Invalid(format!("{spec:?} drew no work")));
    }
    Ok(TrafficShape { decode_context: decode_context / decodes, prompt_position: prompt_position / prompt })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Lengths;

    fn fixed(prompt: u32, max_tokens: u32) -> TraceSpec {
        TraceSpec {
            prompt: Lengths { median: f64::from(prompt), sigma: 0.0, min: prompt, max: prompt },
            max_tokens_min: max_tokens,
            max_tokens_max: max_tokens,
            ..TraceSpec::chat(1, "shape", 1_000_000, 1.0)
        }
    }

    #[test]
    fn one_length_gives_its_own_averages() {
        // 100 prompt tokens at positions 0..=99, mean 49.5; 10 generated
        // tokens from 100..=109 tokens of context, mean 104.5.
        let s = shape(&fixed(100, 10), 50, |r| r.prompt_words as usize).unwrap();
        assert_eq!(s, TrafficShape { decode_context: 104.5, prompt_position: 49.5 });
        assert_eq!((s.equivalent_prompt_tokens(), s.decode_context_tokens()), (100, 105));
        // The caller's count is what is averaged (a chat template's tokens, say).
        let s = shape(&fixed(100, 10), 50, |r| r.prompt_words as usize + 20).unwrap();
        assert_eq!((s.decode_context, s.prompt_position), (124.5, 59.5));
    }

    #[test]
    fn long_prompts_weigh_by_their_tokens_and_long_completions_by_theirs() {
        let chat = TraceSpec::chat(7, "shape", 1_000_000, 1.0);
        let s = shape(&chat, 5_000, |r| r.prompt_words as usize).unwrap();
        let requests = generate_offering(&chat, 5_000.0, |_| 1.0).unwrap();
        let n = requests.len() as f64;
        let mean_prompt = requests.iter().map(|r| f64::from(r.prompt_words)).sum::<f64>() / n;
        let mean_max_tokens = requests.iter().map(|r| f64::from(r.max_tokens)).sum::<f64>() / n;
        // Averaged over requests, a prompt token would sit at half the mean
        // prompt; over tokens, the long tail puts it later.
        assert!(s.prompt_position > mean_prompt / 2.0 * 1.3, "{s:?}, mean prompt {mean_prompt}");
        // A generated token comes after its prompt and, on average, after
        // more than half of a typical completion (long ones decode longer).
        assert!(s.decode_context > mean_prompt + mean_max_tokens / 2.0, "{s:?}");
        assert!(s.decode_context < mean_prompt + 256.0, "{s:?}");
    }

    #[test]
    fn no_work_is_an_error() {
        assert!(shape(&fixed(100, 10), 10, |_| 0).is_err());
    }
}
