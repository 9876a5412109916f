//! Proto <-> domain, the only place proto messages are read. Validation of
//! the request's shape happens here, once; what needs the tokenizer and the
//! model happens in `request::prepare`.

use std::time::{Duration, Instant};

use reservoir_domain::limits::{STOP_SEQUENCE_BYTES_MAX, STOP_SEQUENCES_COUNT_MAX};
use reservoir_domain::{PriorityClass, TenantId};
// The chat template's roles: any other is refused here, before tokenizing.
use reservoir_engine::tokenizer::ROLES;
use reservoir_engine::{CacheSalt, ChatMessage, SamplingParams, Tokenizer};
use reservoir_proto::enums::class_from_pb;
use reservoir_proto::v1 as pb;

use crate::error::WorkerError;
use crate::request::{Event, FinishReason, GenerateSpec, Input, TokenLogprobs};
use crate::step_loop::LoopStats;

/// Largest prompt, or roles and contents of all messages together, accepted
/// before tokenizing, in bytes: the scheduler's bound, so that a caller that
/// reaches a worker directly cannot ask it for more tokenizing work.
pub const INPUT_BYTES_MAX: usize = reservoir_engine::tokenizer::PROMPT_BYTES_MAX;
pub const CACHE_SALT_BYTES_MAX: usize = 128;
/// A first token due later than this is due then: no target is this long.
const FIRST_TOKEN_DUE_MS_MAX: u64 = 86_400_000;

fn invalid(m: impl Into<String>) -> WorkerError {
    WorkerError::Invalid(m.into())
}

impl TryFrom<pb::GenerateRequest> for GenerateSpec {
    type Error = WorkerError;

