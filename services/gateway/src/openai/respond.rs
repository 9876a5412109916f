//! Running a completion through the scheduler and answering in OpenAI's
//! shapes: one JSON body here, or server-sent events (`stream`).
//!
//! `n` choices are `n` requests to the scheduler, started together: each
//! is admitted, queued, run and metered on its own (request id
//! `<x-request-id>-<index>`), and the answer's usage is their sum. The
//! first refusal (a 429, a 400 from the scheduler) answers the whole
//! request; the other choices' streams are then dropped, which cancels
//! them.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::try_join_all;
use reservoir_domain::PriorityClass;
use reservoir_proto::enums::class_from_pb;
use reservoir_proto::v1 as pb;
use serde_json::{Value, json};

use super::convert::Call;
use super::error::OpenAiError;
use super::logprobs::Collector;
use super::types::{PromptTokensDetails, Usage};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Text,
}

#[derive(Clone)]
pub struct Meta {
    pub id: String,
    pub created: i64,
    pub model: String,
    pub class: PriorityClass,
    pub kind: Kind,
}

impl Meta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }

    pub fn envelope(&self, chunk: bool, choices: Value) -> Value {
        json!({
            "id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model,
            "service_tier": self.class.as_str(), "system_fingerprint": null, "choices": choices,
        })
    }
}

/// The answer's usage: the sum over its choices.
pub fn usage(parts: &[pb::Usage]) -> Usage {
    let sum = |f: fn(&pb::Usage) -> u32| parts.iter().map(f).fold(0u32, u32::saturating_add);
    let (prompt_tokens, completion_tokens) = (sum(|u| u.prompt_tokens), sum(|u| u.completion_tokens));
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens.saturating_add(completion_tokens),
        prompt_tokens_details: PromptTokensDetails { cached_tokens: sum(|u| u.cached_prompt_tokens) },
    }
}

pub fn usage_value(parts: &[pb::Usage]) -> Value {
    serde_json::to_value(usage(parts)).unwrap_or(Value::Null)
}

/// OpenAI's finish reason; an error finish (or one the gateway cannot read)
/// becomes a 503 with the worker's message.
pub fn finish_reason(f: &pb::FinishEvent) -> Result<&'static str, OpenAiError> {
    match f.finish_reason() {
        pb::FinishReason::Stop => Ok("stop"),
        pb::FinishReason::Length => Ok("length"),
        pb::FinishReason::Cancelled | pb::FinishReason::Error | pb::FinishReason::Unspecified => {
            let mut e = OpenAiError::invalid(
                None,
                if f.message.is_empty() { "the request failed".into() } else { f.message.clone() },
            );
            e.status = StatusCode::SERVICE_UNAVAILABLE;
            e.kind = "server_error";
            Err(e)
        }
    }
}

/// `x-request-id` is the id usage is recorded under (with `-<index>` per
/// choice when there are several).
fn headers(response: &mut Response, meta: &Meta, worker: &str, request_id: &str) {
    let h = response.headers_mut();
    for (name, value) in
        [("x-reservoir-class", meta.class.as_str()), ("x-reservoir-worker", worker), ("x-request-id", request_id)]
    {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
}

/// A choice admitted by the scheduler: its class, its first worker, its events.
pub struct Started {
    class: PriorityClass,
    worker: String,
    pub events: tonic::Streaming<pb::CompleteEvent>,
}

async fn start(state: &AppState, request: pb::CompleteRequest) -> Result<Started, OpenAiError> {
    let mut events = state.scheduler.clone().complete(request).await?.into_inner();
    // The first event says who serves the request: it becomes the headers.
    let admitted = match events.message().await? {
        Some(pb::CompleteEvent { event: Some(pb::complete_event::Event::Admitted(a)) }) => a,
        _ => return Err(OpenAiError::from(tonic::Status::internal("the scheduler answered out of order"))),
    };
    let class = class_from_pb("class", admitted.class).map_err(|e| {
        tracing::error!(error = %e, "the scheduler admitted a request in no class");
        OpenAiError::from(tonic::Status::internal("the scheduler's answer could not be read"))
    })?;
    Ok(Started { class, worker: admitted.worker_id, events })
}

pub async fn run(state: AppState, call: Call, kind: Kind, model: &str) -> Result<Response, OpenAiError> {
    let prefix = if kind == Kind::Chat { "chatcmpl-" } else { "cmpl-" };
    let request_id = call.request.request_id.clone();
    let started = try_join_all((0..call.choices).map(|i| start(&state, call.choice(i)))).await?;
    // Choices may be admitted in different classes: the answer names the
    // lowest, so a client is never told it was served better than it was.
    let class = started.iter().map(|s| s.class).max().unwrap_or(PriorityClass::Spot);
    let worker = started.first().map(|s| s.worker.clone()).unwrap_or_default();
    let meta = Meta {
        id: format!("{prefix}{request_id}"),
        created: chrono::Utc::now().timestamp(),
        model: model.into(),
        class,
        kind,
    };
    let streams = started.into_iter().map(|s| s.events).collect();
    let mut response = if call.stream {
        super::stream::events(streams, meta.clone(), call.include_usage).into_response()
    } else {
        whole(streams, &meta, call.logprobs).await?.into_response()
    };
    headers(&mut response, &meta, &worker, &request_id);
    Ok(response)
}

/// One choice, whole: its text, logprobs, finish reason and usage.
async fn collect(
    mut events: tonic::Streaming<pb::CompleteEvent>,
    kind: Kind,
    index: usize,
    want_logprobs: bool,
) -> Result<(Value, pb::Usage), OpenAiError> {
    let mut text = String::new();
    let mut logprobs = Collector::new(kind);
    while let Some(event) = events.message().await? {
        match event.event {
            Some(pb::complete_event::Event::Token(t)) => {
                text.push_str(&t.text);
                logprobs.push(&t);
            }
            Some(pb::complete_event::Event::Finish(f)) => {
                text.push_str(&f.text);
                let reason = finish_reason(&f)?;
                let lp = if want_logprobs { logprobs.take() } else { Value::Null };
                let choice = match kind {
                    Kind::Chat => json!({"index": index, "message": {"role": "assistant", "content": text},
                        "logprobs": lp, "finish_reason": reason}),
                    Kind::Text => json!({"index": index, "text": text, "logprobs": lp, "finish_reason": reason}),
                };
                return Ok((choice, f.usage.unwrap_or_default()));
            }
            _ => {}
        }
    }
    Err(OpenAiError::from(tonic::Status::unavailable("the stream ended before the completion finished")))
}

async fn whole(
    streams: Vec<tonic::Streaming<pb::CompleteEvent>>,
    meta: &Meta,
    want_logprobs: bool,
) -> Result<Json<Value>, OpenAiError> {
    let choices = streams.into_iter().enumerate().map(|(i, events)| collect(events, meta.kind, i, want_logprobs));
    let (choices, usages): (Vec<Value>, Vec<pb::Usage>) = try_join_all(choices).await?.into_iter().unzip();
    let mut body = meta.envelope(false, Value::Array(choices));
    body["usage"] = usage_value(&usages);
    Ok(Json(body))
}
