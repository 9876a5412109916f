//! Usage for billing tests: burst and spot records written straight into
//! metering, so a test decides each month's quantities.

use chrono::{DateTime, Duration, Utc};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;

use crate::MODEL;

/// One finished request of `class` with `weighted` weighted tokens (all
/// completion tokens, weight 1), finished at `at`.
pub fn usage(
    id: &str,
    tenant: &str,
    contract: &str,
    class: pb::PriorityClass,
    weighted: u32,
    at: DateTime<Utc>,
) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: id.into(),
        tenant_id: tenant.into(),
        contract_id: contract.into(),
        model: MODEL.into(),
        class: class.into(),
        outcome: pb::Outcome::Ok.into(),
        prompt_tokens: 0,
        cached_prompt_tokens: 0,
        completion_tokens: weighted,
        weighted_tokens: weighted.to_string(),
        demand_weighted_tokens: weighted.to_string(),
        queue_ms: 1,
        ttft_ms: Some(100),
        total_ms: 1_000,
        worker_id: "w1".into(),
        started_at: Some(timestamp(at - Duration::seconds(1))),
        finished_at: Some(timestamp(at)),
        catalog_version: 1,
    }
}

pub async fn record(
    metering: &mut MeteringServiceClient<reservoir_runtime::InternalChannel>,
    records: Vec<pb::UsageRecord>,
) {
    let answer = metering.record_usage(pb::RecordUsageRequest { records }).await.expect("recorded").into_inner();
    assert!(
        answer.results.iter().all(|r| r.status() == pb::RecordStatus::Stored),
        "every record stored: {:?}",
        answer.results
    );
}
