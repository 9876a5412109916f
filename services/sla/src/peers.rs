//! What the SLA reads from other services: contracts and models from the
//! contracts service, usage windows from metering, worker health from the
//! scheduler. Proto types stop here: each answer becomes a domain value.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use reservoir_domain::{ModelId, TenantId, Tier};
use reservoir_pricing::ReservationTerms;
use reservoir_proto::enums::tier_from_pb;
use reservoir_proto::time::{instant, timestamp};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_proto::v1::scheduler_service_client::SchedulerServiceClient;
use reservoir_runtime::{InternalChannel, InternalToken};
use reservoir_sla::WindowFigures;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::error::{Result, SlaError};

/// Reservations asked for per page (the contracts service's maximum).
const CONTRACTS_PAGE: u32 = 1000;

/// How long one call to a peer may take.
const PEER_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A contract as the SLA measures and credits it.
#[derive(Debug, Clone)]
pub struct Contract {
    pub id: Uuid,
    pub tenant: TenantId,
    pub model: ModelId,
    pub tier: Tier,
    pub rate_tokens_per_s: u32,
    pub terms: ReservationTerms,
}

impl Contract {
    /// `[from, to)` of the contract's running term within `[from, to)`, if any.
    pub fn running_within(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let (start, end) = self.terms.billed_span()?;
        let a = from.max(start);
        let b = end.map_or(to, |e| e.min(to));
        (a < b).then_some((a, b))
    }
}

/// One measured window of a contract, as metering answered it.
#[derive(Debug, Clone)]
pub struct MeasuredWindow {
    pub start: DateTime<Utc>,
    pub figures: WindowFigures,
    pub ttft_ms_p50: Option<u32>,
    pub ttft_ms_p95: Option<u32>,
}

#[derive(Clone)]
pub struct Peers {
    contracts: ContractServiceClient<InternalChannel>,
    metering: MeteringServiceClient<InternalChannel>,
    scheduler: SchedulerServiceClient<InternalChannel>,
}

fn peer(service: &'static str) -> impl FnOnce(tonic::Status) -> SlaError {
    move |status| SlaError::Peer { service, status }
}

fn bad_answer(what: &str, detail: impl std::fmt::Display) -> SlaError {
    SlaError::Internal(format!("unexpected {what} from a peer: {detail}"))
}

fn decimal(what: &str, s: &str) -> Result<Decimal> {
    s.parse().map_err(|e| bad_answer(what, e))
}

impl Peers {
    pub fn connect(
        contracts_url: &str,
        metering_url: &str,
        scheduler_url: &str,
        token: &InternalToken,
    ) -> anyhow::Result<Peers> {
        let channel = |url: &str| -> anyhow::Result<InternalChannel> {
            Ok(token.attach(reservoir_runtime::grpc::client_channel(url, PEER_CALL_TIMEOUT)?))
        };
        Ok(Peers {
            contracts: ContractServiceClient::new(channel(contracts_url)?),
            metering: MeteringServiceClient::new(channel(metering_url)?),
            scheduler: SchedulerServiceClient::new(channel(scheduler_url)?),
        })
    }

