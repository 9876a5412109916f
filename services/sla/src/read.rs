//! Reads for the API, answered as proto messages: incidents with their
//! timelines, credits, bad windows.

use chrono::{DateTime, Utc};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_sla::BadReason;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// Incidents and credits listed at most per call.
pub const LIST_LIMIT_MAX: u32 = 1000;

pub fn reason_to_pb(r: &str) -> i32 {
    let reason = match BadReason::parse(r) {
        Some(BadReason::PlatformErrors) => pb::BadReason::PlatformErrors,
        Some(BadReason::TtftMissed) => pb::BadReason::TtftMissed,
        Some(BadReason::DecodeBelowFloor) => pb::BadReason::DecodeBelowFloor,
        Some(BadReason::ThroughputShort) => pb::BadReason::ThroughputShort,
        Some(BadReason::WorkersDown) => pb::BadReason::WorkersDown,
        Some(BadReason::ContractsBreached) => pb::BadReason::ContractsBreached,
        None => pb::BadReason::Unspecified,
    };
    reason as i32
}

fn reasons_to_pb(reasons: &[String]) -> Vec<i32> {
    reasons.iter().map(|r| reason_to_pb(r)).collect()
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub tenant: Option<String>,
    pub scope: Option<&'static str>,
    pub status: Option<&'static str>,
    pub model: Option<String>,
    /// Incidents that overlap `[from, to)`.
    pub overlapping: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub contract: Option<Uuid>,
    pub id: Option<Uuid>,
    pub limit: u32,
}

type IncidentRow = (
    Uuid,
    String,
    Option<Uuid>,
    Option<String>,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Vec<String>,
    Option<String>,
);

pub async fn incidents(pool: &PgPool, f: &IncidentFilter) -> Result<Vec<pb::Incident>> {
    let limit = if f.limit == 0 { LIST_LIMIT_MAX } else { f.limit.min(LIST_LIMIT_MAX) };
    let rows: Vec<IncidentRow> = sqlx::query_as(
        "SELECT id, scope, contract_id, tenant_id, model_id, status, started_at, last_bad_at, resolved_at, reasons, \
           postmortem FROM sla.incidents \
         WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR scope = $2) \
           AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR model_id = $4) \
           AND ($5::timestamptz IS NULL OR (started_at < $6 AND (resolved_at IS NULL OR resolved_at > $5))) \
           AND ($7::uuid IS NULL OR contract_id = $7) AND ($9::uuid IS NULL OR id = $9) \
         ORDER BY started_at DESC, id DESC LIMIT $8",
    )
    .bind(f.tenant.as_deref())
    .bind(f.scope)
    .bind(f.status)
    .bind(f.model.as_deref())
    .bind(f.overlapping.map(|(from, _)| from))
    .bind(f.overlapping.map(|(_, to)| to))
    .bind(f.contract)
    .bind(i64::from(limit))
    .bind(f.id)
    .fetch_all(pool)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let updates: Vec<(Uuid, DateTime<Utc>, String, String, String)> = sqlx::query_as(
        "SELECT incident_id, at, kind, message, author FROM sla.incident_updates WHERE incident_id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, scope, contract, tenant, model, status, started, last_bad, resolved, reasons, postmortem)| {
            let timeline = updates
                .iter()
                .filter(|u| u.0 == id)
                .map(|(_, at, kind, message, author)| pb::IncidentUpdate {
                    at: Some(timestamp(*at)),
                    kind: match kind.as_str() {
                        "opened" => pb::UpdateKind::Opened,
                        "updated" => pb::UpdateKind::Updated,
                        "resolved" => pb::UpdateKind::Resolved,
                        _ => pb::UpdateKind::Note,
                    } as i32,
                    message: message.clone(),
                    author: author.clone(),
                })
                .collect();
            pb::Incident {
                id: id.to_string(),
                scope: if scope == "pool" { pb::IncidentScope::Pool } else { pb::IncidentScope::Contract } as i32,
                contract_id: contract.map(|c| c.to_string()).unwrap_or_default(),
                tenant_id: tenant.unwrap_or_default(),
                model,
                status: if status == "open" { pb::IncidentStatus::Open } else { pb::IncidentStatus::Resolved } as i32,
                started_at: Some(timestamp(started)),
                last_bad_at: Some(timestamp(last_bad)),
                resolved_at: resolved.map(timestamp),
                reasons: reasons_to_pb(&reasons),
                postmortem: postmortem.unwrap_or_default(),
                timeline,
            }
        })
        .collect())
}