    fn try_from(r: pb::GenerateRequest) -> Result<Self, WorkerError> {
        reservoir_domain::check_request_id(&r.request_id)?;
        let tenant: TenantId = r.tenant_id.parse()?;
        if r.cache_salt.len() > CACHE_SALT_BYTES_MAX {
            return Err(invalid(format!("cache_salt has more than {CACHE_SALT_BYTES_MAX} bytes")));
        }
        // The prefixes keep a tenant's own salt apart from every shared one.
        let cache_salt = if r.cache_salt.is_empty() {
            CacheSalt::new(&format!("tenant:{tenant}"))
        } else {
            CacheSalt::new(&format!("shared:{}", r.cache_salt))
        };
        let class = class_from_pb("priority_class", r.priority_class)?;
        let input = match r.input {
            None => return Err(invalid("input is required: messages or prompt")),
            Some(pb::generate_request::Input::Prompt(p)) => {
                if p.is_empty() {
                    return Err(invalid("prompt is empty"));
                }
                if p.len() > INPUT_BYTES_MAX {
                    return Err(invalid(format!(
                        "the prompt has {} bytes; at most {INPUT_BYTES_MAX} are accepted",
                        p.len()
                    )));
                }
                Input::Prompt(p)
            }
            Some(pb::generate_request::Input::Messages(chat)) => {
                if chat.messages.is_empty() {
                    return Err(invalid("messages is empty"));
                }
                let total: usize = chat.messages.iter().map(|m| m.role.len() + m.content.len()).sum();
                if total > INPUT_BYTES_MAX {
                    return Err(invalid(format!(
                        "the messages have {total} bytes; at most {INPUT_BYTES_MAX} are accepted"
                    )));
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
        if p.stop.len() > STOP_SEQUENCES_COUNT_MAX {
            return Err(invalid(format!("at most {STOP_SEQUENCES_COUNT_MAX} stop strings")));
        }
        if p.stop.iter().any(|s| s.is_empty() || s.len() > STOP_SEQUENCE_BYTES_MAX) {
            return Err(invalid(format!("stop strings must have 1 to {STOP_SEQUENCE_BYTES_MAX} bytes")));
        }
        if p.top_logprobs > 0 && !p.logprobs {
            return Err(invalid("top_logprobs needs logprobs"));
        }
        let or_one = |v: f32| if v == 0.0 { 1.0 } else { v };
        let sampling = SamplingParams {
            temperature: p.temperature,
            top_k: p.top_k as usize,
            top_p: or_one(p.top_p),
            repetition_penalty: or_one(p.repetition_penalty),
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            logit_bias: p.logit_bias.iter().map(|b| (b.token_id, b.bias)).collect(),
            top_logprobs: p.top_logprobs as usize,
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
            cache_salt,
            class,
            input,
            max_tokens: (p.max_tokens > 0).then_some(p.max_tokens as usize),
            sampling,
            logprobs: p.logprobs,
            continue_from: r.continue_from_token_ids,
            prompt_ids: r.prompt_token_ids,
            // From now: the scheduler's clock is not this machine's. Capped
            // at a day, past any target, so the instant cannot overflow.
            first_token_due: r
                .first_token_due_in_ms
                .map(|ms| Instant::now() + Duration::from_millis(ms.min(FIRST_TOKEN_DUE_MS_MAX))),
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
            Event::Token { id, text, logprobs } => E::Token(token_event(id, text, logprobs)),
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

fn token_event(id: u32, text: String, logprobs: Option<TokenLogprobs>) -> pb::TokenEvent {
    let Some(lp) = logprobs else { return pb::TokenEvent { token_id: id, text, ..Default::default() } };
    pb::TokenEvent {
        token_id: id,
        text,
        logprob: Some(lp.logprob),
        token_bytes: lp.bytes,
        top_logprobs: lp
            .top
            .into_iter()
            .map(|(token_id, token_bytes, logprob)| pb::TopLogprob { token_id, token_bytes, logprob })
            .collect(),
    }
}

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
        prefilled_tokens: s.prefilled_tokens,
        decoded_tokens: s.decoded_tokens,
        step_seconds: s.step_seconds,
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
            cache_salt: String::new(),
            first_token_due_in_ms: None,
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
        assert!(error(pb::GenerateRequest { request_id: String::new(), ..request() }).contains("request id"));
        let params = |p: pb::GenerationParams| pb::GenerateRequest { params: Some(p), ..request() };
        assert!(
            error(params(pb::GenerationParams { temperature: -1.0, ..Default::default() })).contains("temperature")
        );
        assert!(error(params(pb::GenerationParams { top_p: 1.5, ..Default::default() })).contains("top_p"));
        assert!(
            error(params(pb::GenerationParams { stop: vec![String::new()], ..Default::default() })).contains("stop")
        );
        let five_stops = pb::GenerationParams { stop: vec!["x".into(); 5], ..Default::default() };
        assert!(error(params(five_stops)).contains("stop"));
        let penalty = pb::GenerationParams { presence_penalty: 2.5, ..Default::default() };
        assert!(error(params(penalty)).contains("presence_penalty"));
        let bias = |b: f32| pb::TokenBias { token_id: 3, bias: b };
        let biased = pb::GenerationParams { logit_bias: vec![bias(1.0), bias(2.0)], ..Default::default() };
        assert!(error(params(biased)).contains("twice"));
        let top = pb::GenerationParams { top_logprobs: 3, ..Default::default() };
        assert!(error(params(top)).contains("top_logprobs needs logprobs"));
        let top = pb::GenerationParams { logprobs: true, top_logprobs: 21, ..Default::default() };
        assert!(error(params(top)).contains("top_logprobs"));
        assert!(error(pb::GenerateRequest { request_id: "a\0b".into(), ..request() }).contains("request id"));
    }

    #[test]
    fn the_cache_salt_is_the_tenants_own_unless_one_is_named() {
        let salt = |tenant: &str, cache_salt: &str| {
            let r = pb::GenerateRequest { tenant_id: tenant.into(), cache_salt: cache_salt.into(), ..request() };
            GenerateSpec::try_from(r).unwrap().cache_salt
        };
        assert_eq!(salt("acme", ""), salt("acme", ""));
        assert_ne!(salt("acme", ""), salt("globex", ""), "tenants never share by default");
        assert_eq!(salt("acme", "public"), salt("globex", "public"), "a named salt is shared");
        assert_ne!(salt("acme", "acme"), salt("acme", ""), "a named salt is never a tenant's own");
        assert!(error(pb::GenerateRequest { cache_salt: "x".repeat(129), ..request() }).contains("cache_salt"));
    }

    #[test]
    fn input_over_the_byte_cap_is_refused_before_tokenizing() {
        let prompt =
            |p: String| pb::GenerateRequest { input: Some(pb::generate_request::Input::Prompt(p)), ..request() };
        assert!(GenerateSpec::try_from(prompt("a".repeat(INPUT_BYTES_MAX))).is_ok());
        assert!(error(prompt("a".repeat(256 * 1024))).contains("262144 bytes"));
        let turn = |content: String| pb::ChatTurn { role: "user".into(), content };
        let half = "a".repeat(INPUT_BYTES_MAX / 2);
        let chat = pb::ChatInput { messages: vec![turn(half.clone()), turn(half)] };
        let m = error(pb::GenerateRequest { input: Some(pb::generate_request::Input::Messages(chat)), ..request() });
        assert!(m.contains("the messages have 131080 bytes"), "roles count too: {m}");
    }
}
