//! OpenAI requests -> the scheduler's `CompleteRequest`s, validated the way
//! OpenAI validates (400 with the offending parameter named). Every bound is
//! a constant of `reservoir_domain::limits`; what needs the model (its
//! vocabulary, its context) the scheduler checks at admission.

use std::collections::BTreeMap;

use reservoir_domain::TenantId;
use reservoir_domain::limits::{
    CHOICES_COUNT_MAX, LEGACY_LOGPROBS_COUNT_MAX, LOGIT_BIAS_ABS_MAX, LOGIT_BIAS_ENTRIES_COUNT_MAX, MESSAGES_COUNT_MAX,
    PENALTY_ABS_MAX, PROMPT_BYTES_MAX, STOP_SEQUENCE_BYTES_MAX, STOP_SEQUENCES_COUNT_MAX, TOP_LOGPROBS_COUNT_MAX,
};
use reservoir_proto::v1 as pb;

use super::error::OpenAiError;
use super::types::{ChatCompletionRequest, CompletionRequest, Content, Sampling};

fn invalid(param: &str, message: impl Into<String>) -> OpenAiError {
    OpenAiError::invalid_param(param, message)
}

/// A validated request: what the scheduler gets for each choice, and how
/// to answer.
#[derive(Debug, Clone)]
pub struct Call {
    /// Choice 0's request; `choice` derives the others.
    pub request: pb::CompleteRequest,
    /// `n`: independent choices, each its own sequence and usage record.
    pub choices: u32,
    /// Whether the answer carries logprobs.
    pub logprobs: bool,
    pub stream: bool,
    pub include_usage: bool,
}

