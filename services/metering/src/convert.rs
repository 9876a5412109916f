//! Proto <-> domain at the metering edge: a wire record becomes a
//! `UsageRecord` (validated once, here) and back.

use chrono::{DateTime, Utc};
use reservoir_domain::UsageRecord;
use reservoir_proto::enums::{class_from_pb, outcome_from_pb};
use reservoir_proto::time::{instant, timestamp};
use reservoir_proto::v1 as pb;
use rust_decimal::Decimal;

use crate::error::MeteringError;

fn required_instant(field: &str, t: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, MeteringError> {
    t.and_then(instant)
        .ok_or_else(|| MeteringError::Invalid(format!("{field} is required and must be a valid instant")))
}

fn decimal(field: &str, s: &str) -> Result<Decimal, MeteringError> {
    s.parse().map_err(|_| MeteringError::Invalid(format!("{field} must be a decimal string such as \"12.5\"")))
}

/// A wire record as a validated `UsageRecord`.
pub fn record_from_pb(r: &pb::UsageRecord) -> Result<UsageRecord, MeteringError> {
    {
        let invalid = |m: String| MeteringError::Invalid(m);
        let contract = if r.contract_id.is_empty() {
            None
        } else {
            Some(uuid::Uuid::parse_str(&r.contract_id).map_err(|_| invalid("contract_id must be a UUID".into()))?)
        };
        let record = UsageRecord {
            request_id: r.request_id.clone(),
            tenant: r.tenant_id.parse().map_err(|e| invalid(format!("{e}")))?,
            contract,
            model: r.model.parse().map_err(|e| invalid(format!("{e}")))?,
            class: class_from_pb("class", r.class).map_err(|e| invalid(e.to_string()))?,
            outcome: outcome_from_pb("outcome", r.outcome).map_err(|e| invalid(e.to_string()))?,
            prompt_tokens: r.prompt_tokens,
            cached_prompt_tokens: r.cached_prompt_tokens,
            completion_tokens: r.completion_tokens,
            weighted_tokens: decimal("weighted_tokens", &r.weighted_tokens)?,
            demand_weighted_tokens: decimal("demand_weighted_tokens", &r.demand_weighted_tokens)?,
            queue_ms: r.queue_ms,
            ttft_ms: r.ttft_ms,
            total_ms: r.total_ms,
            worker_id: r.worker_id.clone(),
            started_at: required_instant("started_at", r.started_at.as_ref())?,
            finished_at: required_instant("finished_at", r.finished_at.as_ref())?,
            catalog_version: r.catalog_version,
        };
        record.validate().map_err(|e| invalid(e.to_string()))?;
        Ok(record)
    }
}

/// The wire form of a record (what the scheduler spools and sends).
pub fn record_to_pb(r: &UsageRecord) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: r.request_id.clone(),
        tenant_id: r.tenant.to_string(),
        contract_id: r.contract.map(|c| c.to_string()).unwrap_or_default(),
        model: r.model.to_string(),
        class: pb::PriorityClass::from(r.class).into(),
        outcome: pb::Outcome::from(r.outcome).into(),
        prompt_tokens: r.prompt_tokens,
        cached_prompt_tokens: r.cached_prompt_tokens,
        completion_tokens: r.completion_tokens,
        weighted_tokens: r.weighted_tokens.to_string(),
        demand_weighted_tokens: r.demand_weighted_tokens.to_string(),
        queue_ms: r.queue_ms,
        ttft_ms: r.ttft_ms,
        total_ms: r.total_ms,
        worker_id: r.worker_id.clone(),
        started_at: Some(timestamp(r.started_at)),
        finished_at: Some(timestamp(r.finished_at)),
        catalog_version: r.catalog_version,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use reservoir_domain::{Outcome, PriorityClass};

    use super::*;

    fn sample() -> UsageRecord {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        UsageRecord {
            request_id: "req-1".into(),
            tenant: "acme".parse().unwrap(),
            contract: Some(uuid::Uuid::nil()),
            model: "smollm2-135m-instruct".parse().unwrap(),
            class: PriorityClass::Reserved,
            outcome: Outcome::ClientCancelled,
            prompt_tokens: 120,
            cached_prompt_tokens: 32,
            completion_tokens: 7,
            weighted_tokens: "103".parse().unwrap(),
            demand_weighted_tokens: "103".parse().unwrap(),
            queue_ms: 2,
            ttft_ms: Some(40),
            total_ms: 90,
            worker_id: "w1".into(),
            started_at: start,
            finished_at: start + chrono::Duration::milliseconds(90),
            catalog_version: 3,
        }
    }

    #[test]
    fn a_record_survives_the_wire_unchanged() {
        let record = sample();
        assert_eq!(record_from_pb(&record_to_pb(&record)).unwrap(), record);
    }

    #[test]
    fn bad_records_are_refused_with_the_reason() {
        let mut wire = record_to_pb(&sample());
        wire.class = 0;
        assert!(record_from_pb(&wire).unwrap_err().to_string().contains("class"));
        let mut wire = record_to_pb(&sample());
        wire.request_id = "has space".into();
        assert!(record_from_pb(&wire).unwrap_err().to_string().contains("request_id"));
        let mut wire = record_to_pb(&sample());
        wire.cached_prompt_tokens = 500;
        assert!(record_from_pb(&wire).unwrap_err().to_string().contains("cached"));
        let mut wire = record_to_pb(&sample());
        wire.contract_id.clear();
        assert!(record_from_pb(&wire).unwrap_err().to_string().contains("contract"));
    }
}
