//! OpenAI-compatible request and response bodies (the subset Reservoir
//! serves). Which fields a body may hold is checked before these types are
//! read (`fields`): an OpenAI field this platform does not serve is a 400
//! `unsupported_parameter`, a field OpenAI does not know either a 400
//! `unknown_parameter`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// Message content: a string, or a list of parts of which the text parts count.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// What both completion endpoints share.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct Sampling {
    /// Within what the model's context leaves after the prompt.
    pub max_tokens: Option<u32>,
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    /// At most 4 strings of 1 to 256 bytes.
    pub stop: Option<Stop>,
    /// Independent choices, 1 to 8; each is its own sequence (and usage record).
    #[schema(minimum = 1, maximum = 8)]
    pub n: Option<u32>,
    /// Token id (as a string) -> bias in [-100, 100] added to its logit; at most 300 entries.
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// In [-2, 2]: subtracted once from the logit of every token generated so far.
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f32>,
    /// In [-2, 2]: subtracted from a token's logit for each time it was generated so far.
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f32>,
    /// Accepted and ignored (OpenAI's end-user id for abuse monitoring); at most 256 bytes.
    #[allow(dead_code)] // Checked by `fields`; here so that the schema documents it.
    pub user: Option<String>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// `flex` asks to be served as spot.
    pub service_tier: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    pub model: String,
    /// At most 2048 messages; roles and contents together at most 128 KiB.
    pub messages: Vec<Message>,
    /// The chat route's newer name for `max_tokens` (it wins when both are sent).
    pub max_completion_tokens: Option<u32>,
    /// Report each generated token's log-probability.
    pub logprobs: Option<bool>,
    /// With `logprobs`: the most likely tokens at each position, 0 to 20.
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<u32>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `prompt`: one string (lists of prompts are not served).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CompletionRequest {
    pub model: String,
    /// One string (or a list holding one string) of 1 byte to 128 KiB.
    #[schema(schema_with = prompt_schema)]
    pub prompt: serde_json::Value,
    /// The legacy form: how many of the most likely tokens to report at each
    /// position (0 to 5), beside each token's own log-probability.
    #[schema(minimum = 0, maximum = 5)]
    pub logprobs: Option<u32>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// Tokens of an answer, as OpenAI counts them (its schema name keeps it apart
/// from the usage API's `Usage`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = CompletionUsage)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

/// One generated token's log-probability (chat completions).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// One of the most likely tokens at a position.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// A chat choice's `logprobs`.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Logprobs {
    pub content: Vec<TokenLogprob>,
}

/// A legacy completion choice's `logprobs`: parallel lists, one entry a
/// token; `text_offset` is where each token starts in the choice's text,
/// in characters.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct LegacyLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<BTreeMap<String, f32>>,
    pub text_offset: Vec<u32>,
}

/// A model in OpenAI's shape (the admin API's is `Model`), with what its
/// tokens weigh on this pool, so a tenant can size a reservation: a request
/// costs prompt_tokens x prompt_weight + completion_tokens x
/// completion_weight weighted tokens.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = OpenAiModel)]
pub struct Model {
    pub id: String,
    #[schema(value_type = String)]
    pub object: &'static str,
    pub created: i64,
    #[schema(value_type = String)]
    pub owned_by: &'static str,
    /// Weighted tokens per prompt token, measured at calibration (decimal string).
    pub prompt_weight: String,
    /// Weighted tokens per generated token: 1 once calibrated (decimal string).
    pub completion_weight: String,
    /// Prompt tokens/s one request is prefilled at (0: not measured); a
    /// request's TTFT target allows its prompt tokens / this rate.
    pub prefill_tokens_per_s: u32,
}

/// `GET /v1/models`: OpenAI's list shape, `{"object": "list", "data": [...]}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = OpenAiModelList)]
pub struct ModelList {
    #[schema(value_type = String)]
    pub object: &'static str,
    pub data: Vec<Model>,
}

/// `prompt`: a non-empty string, or a list of exactly one such string.
fn prompt_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let text = || ObjectBuilder::new().schema_type(Type::String).min_length(Some(1));
    OneOfBuilder::new()
        .item(text())
        .item(ArrayBuilder::new().items(text()).min_items(Some(1)).max_items(Some(1)))
        .description(Some("One string (or a list holding one string) of 1 byte to 128 KiB."))
        .build()
        .into()
}
