//! Proto <-> domain, the only place proto messages are read. Validation of
//! the request's shape happens here, once; what needs the tokenizer and the
//! model happens in `request::prepare`.

use reservoir_domain::{PriorityClass, TenantId};
use reservoir_engine::{ChatMessage, SamplingParams, Tokenizer};
use reservoir_proto::enums::class_from_pb;
use reservoir_proto::v1 as pb;

use crate::error::WorkerError;
use crate::request::{Event, FinishReason, GenerateSpec, Input};
use crate::step_loop::LoopStats;

/// Largest prompt or message text accepted before tokenizing, in bytes.
pub const INPUT_BYTES_MAX: usize = 1 << 20;
pub const STOP_STRINGS_MAX: usize = 16;
pub const STOP_STRING_BYTES_MAX: usize = 256;
pub const REQUEST_ID_BYTES_MAX: usize = 200;
const ROLES: [&str; 3] = ["system", "user", "assistant"];

fn invalid(m: impl Into<String>) -> WorkerError {
    WorkerError::Invalid(m.into())
}

impl TryFrom<pb::GenerateRequest> for GenerateSpec {
    type Error = WorkerError;

    fn try_from(r: pb::GenerateRequest) -> Result<Self, WorkerError> {
        if r.request_id.is_empty() || r.request_id.len() > REQUEST_ID_BYTES_MAX {
            return Err(invalid(format!("request_id is required (at most {REQUEST_ID_BYTES_MAX} bytes)")));
        }
        let tenant: TenantId = r.tenant_id.parse()?;
        let class = class_from_pb("priority_class", r.priority_class)?;
        let input = match r.input {
            None => return Err(invalid("input is required: messages or prompt")),
            Some(pb::generate_request::Input::Prompt(p)) => {
                if p.is_empty() {
                    return Err(invalid("prompt is empty"));
                }
                if p.len() > INPUT_BYTES_MAX {
                    return Err(invalid(format!("prompt is longer than {INPUT_BYTES_MAX} bytes")));
                }
                Input::Prompt(p)
            }
            Some(pb::generate_request::Input::Messages(chat)) => {
                if chat.messages.is_empty() {
                    return Err(invalid("messages is empty"));
                }
                let total: usize = chat.messages.iter().map(|m| m.content.len()).sum();
                if total > INPUT_BYTES_MAX {
                    return Err(invalid(format!("messages are longer than {INPUT_BYTES_MAX} bytes")));
                }
                let mut messages = Vec::with_capacity(chat.messages.len());
                for (i, m) in chat.messages.iter().enumerate() {
                    if !ROLES.contains(&m.role.as_str()) {
                        return Err(invalid(format!(
                            "messages[{i}].role {:?} is not one of: {}",
                            m.role,
                            ROLES.join(", ")
                        )));
                    }
                    messages.push(ChatMessage::new(&m.role, &m.content));
                }
                Input::Chat(messages)
            }
        };
        let p = r.params.unwrap_or_default();
        if p.stop.len() > STOP_STRINGS_MAX {
            return Err(invalid(format!("at most {STOP_STRINGS_MAX} stop strings")));
        }
        if p.stop.iter().any(|s| s.is_empty() || s.len() > STOP_STRING_BYTES_MAX) {
            return Err(invalid(format!("stop strings must have 1 to {STOP_STRING_BYTES_MAX} bytes")));
        }
        let or_one = |v: f32| if v == 0.0 { 1.0 } else { v };
        let sampling = SamplingParams {
            temperature: p.temperature,
            top_k: p.top_k as usize,
            top_p: or_one(p.top_p),
            repetition_penalty: or_one(p.repetition_penalty),
            seed: p.seed,
            max_tokens: 0, // settled by `prepare`
            stop_token_ids: Vec::new(),
            stop_strings: p.stop,
        };
        sampling.validate().map_err(|e| match e {
            reservoir_engine::EngineError::InvalidArgument(m) => invalid(m),
            other => invalid(other.to_string()),
        })?;
        Ok(GenerateSpec {
            request_id: r.request_id,
            tenant,
            class,
            input,
            max_tokens: (p.max_tokens > 0).then_some(p.max_tokens as usize),
            sampling,
            logprobs: p.logprobs,
            continue_from: r.continue_from_token_ids,
            prompt_ids: r.prompt_token_ids,
        })
    }
}

