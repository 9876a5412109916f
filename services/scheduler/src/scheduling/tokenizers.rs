//! The models' tokenizers, learned from the workers (`GetTokenizer`), so
//! admission counts a prompt's tokens exactly as the worker will and charges
//! the contract's bucket for them. Until a model's tokenizer is known (no
//! worker of it has answered yet), the count is estimated from the text's
//! length; either way the worker's own count settles the bucket at the end.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use reservoir_proto::v1 as pb;
use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_runtime::InternalChannel;
use reservoir_tokenizer::{ChatMessage, PreTokenizer, Tokenizer, TokenizerParts};

/// Characters per token assumed while a model's tokenizer is unknown.
const CHARS_PER_TOKEN_ESTIMATE: u64 = 4;
/// Prompts longer than this (bytes) are tokenized off the async threads.
const INLINE_TOKENIZE_BYTES_MAX: usize = 4096;

#[derive(Default)]
pub struct Tokenizers {
    known: RwLock<HashMap<String, Arc<Tokenizer>>>,
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

    /// The request's prompt tokens: counted with the model's tokenizer (the
    /// worker's exact rule: chat template for messages, special tokens
    /// added), or estimated from its length while the tokenizer is unknown.
    pub async fn prompt_tokens(&self, model: &str, input: &pb::complete_request::Input) -> PromptTokens {
        let Some(tokenizer) = self.get(model) else { return PromptTokens::Estimated(estimate(input)) };
        let bytes = match input {
            pb::complete_request::Input::Prompt(p) => p.len(),
            pb::complete_request::Input::Messages(m) => m.messages.iter().map(|t| t.content.len()).sum(),
        };
        if bytes <= INLINE_TOKENIZE_BYTES_MAX {
            return PromptTokens::Counted(encode(&tokenizer, input));
        }
        let (estimated, input) = (estimate(input), input.clone());
        match tokio::task::spawn_blocking(move || encode(&tokenizer, &input)).await {
            Ok(ids) => PromptTokens::Counted(ids),
            Err(_) => PromptTokens::Estimated(estimated),
        }
    }
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
