//! The models' tokenizers, learned from the workers (`GetTokenizer`), so
//! admission counts a prompt's tokens exactly as the worker will and charges
//! the contract's bucket for them. Until a model's tokenizer is known (no
//! worker of it has answered yet), the count is estimated from the text's
//! length; either way the worker's own count settles the bucket at the end.
//!
//! Tokenizing is the one thing admission does whose cost grows with the
//! input, so the input is capped first (`check_input`, before anything else
//! reads it) and tokenized off the async threads.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use reservoir_proto::v1 as pb;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_runtime::InternalChannel;
use reservoir_tokenizer::{ChatMessage, PROMPT_BYTES_MAX, PreTokenizer, ROLES, Tokenizer, TokenizerParts};

/// Characters per token assumed while a model's tokenizer is unknown.
const CHARS_PER_TOKEN_ESTIMATE: u64 = 4;

#[derive(Default)]
pub struct Tokenizers {
    known: RwLock<HashMap<String, Arc<Tokenizer>>>,
    /// Each model's context length in tokens, as its workers report it.
    contexts: RwLock<HashMap<String, u32>>,
    /// Models whose tokenizer a watcher is fetching now (workers of one
    /// model often start together: one fetch is enough).
    fetching: Mutex<HashSet<String>>,
}

/// A prompt's tokens: counted (the ids themselves, which the worker then
/// uses instead of tokenizing again), or only estimated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptTokens {
    Counted(Vec<u32>),
    Estimated(u64),
}

impl PromptTokens {
    pub fn count(&self) -> u64 {
        match self {
            PromptTokens::Counted(ids) => u64::try_from(ids.len()).unwrap_or(u64::MAX),
            PromptTokens::Estimated(n) => *n,
        }
    }
}

fn rebuild(spec: pb::TokenizerSpec) -> anyhow::Result<Tokenizer> {
    let pre = PreTokenizer::from_gguf_name(Some(spec.pre_tokenizer.as_str()).filter(|p| !p.is_empty()))?;
    Ok(Tokenizer::from_parts(TokenizerParts {
        tokens: spec.tokens,
        merges: spec.merges,
        control_ids: spec.control_token_ids,
        bos_id: spec.bos_token_id,
        eos_id: spec.eos_token_id,
        add_bos: spec.add_bos,
        pre,
    })?)
}

impl Tokenizers {
    fn get(&self, model: &str) -> Option<Arc<Tokenizer>> {
        self.known.read().ok()?.get(model).cloned()
    }

    /// Whether the caller should fetch `model`'s tokenizer: it is not known
    /// and nobody is fetching it. A true answer must be followed by
    /// `learn_from`, which ends the fetch either way.
    pub fn should_learn(&self, model: &str) -> bool {
        if self.known.read().is_ok_and(|m| m.contains_key(model)) {
            return false;
        }
        self.fetching.lock().is_ok_and(|mut f| f.insert(model.to_owned()))
    }

    /// Asks a worker of `model` for its tokenizer and keeps it.
    pub async fn learn_from(
        &self,
        client: &mut WorkerServiceClient<InternalChannel>,
        model: &str,
    ) -> anyhow::Result<()> {
        let learned = self.fetch(client, model).await;
        if let Ok(mut fetching) = self.fetching.lock() {
            fetching.remove(model);
        }
        learned
    }

    async fn fetch(&self, client: &mut WorkerServiceClient<InternalChannel>, model: &str) -> anyhow::Result<()> {
        let spec = client.get_tokenizer(pb::GetTokenizerRequest {}).await?.into_inner();
        anyhow::ensure!(spec.model_id == model, "the worker serves {:?}, not {model:?}", spec.model_id);
        let tokenizer = tokio::task::spawn_blocking(move || rebuild(spec)).await??;
        tracing::info!(model, vocab = tokenizer.vocab_size(), "learned the model's tokenizer from a worker");
        if let Ok(mut map) = self.known.write() {
            map.insert(model.to_owned(), Arc::new(tokenizer));
        }
        Ok(())
    }

    /// Notes `model`'s context length from a worker's stats.
    pub fn note_context(&self, model: &str, context_tokens: u32) {
        if context_tokens == 0 || self.contexts.read().is_ok_and(|m| m.get(model) == Some(&context_tokens)) {
            return;
        }
        if let Ok(mut map) = self.contexts.write() {
            map.insert(model.to_owned(), context_tokens);
        }
    }

    /// Refuses what the model cannot serve, as far as admission knows the
    /// model: `logit_bias` tokens outside its vocabulary, a counted prompt
    /// that fills its context, or `max_tokens` beyond what the context
    /// leaves. While the tokenizer or the context is unknown, the worker
    /// checks the same (and its refusal reaches the client after `admitted`).
    pub fn check_fits(&self, model: &str, prompt: &PromptTokens, params: &pb::GenerationParams) -> Result<(), String> {
        if let Some(tokenizer) = self.get(model) {
            let vocab = tokenizer.vocab_size();
            if let Some(b) = params.logit_bias.iter().find(|b| b.token_id as usize >= vocab) {
                return Err(format!("logit_bias names token {}, outside the vocabulary of {vocab}", b.token_id));
            }
        }
        let context = self.contexts.read().ok().and_then(|m| m.get(model).copied());
        if let (Some(context), PromptTokens::Counted(ids)) = (context, prompt) {
            let prompt_len = u32::try_from(ids.len()).unwrap_or(u32::MAX);
            if prompt_len >= context {
                return Err(format!(
                    "the prompt has {prompt_len} tokens; the model's context holds {context}, and at least one must be left to generate"
                ));
            }
            let room = context - prompt_len;
            if params.max_tokens > room {
                return Err(format!(
                    "max_tokens {} exceeds the context: the prompt has {prompt_len} tokens, the context {context}, so at most {room}",
                    params.max_tokens
                ));
            }
        }
        Ok(())
    }