impl From<FinishReason> for pb::FinishReason {
    fn from(r: FinishReason) -> Self {
        match r {
            FinishReason::Stop => pb::FinishReason::Stop,
            FinishReason::Length => pb::FinishReason::Length,
            FinishReason::Cancelled => pb::FinishReason::Cancelled,
            FinishReason::Error => pb::FinishReason::Error,
        }
    }
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<Event> for pb::GenerateEvent {
    fn from(e: Event) -> Self {
        use pb::generate_event::Event as E;
        let event = match e {
            Event::Token { id, text, logprob } => E::Token(pb::TokenEvent { token_id: id, text, logprob }),
            Event::Finish { reason, usage, text, message } => E::Finish(pb::FinishEvent {
                finish_reason: pb::FinishReason::from(reason).into(),
                usage: Some(pb::Usage {
                    prompt_tokens: u32_of(usage.prompt_tokens),
                    completion_tokens: u32_of(usage.completion_tokens),
                    cached_prompt_tokens: u32_of(usage.cached_prompt_tokens),
                }),
                text,
                message,
            }),
        };
        pb::GenerateEvent { event: Some(event) }
    }
}

/// The stats answer: the loop's figures plus what the service knows.
/// The worker's tokenizer as the scheduler rebuilds it.
pub fn tokenizer_spec(tokenizer: &Tokenizer, model_id: &str) -> pb::TokenizerSpec {
    let parts = tokenizer.parts();
    pb::TokenizerSpec {
        model_id: model_id.to_owned(),
        tokens: parts.tokens,
        merges: parts.merges,
        control_token_ids: parts.control_ids,
        bos_token_id: parts.bos_id,
        eos_token_id: parts.eos_id,
        add_bos: parts.add_bos,
        pre_tokenizer: parts.pre.gguf_name().to_owned(),
    }
}

pub fn stats(s: &LoopStats, model_id: &str, context_length: usize, queue_capacity: usize) -> pb::WorkerStats {
    let preemptions = PriorityClass::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), s.preemptions[crate::step_loop::class_index(*c)]))
        .collect();
    pb::WorkerStats {
        model_id: model_id.to_string(),
        running_sequences: u32_of(s.running),
        waiting_sequences: u32_of(s.waiting),
        free_kv_blocks: u32_of(s.free_blocks),
        total_kv_blocks: u32_of(s.total_blocks),
        tokens_per_s: s.tokens_per_s,
        generated_tokens_per_s: s.generated_tokens_per_s,
        kv_waste: s.kv_waste,
        prefix_hit_rate: s.prefix_hit_rate,
        kv_block_size: u32_of(s.block_size),
        context_length: u32_of(context_length),
        queue_capacity: u32_of(queue_capacity),
        preemptions,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request() -> pb::GenerateRequest {
        pb::GenerateRequest {
            request_id: "r1".into(),
            tenant_id: "acme".into(),
            priority_class: pb::PriorityClass::Reserved.into(),
            input: Some(pb::generate_request::Input::Prompt("hello".into())),
            params: None,
            continue_from_token_ids: vec![],
            prompt_token_ids: vec![],
        }
    }

    fn error(r: pb::GenerateRequest) -> String {
        match GenerateSpec::try_from(r) {
            Err(WorkerError::Invalid(m)) => m,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_apply_and_zero_means_unset() {
        let s = GenerateSpec::try_from(request()).unwrap();
        assert_eq!(s.class, PriorityClass::Reserved);
        assert_eq!(s.max_tokens, None);
        assert_eq!(s.sampling.top_p, 1.0);
        assert_eq!(s.sampling.repetition_penalty, 1.0);
        assert_eq!(s.sampling.temperature, 0.0);
        assert_eq!(s.input, Input::Prompt("hello".into()));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let m = error(pb::GenerateRequest { priority_class: 9, ..request() });
        assert!(m.contains("reserved, burst, spot"), "{m}");
        let unspecified = pb::PriorityClass::Unspecified.into();
        let m = error(pb::GenerateRequest { priority_class: unspecified, ..request() });
        assert!(m.contains("invalid priority_class: a value is required"), "{m}");
        assert!(error(pb::GenerateRequest { input: None, ..request() }).contains("input is required"));
        let empty = Some(pb::generate_request::Input::Prompt(String::new()));
        assert!(error(pb::GenerateRequest { input: empty, ..request() }).contains("empty"));
        let no_turns = Some(pb::generate_request::Input::Messages(pb::ChatInput { messages: vec![] }));
        assert!(error(pb::GenerateRequest { input: no_turns, ..request() }).contains("messages is empty"));
        let bad_role = Some(pb::generate_request::Input::Messages(pb::ChatInput {
            messages: vec![pb::ChatTurn { role: "robot".into(), content: "hi".into() }],
        }));
        assert!(error(pb::GenerateRequest { input: bad_role, ..request() }).contains("role"));
        assert!(error(pb::GenerateRequest { tenant_id: "a b".into(), ..request() }).contains("tenant"));
        assert!(error(pb::GenerateRequest { request_id: String::new(), ..request() }).contains("request_id"));
        let params = |p: pb::GenerationParams| pb::GenerateRequest { params: Some(p), ..request() };
        assert!(
            error(params(pb::GenerationParams { temperature: -1.0, ..Default::default() })).contains("temperature")
        );
        assert!(error(params(pb::GenerationParams { top_p: 1.5, ..Default::default() })).contains("top_p"));
        assert!(
            error(params(pb::GenerationParams { stop: vec![String::new()], ..Default::default() })).contains("stop")
        );
    }
}