type CreditRow = (
    Uuid,
    Uuid,
    String,
    String,
    String,
    String,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    String,
    serde_json::Value,
    DateTime<Utc>,
);

pub async fn credits(pool: &PgPool, tenant: Option<&str>, period: Option<&str>) -> Result<Vec<pb::Credit>> {
    let rows: Vec<CreditRow> = sqlx::query_as(
        "SELECT id, contract_id, period, tenant_id, model_id, tier, availability, target, share, fee, amount, \
           currency, evidence, issued_at FROM sla.credits \
         WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR period = $2) \
         ORDER BY period, tenant_id, contract_id LIMIT 100000",
    )
    .bind(tenant)
    .bind(period)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                contract,
                period,
                tenant,
                model,
                tier,
                availability,
                target,
                share,
                fee,
                amount,
                currency,
                evidence,
                issued,
            )| {
                let evidence = evidence
                    .as_array()
                    .map(|windows| {
                        windows
                            .iter()
                            .map(|w| pb::BadWindowEvidence {
                                window_start: w["window_start"]
                                    .as_str()
                                    .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                                    .map(timestamp),
                                reasons: w["reasons"]
                                    .as_array()
                                    .map(|r| r.iter().filter_map(|x| x.as_str()).map(reason_to_pb).collect())
                                    .unwrap_or_default(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                pb::Credit {
                    id: id.to_string(),
                    contract_id: contract.to_string(),
                    tenant_id: tenant,
                    model,
                    tier: tier
                        .parse::<reservoir_domain::Tier>()
                        .map(|t| pb::Tier::from(t) as i32)
                        .unwrap_or(pb::Tier::Unspecified as i32),
                    period,
                    availability: availability.normalize().to_string(),
                    target: target.normalize().to_string(),
                    share: share.normalize().to_string(),
                    fee: fee.normalize().to_string(),
                    amount: amount.to_string(),
                    currency,
                    evidence,
                    issued_at: Some(timestamp(issued)),
                }
            },
        )
        .collect())
}

type WindowRow =
    (DateTime<Utc>, i32, i64, i64, i64, Option<i32>, Option<i32>, Option<Decimal>, Decimal, Decimal, Vec<String>, bool);

/// The bad windows of a contract in `[from, to)`, oldest first.
pub async fn bad_windows(
    pool: &PgPool,
    contract: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<pb::SlaWindow>> {
    let rows: Vec<WindowRow> = sqlx::query_as(
        "SELECT window_start, window_s, eligible_requests, platform_errors, ttft_missed, ttft_ms_p50, ttft_ms_p95, \
           decode_tokens_per_s_median, demand_weighted_tokens, delivered_weighted_tokens, reasons, in_maintenance \
         FROM sla.windows WHERE contract_id = $1 AND window_start >= $2 AND window_start < $3 \
           AND cardinality(reasons) > 0 ORDER BY window_start LIMIT 10000",
    )
    .bind(contract)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(rows
        .into_iter()
        .map(
            |(start, window_s, eligible, errors, missed, p50, p95, median, demand, delivered, reasons, maintenance)| {
                pb::SlaWindow {
                    window_start: Some(timestamp(start)),
                    window_s: u32::try_from(window_s).unwrap_or(0),
                    eligible_requests: count(eligible),
                    platform_errors: count(errors),
                    ttft_missed: count(missed),
                    ttft_ms_p50: p50.and_then(|t| u32::try_from(t).ok()),
                    ttft_ms_p95: p95.and_then(|t| u32::try_from(t).ok()),
                    decode_tokens_per_s_median: median.map(|m| m.normalize().to_string()).unwrap_or_default(),
                    demand_weighted_tokens: demand.normalize().to_string(),
                    delivered_weighted_tokens: delivered.normalize().to_string(),
                    reasons: reasons_to_pb(&reasons),
                    in_maintenance: maintenance,
                }
            },
        )
        .collect())
}
