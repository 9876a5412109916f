//! Running a completion through the scheduler and answering in OpenAI's
//! shapes: one JSON body, or server-sent events ending with `data: [DONE]`.

use std::convert::Infallible;

use axum::Json;
use axum::http::HeaderValue;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use reservoir_domain::PriorityClass;
use reservoir_proto::enums::class_from_pb;
use reservoir_proto::v1 as pb;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::error::OpenAiError;
use super::types::{Logprobs, PromptTokensDetails, Sampling, TokenLogprob, Usage};
use crate::state::AppState;

/// Server-sent events buffered between the scheduler stream and the client.
const SSE_BUFFER: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Text,
}

#[derive(Clone)]
struct Meta {
    id: String,
    created: i64,
    model: String,
    class: PriorityClass,
    kind: Kind,
}

impl Meta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Value {
        json!({
            "id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model,
            "service_tier": self.class.as_str(), "system_fingerprint": null, "choices": choices,
        })
    }

    fn choice(&self, text: &str, logprobs: Option<Value>, finish: Option<&str>, first: bool) -> Value {
        match self.kind {
            Kind::Chat => {
                let delta =
                    if first { json!({"role": "assistant", "content": text}) } else { json!({"content": text}) };
                json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
            Kind::Text => json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}),
        }
    }
}

fn usage(u: &pb::Usage) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        prompt_tokens_details: PromptTokensDetails { cached_tokens: u.cached_prompt_tokens },
    }
}

fn token_logprob(t: &pb::TokenEvent) -> Option<TokenLogprob> {
    t.logprob.map(|logprob| TokenLogprob {
        token: t.text.clone(),
        logprob,
        bytes: t.text.as_bytes().to_vec(),
        top_logprobs: Vec::new(),
    })
}

/// OpenAI's finish reason; an error finish (or one the gateway cannot read)
/// becomes a 503 with the worker's message.
fn finish_reason(f: &pb::FinishEvent) -> Result<&'static str, OpenAiError> {
    match f.finish_reason() {
        pb::FinishReason::Stop => Ok("stop"),
        pb::FinishReason::Length => Ok("length"),
        pb::FinishReason::Cancelled | pb::FinishReason::Error | pb::FinishReason::Unspecified => {
            let mut e = OpenAiError::invalid(
                None,
                if f.message.is_empty() { "the request failed".into() } else { f.message.clone() },
            );
            e.status = axum::http::StatusCode::SERVICE_UNAVAILABLE;
            e.kind = "server_error";
            Err(e)
        }
    }
}

/// `x-request-id` is the id usage is recorded under.
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

pub async fn run(
    state: AppState,
    request: pb::CompleteRequest,
    kind: Kind,
    model: &str,
    sampling: &Sampling,
) -> Result<Response, OpenAiError> {
    let prefix = if kind == Kind::Chat { "chatcmpl-" } else { "cmpl-" };
    let id = format!("{prefix}{}", request.request_id);
    let request_id = request.request_id.clone();
    let mut stream = state.scheduler.clone().complete(request).await?.into_inner();
    // The first event says who serves the request: it becomes the headers.
    let admitted = match stream.message().await? {
        Some(pb::CompleteEvent { event: Some(pb::complete_event::Event::Admitted(a)) }) => a,
        _ => return Err(OpenAiError::from(tonic::Status::internal("the scheduler answered out of order"))),
    };
    let class = class_from_pb("class", admitted.class).map_err(|e| {
        tracing::error!(error = %e, "the scheduler admitted a request in no class");
        OpenAiError::from(tonic::Status::internal("the scheduler's answer could not be read"))
    })?;
    let meta = Meta { id, created: chrono::Utc::now().timestamp(), model: model.to_owned(), class, kind };
    let mut response = if sampling.stream {
        let include_usage = sampling.stream_options.as_ref().is_some_and(|o| o.include_usage);
        stream_events(stream, meta.clone(), include_usage).into_response()
    } else {
        whole(&mut stream, &meta, sampling.logprobs.unwrap_or(false)).await?.into_response()
    };
    headers(&mut response, &meta, &admitted.worker_id, &request_id);
    Ok(response)
}

async fn whole(
    stream: &mut tonic::Streaming<pb::CompleteEvent>,
    meta: &Meta,
    want_logprobs: bool,
) -> Result<Json<Value>, OpenAiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(pb::complete_event::Event::Token(t)) => {
                text.push_str(&t.text);
                logprobs.extend(token_logprob(&t));
            }
            Some(pb::complete_event::Event::Finish(f)) => {
                text.push_str(&f.text);
                let reason = finish_reason(&f)?;
                let lp = want_logprobs
                    .then(|| serde_json::to_value(Logprobs { content: logprobs.clone() }).unwrap_or(Value::Null));
                let choice = match meta.kind {
                    Kind::Chat => {
                        json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": lp, "finish_reason": reason})
                    }
                    Kind::Text => json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": reason}),
                };
                let mut body = meta.envelope(false, json!([choice]));
                body["usage"] = serde_json::to_value(usage(&f.usage.unwrap_or_default())).unwrap_or(Value::Null);
                return Ok(Json(body));
            }
            _ => {}
        }
    }
    Err(OpenAiError::from(tonic::Status::unavailable("the stream ended before the completion finished")))
}

fn stream_events(
    mut stream: tonic::Streaming<pb::CompleteEvent>,
    meta: Meta,
    include_usage: bool,
) -> Sse<ReceiverStream<Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel(SSE_BUFFER);
    tokio::spawn(async move {
        let send = |value: Value| {
            let tx = tx.clone();
            async move { tx.send(Ok(Event::default().data(value.to_string()))).await.is_ok() }
        };
        let mut first = true;
        loop {
            let event = match stream.message().await {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(status) => {
                    let e = OpenAiError::from(status);
                    send(json!({"error": {"message": e.message, "type": e.kind, "param": null, "code": e.code}})).await;
                    break;
                }
            };
            match event.event {
                Some(pb::complete_event::Event::Token(t)) => {
                    let lp = token_logprob(&t).map(|l| json!({"content": [l]}));
                    if !send(meta.envelope(true, json!([meta.choice(&t.text, lp, None, first)]))).await {
                        return; // The client left: dropping the stream cancels the request.
                    }
                    first = false;
                }
                Some(pb::complete_event::Event::Finish(f)) => {
                    match finish_reason(&f) {
                        Ok(reason) => {
                            send(meta.envelope(true, json!([meta.choice(&f.text, None, Some(reason), first)]))).await;
                            if include_usage {
                                let mut chunk = meta.envelope(true, json!([]));
                                chunk["usage"] =
                                    serde_json::to_value(usage(&f.usage.unwrap_or_default())).unwrap_or(Value::Null);
                                send(chunk).await;
                            }
                        }
                        Err(e) => {
                            send(json!({"error": {"message": e.message, "type": e.kind, "param": null, "code": null}}))
                                .await;
                        }
                    }
                    break;
                }
                _ => {}
            }
        }
        let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
    });
    Sse::new(ReceiverStream::new(rx))
}
