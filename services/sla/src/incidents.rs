//! Incidents: a run of consecutive bad windows of one contract, or of one
//! model's pool (see `reservoir_sla::next_step`). Each change is one
//! transaction with its timeline entry and its webhook event.

use chrono::{DateTime, Utc};
use reservoir_sla::{BadReason, IncidentStep, next_step};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::Result;
use crate::events;

/// Whose incident it is.
#[derive(Debug, Clone)]
pub enum Subject {
    Contract { id: Uuid, tenant: String, model: String },
    Pool { model: String },
}

impl Subject {
    fn scope(&self) -> &'static str {
        match self {
            Subject::Contract { .. } => "contract",
            Subject::Pool { .. } => "pool",
        }
    }

    fn model(&self) -> &str {
        match self {
            Subject::Contract { model, .. } | Subject::Pool { model } => model,
        }
    }

    /// Whose endpoints hear of it: the tenant's, or the admins' for a pool.
    fn tenant(&self) -> Option<&str> {
        match self {
            Subject::Contract { tenant, .. } => Some(tenant),
            Subject::Pool { .. } => None,
        }
    }

    fn contract(&self) -> Option<Uuid> {
        match self {
            Subject::Contract { id, .. } => Some(*id),
            Subject::Pool { .. } => None,
        }
    }
}

type IncidentRow = (
    String,
    Option<Uuid>,
    Option<String>,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Vec<String>,
);

/// One window in order: its start and, when bad, why.
pub type WindowState = (DateTime<Utc>, Option<Vec<BadReason>>);

struct Open {
    id: Uuid,
    reasons: Vec<String>,
}

async fn open_incident(conn: &mut PgConnection, subject: &Subject) -> Result<Option<Open>> {
    let row: Option<(Uuid, Vec<String>)> = sqlx::query_as(
        "SELECT id, reasons FROM sla.incidents WHERE scope = $1 AND status = 'open' \
           AND (($1 = 'contract' AND contract_id = $2) OR ($1 = 'pool' AND model_id = $3)) FOR UPDATE",
    )
    .bind(subject.scope())
    .bind(subject.contract())
    .bind(subject.model())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(id, reasons)| Open { id, reasons }))
}

fn describe(reasons: &[String]) -> String {
    reasons.iter().map(|r| r.replace('_', " ")).collect::<Vec<_>>().join(", ")
}

fn window_text(start: DateTime<Utc>, window_s: u32) -> String {
    let end = start + chrono::Duration::seconds(i64::from(window_s));
    format!("{} to {} UTC", start.format("%Y-%m-%d %H:%M:%S"), end.format("%H:%M:%S"))
}

async fn timeline(conn: &mut PgConnection, id: Uuid, at: DateTime<Utc>, kind: &str, message: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO sla.incident_updates (incident_id, at, kind, message, author) VALUES ($1, $2, $3, $4, 'sla')",
    )
    .bind(id)
    .bind(at)
    .bind(kind)
    .bind(message)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn announce(
    conn: &mut PgConnection,
    subject: &Subject,
    id: Uuid,
    kind: &'static str,
    at: DateTime<Utc>,
) -> Result<()> {
    let incident: Option<IncidentRow> = sqlx::query_as(
        "SELECT scope, contract_id, tenant_id, model_id, status, started_at, last_bad_at, resolved_at, reasons \
             FROM sla.incidents WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((scope, contract, tenant, model, status, started, last_bad, resolved, reasons)) = incident else {
        return Ok(());
    };
    let data = json!({
        "incident": {
            "id": id, "scope": scope, "contract_id": contract, "tenant_id": tenant, "model": model,
            "status": status, "started_at": started, "last_bad_at": last_bad, "resolved_at": resolved,
            "reasons": reasons,
        }
    });
    events::emit(conn, kind, subject.tenant(), data, at).await?;
    Ok(())
}