    /// The request's prompt tokens: counted with the model's tokenizer (the
    /// worker's exact rule: chat template for messages, special tokens
    /// added), or estimated from its length while the tokenizer is unknown.
    /// `input` must have passed `check_input`. Tokenizing always runs on the
    /// blocking pool: even a capped prompt is milliseconds of CPU that would
    /// otherwise hold up every other request on this async thread.
    pub async fn prompt_tokens(&self, model: &str, input: &pb::complete_request::Input) -> PromptTokens {
        let Some(tokenizer) = self.get(model) else { return PromptTokens::Estimated(estimate(input)) };
        let (estimated, input) = (estimate(input), input.clone());
        match tokio::task::spawn_blocking(move || encode(&tokenizer, &input)).await {
            Ok(ids) => PromptTokens::Counted(ids),
            Err(_) => PromptTokens::Estimated(estimated),
        }
    }
}

/// Refuses, before anything reads it, input whose tokenizing would cost more
/// than any servable prompt: more than `PROMPT_BYTES_MAX` bytes of prompt,
/// or of roles and contents together. Also roles the chat template does not
/// know (the worker would refuse them; refusing here keeps them out of the
/// tenant's bucket). The answer is the reason, for INVALID_ARGUMENT.
pub fn check_input(input: &pb::complete_request::Input) -> Result<(), String> {
    let bytes = match input {
        pb::complete_request::Input::Prompt(p) => p.len(),
        pb::complete_request::Input::Messages(m) => {
            if let Some((i, turn)) = m.messages.iter().enumerate().find(|(_, t)| !ROLES.contains(&t.role.as_str())) {
                return Err(format!("messages[{i}].role {:?} is not one of: {}", turn.role, ROLES.join(", ")));
            }
            m.messages.iter().map(|t| t.role.len() + t.content.len()).sum()
        }
    };
    if bytes > PROMPT_BYTES_MAX {
        return Err(format!("the prompt has {bytes} bytes; at most {PROMPT_BYTES_MAX} are accepted"));
    }
    Ok(())
}

fn encode(tokenizer: &Tokenizer, input: &pb::complete_request::Input) -> Vec<u32> {
    match input {
        pb::complete_request::Input::Prompt(p) => tokenizer.encode(p, true),
        pb::complete_request::Input::Messages(m) => {
            let turns: Vec<ChatMessage> = m.messages.iter().map(|t| ChatMessage::new(&t.role, &t.content)).collect();
            reservoir_tokenizer::chat_prompt(tokenizer, &turns)
        }
    }
}

fn estimate(input: &pb::complete_request::Input) -> u64 {
    let chars = match input {
        pb::complete_request::Input::Prompt(p) => p.chars().count(),
        pb::complete_request::Input::Messages(m) => m.messages.iter().map(|t| t.content.chars().count() + 8).sum(),
    };
    u64::try_from(chars).unwrap_or(u64::MAX).div_ceil(CHARS_PER_TOKEN_ESTIMATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(text: String) -> pb::complete_request::Input {
        pb::complete_request::Input::Prompt(text)
    }

    fn chat(turns: &[(&str, String)]) -> pb::complete_request::Input {
        let messages = turns.iter().map(|(r, c)| pb::ChatTurn { role: r.to_string(), content: c.clone() }).collect();
        pb::complete_request::Input::Messages(pb::ChatInput { messages })
    }

    #[test]
    fn input_over_the_byte_cap_is_refused_before_tokenizing() {
        assert_eq!(check_input(&prompt("a".repeat(PROMPT_BYTES_MAX))), Ok(()));
        let refused = check_input(&prompt("a".repeat(256 * 1024))).expect_err("256 KiB");
        assert!(refused.contains("262144 bytes"), "{refused}");
        // Messages count roles and contents together.
        let half = "a".repeat(PROMPT_BYTES_MAX / 2);
        assert!(check_input(&chat(&[("user", half.clone()), ("assistant", half.clone())])).is_err());
        assert_eq!(check_input(&chat(&[("user", half[4..].to_string()), ("user", half[4..].to_string())])), Ok(()));
    }

    #[test]
    fn max_tokens_must_fit_the_context_once_the_model_is_known() {
        let t = Tokenizers::default();
        let prompt = PromptTokens::Counted(vec![1; 100]);
        let params = |max_tokens| pb::GenerationParams { max_tokens, ..Default::default() };
        // Unknown context: the worker decides.
        assert_eq!(t.check_fits("m", &prompt, &params(1_000_000)), Ok(()));
        t.note_context("m", 128);
        assert_eq!(t.check_fits("m", &prompt, &params(28)), Ok(()));
        let refused = t.check_fits("m", &prompt, &params(29)).expect_err("beyond the context");
        assert!(refused.contains("at most 28"), "{refused}");
        let full = t.check_fits("m", &PromptTokens::Counted(vec![1; 128]), &params(0)).expect_err("full");
        assert!(full.contains("128 tokens"), "{full}");
        // An estimated count is not enough to refuse on.
        assert_eq!(t.check_fits("m", &PromptTokens::Estimated(500), &params(29)), Ok(()));
    }

    #[test]
    fn unknown_roles_are_refused() {
        let refused = check_input(&chat(&[("user<|im_end|>", "x".into())])).expect_err("role");
        assert!(refused.contains("messages[0].role"), "{refused}");
        assert!(check_input(&chat(&[("system", "s".into()), ("robot", "x".into())])).is_err());
        assert_eq!(
            check_input(&chat(&[("system", "s".into()), ("user", "u".into()), ("assistant", "a".into())])),
            Ok(())
        );
    }
}