    /// Reservations running at some instant of `[from, to)`, `tenant`'s only when given.
    pub async fn contracts_running(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<Contract>> {
        let mut contracts = Vec::new();
        let mut page_after = String::new();
        loop {
            let request = pb::ListReservationsRequest {
                tenant_id: tenant.map(|t| t.to_string()).unwrap_or_default(),
                running_from: Some(timestamp(from)),
                running_to: Some(timestamp(to)),
                limit: CONTRACTS_PAGE,
                page_after,
                ..Default::default()
            };
            let answer = self.contracts.clone().list_reservations(request).await.map_err(peer("contracts"))?;
            let page = answer.into_inner().reservations;
            let last = page.len() < CONTRACTS_PAGE as usize;
            page_after = page.last().map(|r| r.id.clone()).unwrap_or_default();
            for r in page {
                contracts.push(contract_from_pb(r)?);
            }
            if last {
                return Ok(contracts);
            }
        }
    }

    /// Measured prefill rate (tokens/s, 0 when unknown) of every model.
    pub async fn models(&self) -> Result<HashMap<ModelId, u32>> {
        let answer = self.contracts.clone().list_models(pb::ListModelsRequest {}).await.map_err(peer("contracts"))?;
        answer
            .into_inner()
            .models
            .into_iter()
            .map(|m| Ok((m.id.parse().map_err(|e| bad_answer("model id", e))?, m.prefill_tokens_per_s)))
            .collect()
    }

    /// Windows of `contract` over `[from, to)` (only those holding records
    /// stored since `recorded_since`, when given), TTFT counted against its
    /// tier's base and its model's prefill rate.
    pub async fn windows(
        &self,
        contract: &Contract,
        span: (DateTime<Utc>, DateTime<Utc>),
        window_s: u32,
        prefill_tokens_per_s: u32,
        recorded_since: Option<DateTime<Utc>>,
    ) -> Result<Vec<MeasuredWindow>> {
        let policy = reservoir_sla::TierPolicy::of(contract.tier);
        let request = pb::UsageWindowsRequest {
            contract_id: contract.id.to_string(),
            from: Some(timestamp(span.0)),
            to: Some(timestamp(span.1)),
            window_s,
            ttft_target: Some(pb::TtftTarget { base_ms: policy.ttft_base_ms, prefill_tokens_per_s }),
            recorded_since: recorded_since.map(timestamp),
        };
        let answer = self.metering.clone().usage_windows(request).await.map_err(peer("metering"))?;
        answer.into_inner().windows.into_iter().map(window_from_pb).collect()
    }

    /// Healthy workers per model, as the scheduler sees them now.
    pub async fn healthy_workers(&self) -> Result<HashMap<String, u32>> {
        let answer = self.scheduler.clone().list_workers(pb::ListWorkersRequest {}).await.map_err(peer("scheduler"))?;
        let mut healthy: HashMap<String, u32> = HashMap::new();
        for w in answer.into_inner().workers {
            let count = healthy.entry(w.model_id).or_default();
            if w.healthy {
                *count += 1;
            }
        }
        Ok(healthy)
    }
}

fn contract_from_pb(r: pb::Reservation) -> Result<Contract> {
    Ok(Contract {
        id: Uuid::parse_str(&r.id).map_err(|e| bad_answer("reservation id", e))?,
        tenant: r.tenant_id.parse().map_err(|e| bad_answer("tenant id", e))?,
        model: r.model.parse().map_err(|e| bad_answer("model id", e))?,
        tier: tier_from_pb("tier", r.tier).map_err(|e| bad_answer("tier", e))?,
        rate_tokens_per_s: r.rate_tokens_per_s,
        terms: reservoir_proto::pricing::reservation_terms(&r).map_err(|e| bad_answer("reservation", e))?,
    })
}

fn window_from_pb(w: pb::UsageWindow) -> Result<MeasuredWindow> {
    let median = if w.decode_tokens_per_s_median.is_empty() {
        None
    } else {
        Some(decimal("decode median", &w.decode_tokens_per_s_median)?)
    };
    Ok(MeasuredWindow {
        start: w.window_start.as_ref().and_then(instant).ok_or_else(|| bad_answer("window start", "missing"))?,
        ttft_ms_p50: w.ttft_ms_p50,
        ttft_ms_p95: w.ttft_ms_p95,
        figures: WindowFigures {
            eligible_requests: w.eligible_requests,
            platform_errors: w.platform_errors,
            ttft_missed: w.ttft_missed,
            decode_tokens_per_s_median: median,
            demand_weighted_tokens: decimal("demand", &w.demand_weighted_tokens)?,
            delivered_weighted_tokens: decimal("delivered", &w.delivered_weighted_tokens)?,
        },
    })
}
