//! Streamed answers: server-sent events of `chat.completion.chunk` (or
//! `text_completion`) objects, one per token of any choice (each chunk names
//! its choice's `index`), a finishing chunk per choice, the usage chunk
//! (summed over the choices) when asked for, then `data: [DONE]`.

use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use reservoir_proto::v1 as pb;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::ReceiverStream;

use super::error::OpenAiError;
use super::logprobs::Collector;
use super::respond::{Kind, Meta, finish_reason, usage_value};

/// Server-sent events buffered between the scheduler streams and the client.
const SSE_BUFFER: usize = 64;

/// A choice's place in the stream.
struct Choice {
    /// No chunk sent yet (the first names the role).
    first: bool,
    logprobs: Collector,
}

fn chunk_choice(meta: &Meta, index: usize, text: &str, logprobs: Value, finish: Option<&str>, first: bool) -> Value {
    match meta.kind {
        Kind::Chat => {
            let delta = if first { json!({"role": "assistant", "content": text}) } else { json!({"content": text}) };
            json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
        }
        Kind::Text => json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}),
    }
}

fn error_event(e: &OpenAiError) -> Value {
    let mut body = e.body();
    // No field is at fault once the stream has started.
    body.error.param = None;
    serde_json::to_value(body).unwrap_or(Value::Null)
}

pub fn events(
    streams: Vec<tonic::Streaming<pb::CompleteEvent>>,
    meta: Meta,
    include_usage: bool,
) -> Sse<ReceiverStream<Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel(SSE_BUFFER);
    let mut choices: Vec<Choice> =
        (0..streams.len()).map(|_| Choice { first: true, logprobs: Collector::new(meta.kind) }).collect();
    let mut merged: StreamMap<usize, tonic::Streaming<pb::CompleteEvent>> = streams.into_iter().enumerate().collect();
    tokio::spawn(async move {
        let send = |value: Value| {
            let tx = tx.clone();
            async move { tx.send(Ok(Event::default().data(value.to_string()))).await.is_ok() }
        };
        let mut usages = Vec::with_capacity(choices.len());
        // Dropping `merged` (on return or break) cancels the choices still running.
        loop {
            // A client that leaves is noticed when it does (the server drops
            // the response body), not at the next token: a prompt still being
            // prefilled stops there, and no token is computed for nobody.
            let next = tokio::select! {
                next = merged.next() => next,
                _ = tx.closed() => return,
            };
            let Some((index, item)) = next else { break };
            let Some(choice) = choices.get_mut(index) else { continue };
            let event = match item {
                Ok(e) => e,
                Err(status) => {
                    send(error_event(&OpenAiError::from(status))).await;
                    break;
                }
            };
            match event.event {
                Some(pb::complete_event::Event::Token(t)) => {
                    choice.logprobs.push(&t);
                    let lp = if t.logprob.is_some() { choice.logprobs.take() } else { Value::Null };
                    let c = chunk_choice(&meta, index, &t.text, lp, None, choice.first);
                    if !send(meta.envelope(true, json!([c]))).await {
                        return; // The client left.
                    }
                    choice.first = false;
                }
                Some(pb::complete_event::Event::Finish(f)) => match finish_reason(&f) {
                    Ok(reason) => {
                        let c = chunk_choice(&meta, index, &f.text, Value::Null, Some(reason), choice.first);
                        send(meta.envelope(true, json!([c]))).await;
                        usages.push(f.usage.unwrap_or_default());
                        merged.remove(&index);
                    }
                    Err(e) => {
                        send(error_event(&e)).await;
                        break;
                    }
                },
                _ => {}
            }
        }
        // Every choice finished (a failure broke out above without one).
        if usages.len() == choices.len() && include_usage {
            let mut chunk = meta.envelope(true, json!([]));
            chunk["usage"] = usage_value(&usages);
            send(chunk).await;
        }
        let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
    });
    Sse::new(ReceiverStream::new(rx))
}
