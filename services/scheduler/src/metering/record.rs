//! A usage record, validated at the service edge.

use chrono::{DateTime, Utc};
use reservoir_domain::{ModelId, PriorityClass, TenantId};
use reservoir_proto::v1 as pb;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::error::MeteringError;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Shed,
    ClientCancelled,
    PlatformError,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Shed => "shed",
            Outcome::ClientCancelled => "client_cancelled",
            Outcome::PlatformError => "platform_error",
        }
    }

    fn parse(s: &str) -> Result<Self, MeteringError> {
        match s {
            "ok" => Ok(Outcome::Ok),
            "shed" => Ok(Outcome::Shed),
            "client_cancelled" => Ok(Outcome::ClientCancelled),
            "platform_error" => Ok(Outcome::PlatformError),
            other => Err(MeteringError::Invalid(format!(
                "outcome {other:?} is not one of: ok, shed, client_cancelled, platform_error"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub request_id: String,
    pub tenant: TenantId,
    pub contract: Option<Uuid>,
    pub model: ModelId,
    pub class: PriorityClass,
    pub outcome: Outcome,
    pub prompt_tokens: u32,
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
    pub weighted_tokens: Decimal,
    pub demand_weighted_tokens: Decimal,
    pub queue_ms: u32,
    pub ttft_ms: Option<u32>,
    pub total_ms: u32,
    pub worker_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Largest count a record may hold (the columns are 32-bit signed).
const COUNT_MAX: u32 = i32::MAX as u32;

fn instant(field: &str, t: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, MeteringError> {
    t.and_then(reservoir_proto::time::instant)
        .ok_or_else(|| MeteringError::Invalid(format!("{field} is required and must be a valid instant")))
}

fn decimal(field: &str, s: &str) -> Result<Decimal, MeteringError> {
    let value: Decimal =
        s.parse().map_err(|_| MeteringError::Invalid(format!("{field} must be a decimal string such as \"12.5\"")))?;
    if value.is_sign_negative() {
        return Err(MeteringError::Invalid(format!("{field} must not be negative")));
    }
    Ok(value)
}

impl TryFrom<&pb::UsageRecord> for UsageRecord {
    type Error = MeteringError;

    fn try_from(r: &pb::UsageRecord) -> Result<Self, MeteringError> {
        let invalid = |m: String| MeteringError::Invalid(m);
        if r.request_id.is_empty() || r.request_id.len() > 128 || r.request_id.chars().any(char::is_control) {
            return Err(invalid("request_id must be 1 to 128 printable characters".into()));
        }
        if r.worker_id.len() > 128 || r.worker_id.contains('\0') {
            return Err(invalid("worker_id must be at most 128 characters".into()));
        }
        let counts = [r.prompt_tokens, r.cached_prompt_tokens, r.completion_tokens, r.queue_ms, r.total_ms];
        if counts.iter().chain(r.ttft_ms.iter()).any(|c| *c > COUNT_MAX) {
            return Err(invalid(format!("token counts and durations must be at most {COUNT_MAX}")));
        }
        if r.cached_prompt_tokens > r.prompt_tokens {
            return Err(invalid("cached_prompt_tokens cannot exceed prompt_tokens".into()));
        }
        let class: PriorityClass = r.class.parse().map_err(|e| invalid(format!("{e}")))?;
        let contract = if r.contract_id.is_empty() {
            None
        } else {
            Some(Uuid::parse_str(&r.contract_id).map_err(|_| invalid("contract_id must be a UUID".into()))?)
        };
        if contract.is_none() && class != PriorityClass::Spot {
            return Err(invalid(format!("a {class} request needs its contract_id")));
        }
        let started_at = instant("started_at", r.started_at.as_ref())?;
        let finished_at = instant("finished_at", r.finished_at.as_ref())?;
        if finished_at < started_at {
            return Err(invalid("finished_at is before started_at".into()));
        }
        Ok(UsageRecord {
            request_id: r.request_id.clone(),
            tenant: r.tenant_id.parse().map_err(|e| invalid(format!("{e}")))?,
            contract,
            model: r.model.parse().map_err(|e| invalid(format!("{e}")))?,
            class,
            outcome: Outcome::parse(&r.outcome)?,
            prompt_tokens: r.prompt_tokens,
            cached_prompt_tokens: r.cached_prompt_tokens,
            completion_tokens: r.completion_tokens,
            weighted_tokens: decimal("weighted_tokens", &r.weighted_tokens)?,
            demand_weighted_tokens: decimal("demand_weighted_tokens", &r.demand_weighted_tokens)?,
            queue_ms: r.queue_ms,
            ttft_ms: r.ttft_ms,
            total_ms: r.total_ms,
            worker_id: r.worker_id.clone(),
            started_at,
            finished_at,
        })
    }
}
