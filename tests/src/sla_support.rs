//! Usage and contracts for SLA tests: records written straight into
//! metering (so a test decides each window's figures), and month contracts.

use chrono::{DateTime, Duration, Utc};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;

use crate::MODEL;

/// The SLA's default window, seconds.
pub const WINDOW: i64 = 300;

pub fn record(id: String, tenant: &str, contract: &str, failed: bool, start: DateTime<Utc>) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: id,
        tenant_id: tenant.into(),
        contract_id: contract.into(),
        model: MODEL.into(),
        class: pb::PriorityClass::Reserved.into(),
        outcome: if failed { pb::Outcome::PlatformError } else { pb::Outcome::Ok }.into(),
        prompt_tokens: 100,
        cached_prompt_tokens: 0,
        completion_tokens: if failed { 0 } else { 20 },
        weighted_tokens: if failed { "0" } else { "45" }.into(),
        demand_weighted_tokens: "45".into(),
        queue_ms: 3,
        ttft_ms: if failed { None } else { Some(120) },
        total_ms: 1_120,
        worker_id: "w1".into(),
        started_at: Some(timestamp(start)),
        finished_at: Some(timestamp(start + Duration::milliseconds(1_120))),
        catalog_version: 1,
    }
}

/// Ten requests in the window starting at `start`, `failed` of them failed.
pub fn window_of(tenant: &str, contract: &str, start: DateTime<Utc>, failed: usize) -> Vec<pb::UsageRecord> {
    (0..10)
        .map(|i| {
            let at = start + Duration::seconds(10 * i as i64);
            record(format!("{contract}-{}-{i}", start.timestamp()), tenant, contract, i < failed, at)
        })
        .collect()
}

pub async fn reserve(
    contracts: &mut ContractServiceClient<reservoir_runtime::InternalChannel>,
    tenant: &str,
    tier: pb::Tier,
    starts: DateTime<Utc>,
) -> pb::Reservation {
    contracts.ensure_tenant(pb::EnsureTenantRequest { id: tenant.into() }).await.expect("tenant");
    let order = pb::QuoteRequest {
        tenant_id: tenant.into(),
        model: MODEL.into(),
        rate_tokens_per_s: 10,
        tier: tier.into(),
        term: pb::Term::Month.into(),
        starts_at: Some(timestamp(starts)),
        ends_at: None,
    };
    let request =
        pb::CreateReservationRequest { order: Some(order), idempotency_key: format!("{tenant}-1"), allow_burst: None };
    contracts.create_reservation(request).await.expect("reserve").into_inner()
}
