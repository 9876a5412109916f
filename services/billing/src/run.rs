//! Closing a period: every tenant's draft, one transaction each. A run is
//! idempotent (a tenant's live invoice is recomputed, never duplicated),
//! resumable (a crash leaves finished tenants finished; the next run does
//! the rest) and safe beside another run (each tenant's transaction holds
//! the tenant's lock; the unique index on live invoices is the second wall).

use chrono::{DateTime, Utc};
use reservoir_domain::Period;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{BillingServiceError, Result};
use crate::gather::gather;
use crate::peers::Peers;
use crate::settle::{Mode, Outcome, settle};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub tenants: u32,
    pub drafted: u32,
    pub already_final: u32,
}

/// Drafts every tenant's invoice of `period` (an ended month) at `now`.
pub async fn run_period(
    pool: &PgPool,
    peers: &Peers,
    period: Period,
    actor: &str,
    grace: chrono::TimeDelta,
    now: DateTime<Utc>,
) -> Result<RunReport> {
    if now < period.end() {
        return Err(BillingServiceError::Conflict(format!(
            "{period} has not ended yet: it can be run from {}",
            period.end().format("%Y-%m-%d %H:%M UTC")
        )));
    }
    sqlx::query(
        "INSERT INTO billing.runs (period, started_at, started_by) VALUES ($1, $2, $3) ON CONFLICT (period) DO NOTHING",
    )
    .bind(period.to_string())
    .bind(now)
    .bind(actor)
    .execute(pool)
    .await?;
    let inputs = gather(peers, pool, period, None).await?;
    let mut report = RunReport::default();
    for tenant in inputs.tenants() {
        report.tenants += 1;
        match settle(pool, &inputs, &tenant, period, &Mode::Draft { grace }, now).await? {
            Outcome::Drafted(_) => report.drafted += 1,
            Outcome::AlreadyFinal(_) => report.already_final += 1,
            Outcome::Finalized(_) | Outcome::Held(_) | Outcome::Nothing => {}
        }
    }
    sqlx::query("UPDATE billing.runs SET finished_at = $2 WHERE period = $1")
        .bind(period.to_string())
        .bind(now)
        .execute(pool)
        .await?;
    Ok(report)
}

/// Finalizes draft `id` at `now` (recomputed first, from fresh inputs).
pub async fn finalize(pool: &PgPool, peers: &Peers, id: Uuid, actor: &str, now: DateTime<Utc>) -> Result<Uuid> {
    let found: Option<(String, String, String)> =
        sqlx::query_as("SELECT tenant_id, period, status FROM billing.invoices WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    let (tenant, period, status) = found.ok_or_else(|| BillingServiceError::NotFound(format!("invoice {id}")))?;
    if status != "draft" {
        return Err(BillingServiceError::Conflict(format!("invoice {id} is {status}: only a draft can be finalized")));
    }
    let period: Period = period.parse()?;
    let inputs = gather(peers, pool, period, Some(&tenant)).await?;
    let mode = Mode::Finalize { actor: actor.to_owned(), unless_held: false };
    match settle(pool, &inputs, &tenant, period, &mode, now).await? {
        Outcome::Finalized(id) => Ok(id),
        Outcome::AlreadyFinal(id) => Err(BillingServiceError::Conflict(format!("invoice {id} is already finalized"))),
        Outcome::Nothing => Err(BillingServiceError::Conflict(format!(
            "invoice {id} has nothing left to bill once recomputed; it was removed"
        ))),
        Outcome::Drafted(_) | Outcome::Held(_) => Err(BillingServiceError::Internal("finalizing left a draft".into())),
    }
}

/// Finalizes the drafts whose grace period is over and that nobody holds:
/// one gathering per month for all of its due drafts, then each tenant in
/// its own transaction (a draft held or finalized meanwhile is left alone).
pub async fn finalize_due(pool: &PgPool, peers: &Peers, now: DateTime<Utc>) -> Result<usize> {
    let due: Vec<(String, String)> = sqlx::query_as(
        "SELECT period, tenant_id FROM billing.invoices WHERE status = 'draft' AND NOT held AND finalize_after <= $1 \
         ORDER BY period, tenant_id LIMIT 10000",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut by_period: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for (period, tenant) in due {
        by_period.entry(period).or_default().push(tenant);
    }
    let mut done = 0;
    // A draft held after the query above stays a draft: settle checks the
    // hold under the tenant's lock.
    let mode = Mode::Finalize { actor: "grace period".into(), unless_held: true };
    for (period, tenants) in by_period {
        let period: Period = period.parse()?;
        let inputs = gather(peers, pool, period, None).await?;
        for tenant in tenants {
            if let Outcome::Finalized(_) = settle(pool, &inputs, &tenant, period, &mode, now).await? {
                done += 1;
            }
        }
    }
    Ok(done)
}

/// The most recent ended month with no run yet, once `delay` has passed
/// since its end (the SLA closes a month an hour after it ends, so its
/// credits are there first).
pub async fn period_due(pool: &PgPool, now: DateTime<Utc>, delay: chrono::TimeDelta) -> Result<Option<Period>> {
    let Some(last) = Period::containing(now - delay)?.previous() else { return Ok(None) };
    let ran: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM billing.runs WHERE period = $1 AND finished_at IS NOT NULL)")
            .bind(last.to_string())
            .fetch_one(pool)
            .await?;
    Ok((!ran).then_some(last))
}
