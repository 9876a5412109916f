//! The gRPC face of metering.

use chrono::{DateTime, Utc};
use reservoir_proto::time::{instant, timestamp};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::metering_service_server::MeteringService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::record::UsageRecord;
use super::store;
use crate::error::MeteringError;

/// Most records one RecordUsage call carries.
pub const RECORDS_PER_CALL_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Metering {
    pub pool: PgPool,
}

fn window(
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

#[tonic::async_trait]
impl MeteringService for Metering {
    async fn record_usage(
        &self,
        req: Request<pb::RecordUsageRequest>,
    ) -> Result<Response<pb::RecordUsageResponse>, Status> {
        let records = &req.get_ref().records;
        if records.len() > RECORDS_PER_CALL_MAX {
            return Err(MeteringError::Invalid(format!("at most {RECORDS_PER_CALL_MAX} records per call")).into());
        }
        let records = records.iter().map(UsageRecord::try_from).collect::<Result<Vec<_>, _>>()?;
        let inserted = store::insert(&self.pool, &records).await?;
        Ok(Response::new(pb::RecordUsageResponse { inserted: u32::try_from(inserted).unwrap_or(u32::MAX) }))
    }

    async fn usage_totals(
        &self,
        req: Request<pb::UsageTotalsRequest>,
    ) -> Result<Response<pb::UsageTotalsResponse>, Status> {
        let r = req.get_ref();
        let (from, to) = window(r.from.as_ref(), r.to.as_ref())?;
        let tenant = Some(r.tenant_id.as_str()).filter(|t| !t.is_empty());
        let totals = store::totals(&self.pool, tenant, from, to, r.by_day)
            .await?
            .into_iter()
            .map(|t| pb::UsageTotal {
                tenant_id: t.tenant_id,
                contract_id: t.contract_id.map(|c| c.to_string()).unwrap_or_default(),
                class: t.class,
                model: t.model_id,
                requests: u64::try_from(t.requests).unwrap_or(0),
                prompt_tokens: u64::try_from(t.prompt_tokens).unwrap_or(0),
                cached_prompt_tokens: u64::try_from(t.cached_prompt_tokens).unwrap_or(0),
                completion_tokens: u64::try_from(t.completion_tokens).unwrap_or(0),
                weighted_tokens: t.weighted_tokens.to_string(),
                day: t.day.map(timestamp),
            })
            .collect();
        Ok(Response::new(pb::UsageTotalsResponse { totals }))
    }

    async fn usage_windows(
        &self,
        req: Request<pb::UsageWindowsRequest>,
    ) -> Result<Response<pb::UsageWindowsResponse>, Status> {
        let r = req.get_ref();
        let (from, to) = window(r.from.as_ref(), r.to.as_ref())?;
        let contract = if r.contract_id.is_empty() {
            None
        } else {
            Some(
                uuid::Uuid::parse_str(&r.contract_id)
                    .map_err(|_| MeteringError::Invalid("contract_id must be a UUID".into()))?,
            )
        };
        let windows = store::windows(&self.pool, contract, from, to)
            .await?
            .into_iter()
            .map(|w| pb::UsageWindow {
                contract_id: w.contract_id.to_string(),
                window_start: Some(timestamp(w.window_start)),
                eligible_requests: u64::try_from(w.eligible_requests).unwrap_or(0),
                platform_errors: u64::try_from(w.platform_errors).unwrap_or(0),
                ttft_ms_p95: w.ttft_ms_p95.and_then(|t| u32::try_from(t).ok()),
                demand_weighted_tokens: w.demand_weighted_tokens.to_string(),
                delivered_weighted_tokens: w.delivered_weighted_tokens.to_string(),
            })
            .collect();
        Ok(Response::new(pb::UsageWindowsResponse { windows }))
    }
}
