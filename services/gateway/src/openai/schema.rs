//! The shapes the OpenAI routes send, as the OpenAPI document describes
//! them. Errors are sent through these types (`error.rs`); completions are
//! built as JSON in `respond.rs` and `stream.rs`, and these types only
//! describe them: `tests/tests/api_contract.rs` checks every answer the
//! platform sends against the document, so the two cannot drift apart.

use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use super::types::{LegacyLogprobs, Logprobs, Usage};

/// An error in OpenAI's shape (not the REST API's `ErrorBody`).
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `rate_limit_exceeded` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// E.g. `unsupported_parameter`, `unknown_parameter`, `invalid_api_key`,
    /// `model_not_found`, `rate_limit_exceeded`.
    pub code: Option<String>,
}

// The types below are never built: they document JSON built elsewhere.

/// The errors both completion routes answer.
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum CompletionErrors {
    #[response(status = 400, description = "Invalid request, or a field not served (`param` names the field)")]
    Invalid(OpenAiErrorBody),
    #[response(status = 401, description = "Missing or invalid API key")]
    Unauthorized(OpenAiErrorBody),
    #[response(status = 403, description = "Not a tenant's key")]
    Forbidden(OpenAiErrorBody),
    #[response(status = 404, description = "Unknown model")]
    UnknownModel(OpenAiErrorBody),
    #[response(status = 413, description = "Body too large")]
    TooLarge(OpenAiErrorBody),
    #[response(status = 415, description = "Not JSON")]
    NotJson(OpenAiErrorBody),
    #[response(status = 429, description = "Shed or rate limited; Retry-After says when to retry",
        headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Limited(OpenAiErrorBody),
    #[response(
        status = 503,
        description = "A platform service is unavailable, the request failed before it finished, or a reserved request waited past its queue deadline (a few times its tier's TTFT target); Retry-After, when present, says when to retry",
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    Unavailable(OpenAiErrorBody),
}

/// A `chat.completion`.
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-` and the id usage is recorded under.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    pub model: String,
    /// The lowest class any choice was served in: `reserved`, `burst` or `spot`.
    pub service_tier: String,
    /// Always null.
    pub system_fingerprint: Option<String>,
    pub choices: Vec<ChatChoice>,
    /// Summed over the choices.
    pub usage: Usage,
}

#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    /// With `logprobs: true`; null otherwise.
    pub logprobs: Option<Logprobs>,
    /// `stop` or `length`.
    pub finish_reason: String,
}

#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: String,
    pub content: String,
}

/// A `text_completion`.
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-` and the id usage is recorded under.
    pub id: String,
    /// `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    pub model: String,
    /// The lowest class any choice was served in: `reserved`, `burst` or `spot`.
    pub service_tier: String,
    /// Always null.
    pub system_fingerprint: Option<String>,
    pub choices: Vec<TextChoice>,
    /// Summed over the choices.
    pub usage: Usage,
}

#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct TextChoice {
    pub index: u32,
    pub text: String,
    /// With `logprobs: k`; null otherwise.
    pub logprobs: Option<LegacyLogprobs>,
    /// `stop` or `length`.
    pub finish_reason: String,
}

/// One server-sent event of a streamed answer (`stream: true`), as OpenAPI
/// 3.2 describes the items of `text/event-stream`. `data` is JSON text: a
/// `chat.completion.chunk` (or `text_completion`) object for each token of
/// any choice (`choices[].index` names it) and a finishing one per choice,
/// a chunk with `usage` and empty `choices` when `stream_options.include_usage`
/// is set, an `{"error": ...}` object when the request fails midway; the
/// last event's data is `[DONE]`.
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvent {
    pub data: String,
    /// Always the default, `message`.
    pub event: Option<String>,
}
