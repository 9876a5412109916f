//! A generation request after the edge: validated domain values, then
//! tokenized and checked against the model (`prepare`), and the events the
//! step loop sends back.

use std::time::Instant;

use reservoir_domain::{PriorityClass, TenantId};
use reservoir_engine::{CacheSalt, ChatMessage, Sampled, Sampler, SamplingParams, Tokenizer};

use crate::backend::BackendInfo;
use crate::error::WorkerError;
use reservoir_engine::text::TextStream;

/// Completion tokens when the request does not say.
pub const DEFAULT_MAX_TOKENS: usize = reservoir_sched::DEFAULT_MAX_TOKENS as usize;

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Chat turns; the model's chat template is applied.
    Chat(Vec<ChatMessage>),
    /// Raw text, tokenized as is.
    Prompt(String),
}

/// A validated `Generate` request (proto converted, nothing tokenized yet).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateSpec {
    pub request_id: String,
    pub tenant: TenantId,
    /// Prefix-cache entries it may share: the tenant's own unless it opted in.
    pub cache_salt: CacheSalt,
    pub class: PriorityClass,
    pub input: Input,
    /// `None`: `DEFAULT_MAX_TOKENS`, or what the context leaves.
    pub max_tokens: Option<usize>,
    /// Everything but `max_tokens`, which `prepare` settles.
    pub sampling: SamplingParams,
    pub logprobs: bool,
    /// Failover: tokens already generated and streamed elsewhere.
    pub continue_from: Vec<u32>,
    /// The input already tokenized by the scheduler; empty: tokenize it here.
    pub prompt_ids: Vec<u32>,
    /// When its first token is due (its SLA's TTFT target); `None`: no target.
    pub first_token_due: Option<Instant>,
}

/// A request ready for the step loop.
pub struct Prepared {
    pub request_id: String,
    pub tenant: TenantId,
    pub cache_salt: CacheSalt,
    pub class: PriorityClass,
    /// When its first token is due: orders prefills within its class.
    pub first_token_due: Option<Instant>,
    /// Prompt, then continued tokens.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Completion tokens already sent (continued).
    pub completed: usize,
    pub max_tokens: usize,
    pub sampler: Sampler,
    pub logprobs: bool,
    /// Already fed with the continued tokens.
    pub text: TextStream,
    /// The request is complete before any step (all continued tokens given,
    /// or a stop string among them): answer with this finish right away.
    pub done: Option<FinishReason>,
}

/// Tokenizes (unless the scheduler did) and checks a request against the
/// model and the KV pool.
pub fn prepare(spec: GenerateSpec, info: &BackendInfo, tokenizer: &Tokenizer) -> Result<Prepared, WorkerError> {
    let prompt = if spec.prompt_ids.is_empty() {
        match &spec.input {
            Input::Chat(messages) => reservoir_engine::chat_prompt(tokenizer, messages),
            Input::Prompt(text) => tokenizer.encode(text, true),
        }
    } else {
        // Tokenized by the scheduler with this model's tokenizer.
        let vocab = tokenizer.vocab_size();
        if let Some(bad) = spec.prompt_ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(WorkerError::Invalid(format!("prompt token id {bad} is outside the vocabulary of {vocab}")));
        }
        spec.prompt_ids.clone()
    };
    if prompt.is_empty() {
        return Err(WorkerError::Invalid("the input encodes to no tokens".into()));
    }
    let prompt_len = prompt.len();
    let ctx = info.ctx_len;
    if prompt_len >= ctx {
        return Err(WorkerError::Invalid(format!(
            "the prompt has {prompt_len} tokens; the model's context holds {ctx}, and at least one must be left to generate"
        )));
    }
    let room = ctx - prompt_len;
    let max_tokens = match spec.max_tokens {
        None => DEFAULT_MAX_TOKENS.min(room),
        Some(n) if n > room => {
            return Err(WorkerError::Invalid(format!(
                "max_tokens {n} exceeds the context: the prompt has {prompt_len} tokens, the context {ctx}, so at most {room}"
            )));
        }
        Some(n) => n,
    };
    let need_blocks = (prompt_len + max_tokens).div_ceil(info.block_size.max(1));
    if need_blocks > info.total_blocks {
        return Err(WorkerError::Invalid(format!(
            "prompt and max_tokens need {} tokens of KV cache; this worker holds {}",
            prompt_len + max_tokens,
            info.total_blocks * info.block_size
        )));
    }
    if let Some(bad) = spec.continue_from.iter().find(|&&t| t as usize >= info.vocab_size) {
        return Err(WorkerError::Invalid(format!(
            "continue_from_token_ids: token {bad} is outside the vocabulary of {}",
            info.vocab_size
        )));
    }
    let completed = spec.continue_from.len();
    if completed > max_tokens {
        return Err(WorkerError::Invalid(format!(
            "continue_from_token_ids has {completed} tokens, more than max_tokens {max_tokens}"
        )));
    }
    let sampling = SamplingParams { max_tokens, ..spec.sampling };
    sampling.validate_for_vocab(info.vocab_size).map_err(|e| WorkerError::Invalid(engine_message(&e)))?;
    let mut sampler = Sampler::new(sampling.clone()).map_err(|e| WorkerError::Invalid(engine_message(&e)))?;
    // Skipping the draws of the continued tokens makes a resumed generation
    // the same as an undisturbed one.
    sampler.skip_draws(completed);
    let mut text = TextStream::new(sampling.stop_strings.clone());
    let mut done = None;
    for (i, &t) in spec.continue_from.iter().enumerate() {
        if text.push(&tokenizer.token_bytes(t), i + 1 == max_tokens).stopped {
            done = Some(FinishReason::Stop);
            break;
        }
    }
    if done.is_none() && completed == max_tokens {
        done = Some(FinishReason::Length);
    }
    let mut tokens = prompt;
    tokens.extend_from_slice(&spec.continue_from);
    Ok(Prepared {
        request_id: spec.request_id,
        tenant: spec.tenant,
        cache_salt: spec.cache_salt,
        class: spec.class,
        first_token_due: spec.first_token_due,
        tokens,
        prompt_len,
        completed,
        max_tokens,
        sampler,
        logprobs: spec.logprobs,
        text,
        done,
    })
}

/// The engine's message without its "invalid argument: " prefix.
fn engine_message(e: &reservoir_engine::EngineError) -> String {
    match e {
        reservoir_engine::EngineError::InvalidArgument(m) => m.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End of sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The worker shut down, or the client went away, before the end.
    Cancelled,
    Error,
}

impl FinishReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Including continued tokens.
    pub completion_tokens: usize,
    pub cached_prompt_tokens: usize,
}

/// A generated token's logprob and the most likely alternatives, each with
/// its bytes (a client without the tokenizer cannot name them otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    pub bytes: Vec<u8>,
    /// (token id, its bytes, logprob), most likely first.
    pub top: Vec<(u32, Vec<u8>, f32)>,
}

impl TokenLogprobs {
    pub fn new(sampled: &Sampled, tokenizer: &Tokenizer) -> Self {
        TokenLogprobs {
            logprob: sampled.logprob,
            bytes: tokenizer.token_bytes(sampled.token),
            top: sampled.top_logprobs.iter().map(|&(id, lp)| (id, tokenizer.token_bytes(id), lp)).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `logprobs` when the request asked for them.
    Token {
        id: u32,
        text: String,
        logprobs: Option<TokenLogprobs>,
    },
    Finish {
        reason: FinishReason,
        usage: Usage,
        text: String,
        message: String,
    },
}
