//! One request of the trace, as a tenant's client sends it: a streamed
//! `/v1/chat/completions` through the gateway, read chunk by chunk, timed
//! at the first token, cut when the phase ends (spot) or the straggler wait
//! does (reserved).

use std::ops::Range;
use std::time::Instant;

use reservoir_workload::report::Observed;
use serde_json::{Value, json};

/// What one request is: its messages, what the platform counts of its
/// prompt, and its limits.
#[derive(Clone)]
pub struct Call {
    pub reserved: bool,
    pub token: String,
    pub body: Value,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub ttft_target_ms: f64,
}

/// The chat body of a trace request. EOS is banned through `logit_bias`,
/// so each request generates exactly its `max_tokens` and the load offered
/// is the load planned; greedy, so sampling costs nothing extra.
pub fn body(model: &str, system: &str, prompt: &str, max_tokens: u32, banned: &[u32], spot: bool) -> Value {
    let bias: serde_json::Map<String, Value> = banned.iter().map(|id| (id.to_string(), json!(-100))).collect();
    let mut body = json!({
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "logit_bias": bias,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if spot {
        body["service_tier"] = json!("flex");
    }
    body
}

/// Sends `call` to `url` and reads it until it ends or `cut_at`; tokens
/// within `window` are counted apart, and a request sent before it is
/// warm-up.
pub async fn run(http: &reqwest::Client, url: &str, call: Call, window: Range<Instant>, cut_at: Instant) -> Observed {
    let mut seen = Observed {
        warm_up: Instant::now() < window.start,
        reserved: call.reserved,
        prompt_tokens: call.prompt_tokens,
        max_tokens: call.max_tokens,
        ttft_target_ms: call.ttft_target_ms,
        sent_at: Some(Instant::now()),
        ..Observed::default()
    };
    let sent = Instant::now();
    let read = async {
        let response = match http.post(url).bearer_auth(&call.token).json(&call.body).send().await {
            Ok(r) if r.status().is_success() => r,
            // 429 (queue full or timed out), 503 (deadline passed): shed.
            _ => {
                seen.shed = true;
                return;
            }
        };
        seen.served_as = response.headers().get("x-reservoir-class").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut response = response;
        let mut buffer = String::new();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => return,
                Err(_) => {
                    seen.shed = true;
                    return;
                }
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            // Server-sent events end with a blank line.
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    if data == "[DONE]" {
                        return;
                    }
                    observe(&mut seen, data, sent, &window);
                }
            }
        }
    };
    // Cut: the client leaves; what arrived is counted.
    let _ = tokio::time::timeout(cut_at.saturating_duration_since(Instant::now()), read).await;
    seen
}

fn observe(seen: &mut Observed, data: &str, sent: Instant, window: &Range<Instant>) {
    let Ok(event) = serde_json::from_str::<Value>(data) else { return };
    if event.get("error").is_some() {
        seen.shed = true;
        return;
    }
    if let Some(usage) = event.get("usage").filter(|u| u.is_object()) {
        let count = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        if let Some(p) = count(&usage["prompt_tokens"]) {
            seen.prompt_tokens = p;
        }
        seen.cached_prompt_tokens = count(&usage["prompt_tokens_details"]["cached_tokens"]).unwrap_or(0);
        if let Some(c) = count(&usage["completion_tokens"]) {
            seen.completion_tokens = seen.completion_tokens.max(c);
        }
    }
    let Some(choice) = event["choices"].get(0) else { return };
    if !choice["finish_reason"].is_null() {
        seen.finished = true;
        return;
    }
    // One chunk per generated token.
    let now = Instant::now();
    if seen.ttft_ms.is_none() {
        seen.ttft_ms = Some(now.duration_since(sent).as_secs_f64() * 1e3);
        seen.first_token_in_window = window.contains(&now);
    }
    seen.last_token_ms = Some(now.duration_since(sent).as_secs_f64() * 1e3);
    seen.completion_tokens += 1;
    if window.contains(&now) {
        seen.completion_tokens_in_window += 1;
    }
}
