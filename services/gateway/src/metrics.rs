//! Prometheus metrics of the gateway at `/metrics`: requests by route and
//! status, their latency, and inference requests by the class that served them.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

pub struct GatewayMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency_seconds: HistogramVec,
    served_by_class: IntCounterVec,
}

impl GatewayMetrics {
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new_custom(Some("reservoir_gateway".into()), None)?;
        let requests =
            IntCounterVec::new(Opts::new("requests_total", "HTTP requests by route and status"), &["route", "status"])?;
        let latency_seconds = HistogramVec::new(
            HistogramOpts::new("request_seconds", "HTTP request latency (to the response head) by route"),
            &["route"],
        )?;
        let served_by_class = IntCounterVec::new(
            Opts::new("inference_requests_total", "Inference requests by the class that served them"),
            &["class"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency_seconds.clone()))?;
        registry.register(Box::new(served_by_class.clone()))?;
        Ok(Arc::new(GatewayMetrics { registry, requests, latency_seconds, served_by_class }))
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Counts every request under its route template (never the raw path, so
/// ids do not explode the label set).
pub async fn track(State(metrics): State<Arc<GatewayMetrics>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.latency_seconds.with_label_values(&[route.as_str()]).observe(started.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&[route.as_str(), response.status().as_str()]).inc();
    if let Some(class) = response.headers().get("x-reservoir-class").and_then(|v| v.to_str().ok()) {
        metrics.served_by_class.with_label_values(&[class]).inc();
    }
    response
}