impl Call {
    /// The request of choice `index`. With several choices each has its
    /// own request id (`<id>-<index>`, its usage record's) and its own
    /// seed, derived from the request's, so choices differ when sampled and
    /// stay reproducible for a given seed; choice 0 keeps the seed as sent.
    pub fn choice(&self, index: u32) -> pb::CompleteRequest {
        let mut request = self.request.clone();
        if self.choices > 1 {
            request.request_id = format!("{}-{index}", self.request.request_id);
        }
        if let Some(p) = request.params.as_mut() {
            p.seed = p.seed.wrapping_add(u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        request
    }
}

fn range(param: &str, v: Option<f32>, abs_max: f32) -> Result<f32, OpenAiError> {
    let v = v.unwrap_or(0.0);
    // `contains` is false for NaN and infinities.
    if !(-abs_max..=abs_max).contains(&v) {
        return Err(invalid(param, format!("{param} must be between -{abs_max} and {abs_max}")));
    }
    Ok(v)
}

fn logit_bias(bias: Option<&BTreeMap<String, f32>>) -> Result<Vec<pb::TokenBias>, OpenAiError> {
    let Some(bias) = bias else { return Ok(Vec::new()) };
    if bias.len() > LOGIT_BIAS_ENTRIES_COUNT_MAX {
        return Err(invalid("logit_bias", format!("logit_bias takes at most {LOGIT_BIAS_ENTRIES_COUNT_MAX} entries"))
            .with_code("too_many_entries"));
    }
    let mut entries = Vec::with_capacity(bias.len());
    for (key, &value) in bias {
        // Canonical decimal only: "07" and "7" would otherwise both name token 7.
        let token_id = key.parse::<u32>().ok().filter(|id| id.to_string() == *key).ok_or_else(|| {
            invalid("logit_bias", format!("logit_bias keys must be token ids (whole numbers), not {key:?}"))
        })?;
        if !(-LOGIT_BIAS_ABS_MAX..=LOGIT_BIAS_ABS_MAX).contains(&value) {
            return Err(invalid("logit_bias", format!("logit_bias for token {key} must be between -100 and 100")));
        }
        entries.push(pb::TokenBias { token_id, bias: value });
    }
    Ok(entries)
}

/// `top_logprobs`: alternatives per token (0 when only the token's own
/// logprob, or none, is asked for).
fn params(s: &Sampling, logprobs: bool, top_logprobs: u32) -> Result<(pb::GenerationParams, bool), OpenAiError> {
    let max_tokens = s.max_tokens;
    if max_tokens == Some(0) {
        return Err(invalid("max_tokens", "max_tokens must be at least 1"));
    }
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(invalid("temperature", "temperature must be between 0 and 2"));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(invalid("top_p", "top_p must be above 0 and at most 1"));
    }
    let seed = match s.seed {
        Some(seed) => u64::try_from(seed).map_err(|_| invalid("seed", "seed must not be negative"))?,
        None => 0,
    };
    let stop = s.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > STOP_SEQUENCES_COUNT_MAX || stop.iter().any(|s| s.is_empty() || s.len() > STOP_SEQUENCE_BYTES_MAX) {
        return Err(invalid(
            "stop",
            format!(
                "stop takes at most {STOP_SEQUENCES_COUNT_MAX} non-empty strings of at most {STOP_SEQUENCE_BYTES_MAX} bytes"
            ),
        ));
    }
    if s.stream_options.is_some() && !s.stream {
        return Err(invalid("stream_options", "stream_options is only allowed when stream is true"));
    }
    let wants_spot = match s.service_tier.as_deref() {
        None | Some("auto") | Some("default") => false,
        Some("flex") => true,
        Some(other) => {
            return Err(invalid("service_tier", format!("service_tier {other:?} is not one of auto, default, flex")));
        }
    };
    let params = pb::GenerationParams {
        max_tokens: max_tokens.unwrap_or(0),
        temperature,
        top_p,
        top_k: 0,
        seed,
        repetition_penalty: 0.0,
        stop,
        logprobs,
        presence_penalty: range("presence_penalty", s.presence_penalty, PENALTY_ABS_MAX)?,
        frequency_penalty: range("frequency_penalty", s.frequency_penalty, PENALTY_ABS_MAX)?,
        logit_bias: logit_bias(s.logit_bias.as_ref())?,
        top_logprobs,
    };
    Ok((params, wants_spot))
}

fn choices(s: &Sampling) -> Result<u32, OpenAiError> {
    match s.n.unwrap_or(1) {
        n @ 1..=CHOICES_COUNT_MAX => Ok(n),
        _ => Err(invalid("n", format!("n must be between 1 and {CHOICES_COUNT_MAX}"))),
    }
}

fn model(model: &str) -> Result<String, OpenAiError> {
    if model.is_empty() {
        return Err(invalid("model", "model is required"));
    }
    Ok(model.to_owned())
}

fn too_long(param: &str, bytes: usize) -> OpenAiError {
    // The scheduler's words for its own check of the same bound.
    invalid(param, format!("the prompt has {bytes} bytes; at most {PROMPT_BYTES_MAX} are accepted"))
        .with_code("string_above_max_length")
}

fn call(
    tenant: &TenantId,
    request_id: &str,
    model_id: &str,
    input: pb::complete_request::Input,
    sampling: &Sampling,
    (logprobs, top_logprobs): (bool, u32),
) -> Result<Call, OpenAiError> {
    let (params, wants_spot) = params(sampling, logprobs, top_logprobs)?;
    let request = pb::CompleteRequest {
        request_id: request_id.to_owned(),
        tenant_id: tenant.to_string(),
        model: model(model_id)?,
        input: Some(input),
        params: Some(params),
        wants_spot,
    };
    Ok(Call {
        request,
        choices: choices(sampling)?,
        logprobs,
        stream: sampling.stream,
        include_usage: sampling.stream_options.as_ref().is_some_and(|o| o.include_usage),
    })
}

pub fn chat(tenant: &TenantId, request_id: &str, req: &ChatCompletionRequest) -> Result<Call, OpenAiError> {
    if req.messages.is_empty() {
        return Err(invalid("messages", "messages must not be empty"));
    }
    if req.messages.len() > MESSAGES_COUNT_MAX {
        return Err(
            invalid("messages", format!("at most {MESSAGES_COUNT_MAX} messages")).with_code("array_above_max_length")
        );
    }
    let mut turns = Vec::with_capacity(req.messages.len());
    let mut bytes = 0usize;
    for m in &req.messages {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(invalid(
                    "messages",
                    format!("role {other:?} is not supported (system, developer, user, assistant)"),
                ));
            }
        };
        let content = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(invalid(
                                "messages",
                                format!("content part {kind:?} is not supported (text only)"),
                            ));
                        }
                    }
                }
                text
            }
        };
        // Counted as the scheduler counts them: roles as sent on, and contents.
        bytes = bytes.saturating_add(role.len() + content.len());
        if bytes > PROMPT_BYTES_MAX {
            return Err(too_long("messages", bytes));
        }
        turns.push(pb::ChatTurn { role: role.into(), content });
    }
    let top_logprobs = req.top_logprobs.unwrap_or(0);
    let logprobs = req.logprobs.unwrap_or(false);
    if top_logprobs > TOP_LOGPROBS_COUNT_MAX {
        return Err(invalid("top_logprobs", format!("top_logprobs must be between 0 and {TOP_LOGPROBS_COUNT_MAX}")));
    }
    if top_logprobs > 0 && !logprobs {
        return Err(invalid("top_logprobs", "top_logprobs needs logprobs set to true"));
    }
    let input = pb::complete_request::Input::Messages(pb::ChatInput { messages: turns });
    let mut sampling = req.sampling.clone();
    sampling.max_tokens = req.max_completion_tokens.or(sampling.max_tokens);
    call(tenant, request_id, &req.model, input, &sampling, (logprobs, top_logprobs))
}

pub fn completion(tenant: &TenantId, request_id: &str, req: &CompletionRequest) -> Result<Call, OpenAiError> {
    let prompt = match &req.prompt {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_owned()
        }
        _ => return Err(invalid("prompt", "prompt must be one string")),
    };
    if prompt.is_empty() {
        return Err(invalid("prompt", "prompt must not be empty"));
    }
    if prompt.len() > PROMPT_BYTES_MAX {
        return Err(too_long("prompt", prompt.len()));
    }
    let logprobs = match req.logprobs {
        None => (false, 0),
        Some(k) if k <= LEGACY_LOGPROBS_COUNT_MAX => (true, k),
        Some(_) => {
            return Err(invalid("logprobs", format!("logprobs must be between 0 and {LEGACY_LOGPROBS_COUNT_MAX}")));
        }
    };
    call(tenant, request_id, &req.model, pb::complete_request::Input::Prompt(prompt), &req.sampling, logprobs)
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