/// Applies `windows` (in order, each ended) to `subject`'s incidents: opens
/// one at the first bad window, updates it when new reasons appear, and
/// resolves it at the first window that is not bad.
pub async fn walk(pool: &PgPool, subject: &Subject, windows: &[WindowState], window_s: u32) -> Result<()> {
    let mut tx = pool.begin().await?;
    let mut open = open_incident(&mut tx, subject).await?;
    for (start, bad) in windows {
        let at = *start + chrono::Duration::seconds(i64::from(window_s));
        let reasons: Vec<String> = bad.iter().flatten().map(|r| r.as_str().to_owned()).collect();
        match next_step(open.is_some(), bad.is_some()) {
            IncidentStep::Nothing => {}
            IncidentStep::Open => {
                let id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO sla.incidents (id, scope, contract_id, tenant_id, model_id, status, started_at, \
                       last_bad_at, reasons) VALUES ($1, $2, $3, $4, $5, 'open', $6, $6, $7)",
                )
                .bind(id)
                .bind(subject.scope())
                .bind(subject.contract())
                .bind(subject.tenant())
                .bind(subject.model())
                .bind(*start)
                .bind(&reasons)
                .execute(&mut *tx)
                .await?;
                let message = format!("Window {} was bad: {}.", window_text(*start, window_s), describe(&reasons));
                timeline(&mut tx, id, at, "opened", &message).await?;
                announce(&mut tx, subject, id, events::INCIDENT_OPENED, at).await?;
                open = Some(Open { id, reasons });
            }
            IncidentStep::Update => {
                let Some(current) = open.as_mut() else { continue };
                let new: Vec<String> = reasons.iter().filter(|r| !current.reasons.contains(r)).cloned().collect();
                current.reasons.extend(new.iter().cloned());
                sqlx::query("UPDATE sla.incidents SET last_bad_at = $2, reasons = $3 WHERE id = $1")
                    .bind(current.id)
                    .bind(*start)
                    .bind(&current.reasons)
                    .execute(&mut *tx)
                    .await?;
                // Every bad window extends it; only a new reason is news.
                if !new.is_empty() {
                    let message =
                        format!("Window {} was bad, now also for: {}.", window_text(*start, window_s), describe(&new));
                    timeline(&mut tx, current.id, at, "updated", &message).await?;
                    announce(&mut tx, subject, current.id, events::INCIDENT_UPDATED, at).await?;
                }
            }
            IncidentStep::Resolve => {
                let Some(current) = open.take() else { continue };
                sqlx::query("UPDATE sla.incidents SET status = 'resolved', resolved_at = $2 WHERE id = $1")
                    .bind(current.id)
                    .bind(*start)
                    .execute(&mut *tx)
                    .await?;
                let message = format!("Window {} was good again.", window_text(*start, window_s));
                timeline(&mut tx, current.id, at, "resolved", &message).await?;
                announce(&mut tx, subject, current.id, events::INCIDENT_RESOLVED, at).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// A bad window found late (records that arrived after its turn) that no
/// incident of `subject` covers: recorded as an incident opened and
/// resolved at once, so the evidence is complete.
pub async fn record_late_bad_window(
    pool: &PgPool,
    subject: &Subject,
    start: DateTime<Utc>,
    reasons: &[BadReason],
    window_s: u32,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let covered: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sla.incidents WHERE scope = $1 \
           AND (($1 = 'contract' AND contract_id = $2) OR ($1 = 'pool' AND model_id = $3)) \
           AND started_at <= $4 AND $4 <= last_bad_at)",
    )
    .bind(subject.scope())
    .bind(subject.contract())
    .bind(subject.model())
    .bind(start)
    .fetch_one(&mut *tx)
    .await?;
    if covered {
        return Ok(());
    }
    let id = Uuid::now_v7();
    let end = start + chrono::Duration::seconds(i64::from(window_s));
    let reasons: Vec<String> = reasons.iter().map(|r| r.as_str().to_owned()).collect();
    sqlx::query(
        "INSERT INTO sla.incidents (id, scope, contract_id, tenant_id, model_id, status, started_at, \
           last_bad_at, resolved_at, reasons) VALUES ($1, $2, $3, $4, $5, 'resolved', $6, $6, $7, $8)",
    )
    .bind(id)
    .bind(subject.scope())
    .bind(subject.contract())
    .bind(subject.tenant())
    .bind(subject.model())
    .bind(start)
    .bind(end)
    .bind(&reasons)
    .execute(&mut *tx)
    .await?;
    let message = format!(
        "Window {} was bad: {} (found when late usage records arrived).",
        window_text(start, window_s),
        describe(&reasons)
    );
    timeline(&mut tx, id, end, "opened", &message).await?;
    timeline(&mut tx, id, end, "resolved", "Recorded as resolved: a single window measured late.").await?;
    announce(&mut tx, subject, id, events::INCIDENT_OPENED, end).await?;
    announce(&mut tx, subject, id, events::INCIDENT_RESOLVED, end).await?;
    tx.commit().await?;
    Ok(())
}
