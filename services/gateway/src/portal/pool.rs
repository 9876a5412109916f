//! One model's pool as the operator pages show it: capacity, what is on
//! sale, what is reserved and what is used, now and over a span (the last
//! 24 hours by the hour, the last 30 days by the day), as a chart with a
//! table of the same figures.

use axum::response::Response;
use chrono::{DateTime, Duration, DurationRound, Utc};
use reservoir_proto::time::{instant, timestamp};
use reservoir_proto::v1 as pb;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::api::Model;
use crate::portal::page::service_refusal;
use crate::state::AppState;

/// A span of a pool chart: how far back, and the bucket.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub title: &'static str,
    pub back: Duration,
    pub bucket: Duration,
}

pub const LAST_DAY: Span = Span { title: "last 24 hours", back: Duration::hours(24), bucket: Duration::hours(1) };
pub const LAST_MONTH: Span = Span { title: "last 30 days", back: Duration::days(30), bucket: Duration::days(1) };

/// One bucket of a span: reserved is the most held at any instant of it
/// (as the contracts service computes it), used the bucket's average rate.
pub struct Point {
    pub start: DateTime<Utc>,
    pub reserved: u32,
    pub used: u64,
}

pub struct Chart {
    pub title: String,
    pub svg: String,
    pub points: Vec<Point>,
}

pub struct PoolView {
    pub model: Model,
    pub reserved_now: u32,
    pub free_now: u32,
    /// Average weighted tokens/s over the hour so far.
    pub used_now: u64,
    pub charts: Vec<Chart>,
}

fn rate(weighted: &str, seconds: i64) -> u64 {
    let total: Decimal = weighted.parse().unwrap_or_default();
    (total / Decimal::from(seconds.max(1))).round().to_u64().unwrap_or(0)
}

async fn chart(state: &AppState, model: &Model, span: Span, now: DateTime<Utc>) -> Result<Chart, tonic::Status> {
    let to = now.duration_trunc(span.bucket).map(|t| t + span.bucket).unwrap_or(now);
    let from = to - span.back;
    let (mut contracts, mut metering) = (state.contracts.clone(), state.metering.clone());
    let bucket_s = u32::try_from(span.bucket.num_seconds()).unwrap_or(86_400);
    let capacity = contracts.get_capacity(pb::GetCapacityRequest {
        model: model.id.clone(),
        from: Some(timestamp(from)),
        to: Some(timestamp(to)),
        bucket_s: Some(bucket_s),
    });
    let usage = metering.usage_series(pb::UsageSeriesRequest {
        model: model.id.clone(),
        from: Some(timestamp(from)),
        to: Some(timestamp(to)),
        bucket_s,
    });
    let (capacity, usage) = tokio::join!(capacity, usage);
    let steps = capacity?.into_inner().steps;
    let buckets = usage?.into_inner().buckets;
    // Both answers come in the same buckets from `from`: the contracts
    // service's one step per bucket (its peak), metering's only where used.
    let points: Vec<Point> = steps
        .iter()
        .filter_map(|step| {
            let start = step.from.as_ref().and_then(instant)?;
            let end = step.to.as_ref().and_then(instant).unwrap_or(to);
            let used = buckets
                .iter()
                .find(|b| b.start.as_ref().and_then(instant) == Some(start))
                // The bucket now running is averaged over its elapsed part.
                .map_or(0, |b| rate(&b.weighted_tokens, (end.min(now) - start).num_seconds()));
            Some(Point { start, reserved: step.reserved_tokens_per_s, used })
        })
        .collect();
    let series = vec![
        reservoir_charts::Series { label: "capacity".into(), values: vec![(from, f64::from(model.capacity))] },
        reservoir_charts::Series { label: "sellable".into(), values: vec![(from, f64::from(model.sellable))] },
        reservoir_charts::Series {
            label: "reserved".into(),
            values: points.iter().map(|p| (p.start, f64::from(p.reserved))).collect(),
        },
        reservoir_charts::Series {
            label: "used".into(),
            values: points.iter().map(|p| (p.start, p.used as f64)).collect(),
        },
    ];
    let title = format!("{}, {}", model.id, span.title);
    let svg = reservoir_charts::steps_over_time(&title, "weighted tokens/s", (from, to), &series).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "pool chart");
        String::new()
    });
    Ok(Chart { title, svg, points })
}

/// Every model's pool, with the charts of `spans`.
pub async fn gather(state: &AppState, spans: &[Span]) -> Result<Vec<PoolView>, Response> {
    let models = state.contracts.clone().list_models(pb::ListModelsRequest {}).await.map_err(service_refusal)?;
    let now = Utc::now();
    let mut pools = Vec::new();
    for model in models.into_inner().models.into_iter().map(Model::from) {
        // The spans' calls run at once: the page waits for the slowest only.
        let charts = futures_util::future::try_join_all(spans.iter().map(|span| chart(state, &model, *span, now)))
            .await
            .map_err(service_refusal)?;
        let current = charts.first().and_then(|c| c.points.last());
        let reserved_now = current.map_or(0, |p| p.reserved);
        let used_now = current.map_or(0, |p| p.used);
        pools.push(PoolView {
            free_now: model.sellable.saturating_sub(reserved_now),
            reserved_now,
            used_now,
            model,
            charts,
        });
    }
    Ok(pools)
}
