//! The OpenAI-compatible inference API: `POST /v1/chat/completions`,
//! `POST /v1/completions` (streamed as server-sent events or not) and
//! `GET /v1/models`. The tenant's token is the API key. Responses say which
//! class served them (`service_tier`, `x-reservoir-class`) and which worker
//! (`x-reservoir-worker`).

mod convert;
mod error;
mod fields;
mod logprobs;
mod respond;
pub mod schema;
mod stream;
pub mod types;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::response::Response;
use reservoir_domain::TenantId;
use reservoir_proto::v1 as pb;
use serde_json::Value;

pub use error::OpenAiError;
use fields::Route;
use respond::Kind;
use schema::OpenAiErrorBody;
use types::{ChatCompletionRequest, CompletionRequest, Model, ModelList};

use crate::extract::JsonBody;
use crate::state::{AppState, AuthTenant};

/// A tenant authenticated by its API key, with OpenAI-shaped refusals.
pub struct ApiKeyTenant(pub TenantId);

impl FromRequestParts<AppState> for ApiKeyTenant {
    type Rejection = OpenAiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        AuthTenant::from_request_parts(parts, state).await.map(|t| ApiKeyTenant(t.0)).map_err(Into::into)
    }
}

/// A request body of one of the OpenAI routes.
pub trait OpenAiBody: serde::de::DeserializeOwned {
    const ROUTE: Route;
}

impl OpenAiBody for ChatCompletionRequest {
    const ROUTE: Route = Route::Chat;
}

impl OpenAiBody for CompletionRequest {
    const ROUTE: Route = Route::Completion;
}

/// Reads a body: its fields first (none the route does not serve), then
/// its type. Every refusal is a 400 in OpenAI's shape.
pub fn read_body<T: OpenAiBody>(value: Value) -> Result<T, OpenAiError> {
    if let Value::Object(fields) = &value {
        fields::check(T::ROUTE, fields)?;
    }
    serde_json::from_value(value).map_err(|e| OpenAiError::invalid(None, e.to_string()))
}

/// A JSON body with OpenAI-shaped refusals.
pub struct OpenAiJson<T>(pub T);

impl<T: OpenAiBody> FromRequest<AppState> for OpenAiJson<T> {
    type Rejection = OpenAiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let JsonBody(value) = JsonBody::<Value>::from_request(req, state).await?;
        read_body(value).map(OpenAiJson)
    }
}

fn request_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// OpenAI-compatible chat completion: one JSON answer, or server-sent events
/// (`stream: true`) ending with `data: [DONE]`. Errors take OpenAI's shape.
/// A field OpenAI has but this platform does not serve (`tools`,
/// `response_format` other than text, `audio`, ...) is a 400 with `code:
/// "unsupported_parameter"`; a field OpenAI does not know either, a 400 with
/// `code: "unknown_parameter"`; `param` names the field.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "inference",
    request_body(content = ChatCompletionRequest, examples(
        ("whole" = (value = json!({"model": "smollm2-135m-instruct", "max_tokens": 8,
            "messages": [{"role": "user", "content": "What is the capital of Japan?"}]}))),
        ("streamed" = (value = json!({"model": "smollm2-135m-instruct", "max_tokens": 8, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "What is the capital of Japan?"}]}))),
    )),
    responses(
        (status = 200, description = "A `chat.completion` object; with `stream: true`, server-sent events of `chat.completion.chunk` objects ending with `[DONE]`. Headers x-reservoir-class, x-reservoir-worker, x-request-id",
            content(
                (schema::ChatCompletion = "application/json"),
                (schema::StreamEvent = "text/event-stream"),
            )),
        schema::CompletionErrors,
    ),
    security(("bearer" = [])))]
pub async fn chat_completions(
    State(state): State<AppState>,
    ApiKeyTenant(tenant): ApiKeyTenant,
    OpenAiJson(body): OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, OpenAiError> {
    let call = convert::chat(&tenant, &request_id(), &body)?;
    respond::run(state, call, Kind::Chat, &body.model).await
}

/// OpenAI-compatible text completion of one prompt, streamed or not.
#[utoipa::path(post, path = "/v1/completions", tag = "inference",
    request_body(content = CompletionRequest, examples(
        ("whole" = (value = json!({"model": "smollm2-135m-instruct", "max_tokens": 8, "logprobs": 2,
            "prompt": "The capital of Japan is"}))),
        ("streamed" = (value = json!({"model": "smollm2-135m-instruct", "max_tokens": 8, "stream": true,
            "prompt": "The capital of Japan is"}))),
    )),
    responses(
        (status = 200, description = "A `text_completion` object; with `stream: true`, server-sent events of `text_completion` objects ending with `[DONE]`. Headers x-reservoir-class, x-reservoir-worker, x-request-id",
            content(
                (schema::TextCompletion = "application/json"),
                (schema::StreamEvent = "text/event-stream"),
            )),
        schema::CompletionErrors,
    ),
    security(("bearer" = [])))]
pub async fn completions(
    State(state): State<AppState>,
    ApiKeyTenant(tenant): ApiKeyTenant,
    OpenAiJson(body): OpenAiJson<CompletionRequest>,
) -> Result<Response, OpenAiError> {
    let call = convert::completion(&tenant, &request_id(), &body)?;
    respond::run(state, call, Kind::Text, &body.model).await
}

/// The models this platform serves now (in the catalog, with a healthy
/// worker), in OpenAI's list shape, each with its token weights.
#[utoipa::path(get, path = "/v1/models", tag = "inference",
    responses(
        (status = 200, description = "The models served now: in the catalog, with at least one healthy worker; each with its measured token weights and prefill rate", body = ModelList),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 403, description = "Not a tenant's key", body = OpenAiErrorBody),
        (status = 429, description = "Rate limited; Retry-After says when to retry", body = OpenAiErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "A platform service is unavailable", body = OpenAiErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn models(
    State(state): State<AppState>,
    ApiKeyTenant(_tenant): ApiKeyTenant,
) -> Result<axum::Json<ModelList>, OpenAiError> {
    let reply = state.contracts.clone().list_models(pb::ListModelsRequest {}).await?.into_inner();
    // A catalog model no worker serves would only be answered with waits
    // and 503s: it is not listed until a worker of it is up.
    let workers = state.scheduler.clone().list_workers(pb::ListWorkersRequest {}).await?.into_inner().workers;
    let served: std::collections::HashSet<String> =
        workers.into_iter().filter(|w| w.healthy).map(|w| w.model_id).collect();
    let data = reply
        .models
        .into_iter()
        .filter(|m| served.contains(&m.id))
        .map(|m| Model {
            created: m.updated_at.map(|t| t.seconds).unwrap_or(0),
            id: m.id,
            object: "model",
            owned_by: "reservoir",
            prompt_weight: m.prompt_weight,
            completion_weight: m.completion_weight,
            prefill_tokens_per_s: m.prefill_tokens_per_s,
        })
        .collect();
    Ok(axum::Json(ModelList { object: "list", data }))
}
