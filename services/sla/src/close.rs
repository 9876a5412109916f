//! Closing a month: each contract's availability against its tier, and the
//! credit its schedule owes, exactly once.
//!
//! Each contract's result and credit (and the `credit.issued` event) are
//! one transaction keyed by (contract, period): closing twice, two SLA
//! instances racing, or a crash mid-close never makes a second credit (the
//! loser of a race finds the row and adds nothing).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use reservoir_domain::Period;
use reservoir_pricing::{credit_amount, reservation_fee};
use reservoir_sla::{Availability, Maintenance, TierPolicy, credit_share};
use serde_json::json;
use uuid::Uuid;

use crate::error::{Result, SlaError};
use crate::events;
use crate::job::Sla;
use crate::maintenance;
use crate::peers::Contract;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseReport {
    pub contracts: u32,
    pub credits_issued_now: u32,
    pub credits_total: u32,
}

/// Availability of `contract` over its running term within `period`, from
/// the stored bad windows and `maintenance` (by model, read once by the caller).
pub async fn availability(
    sla: &Sla,
    contract: &Contract,
    period: Period,
    until: DateTime<Utc>,
    maintenance: &HashMap<String, Vec<Maintenance>>,
) -> Result<Availability> {
    let Some((from, to)) = contract.running_within(period.start(), period.end().min(until)) else {
        return Ok(Availability::default());
    };
    let bad: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT window_start FROM sla.windows WHERE contract_id = $1 AND window_start >= $2 AND window_start < $3 \
           AND cardinality(reasons) > 0",
    )
    .bind(contract.id)
    .bind(crate::clock::align_down(from, sla.window_s))
    .bind(to)
    .fetch_all(&sla.pool)
    .await?;
    let bad: BTreeSet<i64> = bad.iter().map(DateTime::timestamp).collect();
    let model_maintenance = maintenance.get(contract.model.as_str()).map(Vec::as_slice).unwrap_or(&[]);
    Ok(Availability::count(from, to, sla.window_s, &bad, model_maintenance))
}

/// Closes `period` for every contract that ran in it. The month must have
/// ended and be measured to its end.
pub async fn close_period(sla: &Sla, period: Period, closed_by: &str, now: DateTime<Utc>) -> Result<CloseReport> {
    if period.end() > now {
        return Err(SlaError::NotYet(format!("{period} has not ended yet; it can be closed from {}", period.end())));
    }
    let measured = sla.measured_until().await?;
    if measured.is_none_or(|m| m < period.end()) {
        return Err(SlaError::NotYet(format!(
            "{period} is not measured to its end yet (the SLA job runs every minute); retry shortly"
        )));
    }
    let contracts = sla.peers.contracts_running(period.start(), period.end(), None).await?;
    let schedule = maintenance::by_model(&sla.pool).await?;
    let mut report = CloseReport::default();
    for contract in &contracts {
        if close_contract(sla, contract, period, now, &schedule).await? {
            report.credits_issued_now += 1;
        }
        report.contracts += 1;
    }
    sqlx::query(
        "INSERT INTO sla.closed_periods (period, closed_at, closed_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(period.to_string())
    .bind(now)
    .bind(closed_by)
    .execute(&sla.pool)
    .await?;
    report.credits_total = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sla.credits WHERE period = $1")
        .bind(period.to_string())
        .fetch_one(&sla.pool)
        .await?
        .try_into()
        .unwrap_or(u32::MAX);
    tracing::info!(%period, contracts = report.contracts, credits = report.credits_issued_now, "period closed");
    Ok(report)
}

/// Closes one contract's period; returns whether this call issued a credit.
async fn close_contract(
    sla: &Sla,
    contract: &Contract,
    period: Period,
    now: DateTime<Utc>,
    maintenance: &HashMap<String, Vec<Maintenance>>,
) -> Result<bool> {
    let policy = TierPolicy::of(contract.tier);
    let counts = availability(sla, contract, period, period.end(), maintenance).await?;
    let share = credit_share(&policy, &counts);
    let mut tx = sla.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO sla.period_results (contract_id, period, tenant_id, model_id, tier, windows_in_term, \
           maintenance_windows, bad_windows, availability, target, share, closed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
    )
    .bind(contract.id)
    .bind(period.to_string())
    .bind(contract.tenant.as_str())
    .bind(contract.model.as_str())
    .bind(contract.tier.as_str())
    .bind(i64::try_from(counts.windows_in_term).unwrap_or(i64::MAX))
    .bind(i64::try_from(counts.maintenance_windows).unwrap_or(i64::MAX))
    .bind(i64::try_from(counts.bad_windows).unwrap_or(i64::MAX))
    .bind(counts.ratio())
    .bind(policy.availability_target)
    .bind(share)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Closed before (or by a racing closer, which committed first): nothing to add.
    if inserted == 0 || share.is_zero() {
        tx.commit().await?;
        return Ok(false);
    }
    let fee = reservation_fee(&contract.terms, period.start(), period.end())?;
    let amount = credit_amount(fee, share)?;
    let evidence: Vec<(DateTime<Utc>, Vec<String>)> = sqlx::query_as(
        "SELECT window_start, reasons FROM sla.windows WHERE contract_id = $1 AND window_start >= $2 \
           AND window_start < $3 AND cardinality(reasons) > 0 AND NOT in_maintenance ORDER BY window_start",
    )
    .bind(contract.id)
    .bind(period.start())
    .bind(period.end())
    .fetch_all(&mut *tx)
    .await?;
    let evidence = json!(
        evidence
            .iter()
            .map(|(start, reasons)| json!({ "window_start": start, "reasons": reasons }))
            .collect::<Vec<_>>()
    );
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO sla.credits (id, contract_id, period, tenant_id, model_id, tier, availability, target, share, \
           fee, amount, currency, evidence, issued_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(id)
    .bind(contract.id)
    .bind(period.to_string())
    .bind(contract.tenant.as_str())
    .bind(contract.model.as_str())
    .bind(contract.tier.as_str())
    .bind(counts.ratio())
    .bind(policy.availability_target)
    .bind(share)
    .bind(fee.amount)
    .bind(amount.amount)
    .bind(amount.currency.as_str())
    .bind(&evidence)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let data = json!({ "credit": {
        "id": id, "contract_id": contract.id, "period": period.to_string(), "tier": contract.tier.as_str(),
        "availability": counts.ratio().to_string(), "target": policy.availability_target.to_string(),
        "share": share.to_string(), "amount": amount.amount.to_string(), "currency": amount.currency.as_str(),
        "bad_windows": evidence,
    }});
    events::emit(&mut tx, events::CREDIT_ISSUED, Some(contract.tenant.as_str()), data, now).await?;
    tx.commit().await?;
    Ok(true)
}
