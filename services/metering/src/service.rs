//! The gRPC face of metering.

use chrono::{DateTime, Utc};
use prost::Message;
use reservoir_domain::{PriorityClass, UsageRecord};
use reservoir_proto::time::{instant, timestamp};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::metering_service_server::MeteringService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::convert::record_from_pb;
use crate::error::MeteringError;
use crate::store::{self, Stored, TtftTarget};

/// Most records one RecordUsage call carries.
pub const RECORDS_PER_CALL_MAX: usize = 10_000;
/// Longest window UsageWindows groups by.
pub const WINDOW_S_MAX: u32 = 86_400;
const WINDOW_S_DEFAULT: u32 = 300;

#[derive(Debug, Clone)]
pub struct Metering {
    pub pool: PgPool,
}

fn span(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), MeteringError> {
    let from = from.and_then(instant).ok_or_else(|| MeteringError::Invalid("from is required".into()))?;
    let to = to.and_then(instant).ok_or_else(|| MeteringError::Invalid("to is required".into()))?;
    if to <= from {
        return Err(MeteringError::Invalid("to must be after from".into()));
    }
    Ok((from, to))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn result(request_id: &str, status: pb::RecordStatus, reason: String) -> pb::RecordResult {
    pb::RecordResult { request_id: request_id.to_owned(), status: status.into(), reason }
}

#[tonic::async_trait]
impl MeteringService for Metering {
    async fn record_usage(
        &self,
        req: Request<pb::RecordUsageRequest>,
    ) -> Result<Response<pb::RecordUsageResponse>, Status> {
        let wire = &req.get_ref().records;
        if wire.len() > RECORDS_PER_CALL_MAX {
            return Err(MeteringError::Invalid(format!("at most {RECORDS_PER_CALL_MAX} records per call")).into());
        }
        // Invalid records are answered (and set aside) one by one; the valid
        // ones go to the database together.
        let mut results: Vec<Option<pb::RecordResult>> = vec![None; wire.len()];
        // The valid records and, beside them, where each stood in the call.
        let mut records: Vec<UsageRecord> = Vec::with_capacity(wire.len());
        let mut positions: Vec<usize> = Vec::with_capacity(wire.len());
        for (i, r) in wire.iter().enumerate() {
            match record_from_pb(r) {
                Ok(record) => {
                    records.push(record);
                    positions.push(i);
                }
                Err(e) => {
                    let reason = e.to_string();
                    store::set_aside(&self.pool, &r.request_id, &reason, &r.encode_to_vec()).await?;
                    tracing::warn!(request_id = %r.request_id.escape_debug(), %reason, "usage record rejected");
                    results[i] = Some(result(&r.request_id, pb::RecordStatus::Rejected, reason));
                }
            }
        }
        let stored = store::insert(&self.pool, &records).await?;
        for ((i, record), outcome) in positions.iter().zip(&records).zip(stored) {
            let answer = match outcome {
                Stored::New => result(&record.request_id, pb::RecordStatus::Stored, String::new()),
                Stored::Duplicate => result(&record.request_id, pb::RecordStatus::Duplicate, String::new()),
                Stored::Rejected(reason) => {
                    store::set_aside(&self.pool, &record.request_id, &reason, &wire[*i].encode_to_vec()).await?;
                    tracing::warn!(request_id = %record.request_id, %reason, "usage record refused by the database");
                    result(&record.request_id, pb::RecordStatus::Rejected, reason)
                }
            };
            results[*i] = Some(answer);
        }
        let results = results.into_iter().flatten().collect();
        Ok(Response::new(pb::RecordUsageResponse { results }))
    }

    async fn usage_totals(
        &self,
        req: Request<pb::UsageTotalsRequest>,
    ) -> Result<Response<pb::UsageTotalsResponse>, Status> {
        let r = req.get_ref();
        let (from, to) = span(r.from.as_ref(), r.to.as_ref())?;
        let tenant = Some(r.tenant_id.as_str()).filter(|t| !t.is_empty());
        let totals = store::totals(&self.pool, tenant, from, to, r.by_day)
            .await?
            .into_iter()
            .map(|t| {
                let class = t
                    .class
                    .parse::<PriorityClass>()
                    .map(pb::PriorityClass::from)
                    .unwrap_or(pb::PriorityClass::Unspecified);
                pb::UsageTotal {
                    tenant_id: t.tenant_id,
                    contract_id: t.contract_id.map(|c| c.to_string()).unwrap_or_default(),
                    class: class.into(),
                    model: t.model_id,
                    requests: count(t.requests),
                    prompt_tokens: count(t.prompt_tokens),
                    cached_prompt_tokens: count(t.cached_prompt_tokens),
                    completion_tokens: count(t.completion_tokens),
                    weighted_tokens: t.weighted_tokens.to_string(),
                    day: t.day.map(timestamp),
                    catalog_version: u32::try_from(t.catalog_version).unwrap_or(0),
                    ok_requests: count(t.ok_requests),
                    shed_requests: count(t.shed_requests),
                    client_cancelled_requests: count(t.client_cancelled_requests),
                    platform_error_requests: count(t.platform_error_requests),
                    interrupted_requests: count(t.interrupted_requests),
                    billable_weighted_tokens: t.billable_weighted_tokens.to_string(),
                }
            })
            .collect();
        Ok(Response::new(pb::UsageTotalsResponse { totals }))
    }

    async fn usage_windows(
        &self,
        req: Request<pb::UsageWindowsRequest>,
    ) -> Result<Response<pb::UsageWindowsResponse>, Status> {
        let r = req.get_ref();
        let (from, to) = span(r.from.as_ref(), r.to.as_ref())?;
        let window_s = if r.window_s == 0 { WINDOW_S_DEFAULT } else { r.window_s };
        if window_s > WINDOW_S_MAX {
            return Err(MeteringError::Invalid(format!("window_s must be at most {WINDOW_S_MAX}")).into());
        }
        let contract = if r.contract_id.is_empty() {
            None
        } else {
            Some(
                uuid::Uuid::parse_str(&r.contract_id)
                    .map_err(|_| MeteringError::Invalid("contract_id must be a UUID".into()))?,
            )
        };
        let target = r
            .ttft_target
            .as_ref()
            .map(|t| TtftTarget { base_ms: t.base_ms, prefill_tokens_per_s: t.prefill_tokens_per_s });
        let recorded_since = r
            .recorded_since
            .as_ref()
            .map(|t| instant(t).ok_or_else(|| MeteringError::Invalid("recorded_since is not a valid instant".into())))
            .transpose()?;
        let query = store::WindowQuery { contract, from, to, window_s, target, recorded_since };
        let windows = store::windows(&self.pool, &query)
            .await?
            .into_iter()
            .map(|w| pb::UsageWindow {
                contract_id: w.contract_id.to_string(),
                window_start: Some(timestamp(w.window_start)),
                eligible_requests: count(w.eligible_requests),
                platform_errors: count(w.platform_errors),
                ttft_ms_p50: w.ttft_ms_p50.and_then(|t| u32::try_from(t).ok()),
                ttft_ms_p95: w.ttft_ms_p95.and_then(|t| u32::try_from(t).ok()),
                ttft_missed: count(w.ttft_missed),
                decode_tokens_per_s_median: w.decode_tokens_per_s_median.map(|d| d.to_string()).unwrap_or_default(),
                demand_weighted_tokens: w.demand_weighted_tokens.to_string(),
                delivered_weighted_tokens: w.delivered_weighted_tokens.to_string(),
            })
            .collect();
        Ok(Response::new(pb::UsageWindowsResponse { windows }))
    }

    async fn usage_series(
        &self,
        req: Request<pb::UsageSeriesRequest>,
    ) -> Result<Response<pb::UsageSeriesResponse>, Status> {
        let r = req.get_ref();
        let (from, to) = span(r.from.as_ref(), r.to.as_ref())?;
        if !(SERIES_BUCKET_S_MIN..=SERIES_BUCKET_S_MAX).contains(&r.bucket_s) || !r.bucket_s.is_multiple_of(3600) {
            return Err(MeteringError::Invalid(format!(
                "bucket_s must be whole hours from {SERIES_BUCKET_S_MIN} to {SERIES_BUCKET_S_MAX}"
            ))
            .into());
        }
        if (to - from).num_seconds() / i64::from(r.bucket_s) > SERIES_BUCKETS_MAX {
            return Err(MeteringError::Invalid(format!("at most {SERIES_BUCKETS_MAX} buckets")).into());
        }
        if r.model.is_empty() {
            return Err(MeteringError::Invalid("model is required".into()).into());
        }
        let buckets = store::series(&self.pool, &r.model, from, to, r.bucket_s)
            .await?
            .into_iter()
            .map(|b| pb::UsageBucket {
                start: Some(timestamp(b.start)),
                requests: count(b.requests),
                weighted_tokens: b.weighted_tokens.to_string(),
                reserved_weighted_tokens: b.reserved_weighted_tokens.to_string(),
            })
            .collect();
        Ok(Response::new(pb::UsageSeriesResponse { buckets }))
    }
}

/// Bounds of a usage series: whole hours (the rollup's grain) up to a day
/// per bucket, and few enough buckets that one answer stays small.
const SERIES_BUCKET_S_MIN: u32 = 3_600;
const SERIES_BUCKET_S_MAX: u32 = 86_400;
const SERIES_BUCKETS_MAX: i64 = 2_000;
