//! OpenAI requests -> the scheduler's `CompleteRequest`, validated the way
//! OpenAI validates (400 with the offending parameter named).

use reservoir_domain::TenantId;
use reservoir_proto::v1 as pb;

use super::error::OpenAiError;
use super::types::{ChatCompletionRequest, CompletionRequest, Content, Sampling};

/// Most stop strings one request may give (as OpenAI).
const STOPS_MAX: usize = 4;
const MESSAGES_MAX: usize = 2048;

fn invalid(param: &'static str, message: impl Into<String>) -> OpenAiError {
    OpenAiError::invalid(Some(param), message)
}

fn params(s: &Sampling) -> Result<(pb::GenerationParams, bool), OpenAiError> {
    if s.n.is_some_and(|n| n != 1) {
        return Err(invalid("n", "only n = 1 is supported"));
    }
    let max_tokens = s.max_completion_tokens.or(s.max_tokens);
    if max_tokens == Some(0) {
        return Err(invalid("max_tokens", "max_tokens must be at least 1"));
    }
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) || !temperature.is_finite() {
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
    if stop.len() > STOPS_MAX || stop.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(invalid("stop", "stop takes at most 4 non-empty strings of at most 256 bytes"));
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
        logprobs: s.logprobs.unwrap_or(false),
    };
    Ok((params, wants_spot))
}

fn model(model: &str) -> Result<String, OpenAiError> {
    if model.is_empty() {
        return Err(invalid("model", "model is required"));
    }
    Ok(model.to_owned())
}

pub fn chat(
    tenant: &TenantId,
    request_id: &str,
    req: &ChatCompletionRequest,
) -> Result<pb::CompleteRequest, OpenAiError> {
    if req.messages.is_empty() {
        return Err(invalid("messages", "messages must not be empty"));
    }
    if req.messages.len() > MESSAGES_MAX {
        return Err(invalid("messages", format!("at most {MESSAGES_MAX} messages")));
    }
    let mut turns = Vec::with_capacity(req.messages.len());
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
        turns.push(pb::ChatTurn { role: role.into(), content });
    }
    let (params, wants_spot) = params(&req.sampling)?;
    Ok(pb::CompleteRequest {
        request_id: request_id.to_owned(),
        tenant_id: tenant.to_string(),
        model: model(&req.model)?,
        input: Some(pb::complete_request::Input::Messages(pb::ChatInput { messages: turns })),
        params: Some(params),
        wants_spot,
    })
}

pub fn completion(
    tenant: &TenantId,
    request_id: &str,
    req: &CompletionRequest,
) -> Result<pb::CompleteRequest, OpenAiError> {
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
    let (params, wants_spot) = params(&req.sampling)?;
    Ok(pb::CompleteRequest {
        request_id: request_id.to_owned(),
        tenant_id: tenant.to_string(),
        model: model(&req.model)?,
        input: Some(pb::complete_request::Input::Prompt(prompt)),
        params: Some(params),
        wants_spot,
    })
}
