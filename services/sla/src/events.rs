//! Events for webhooks, written in the transaction that made them happen
//! (an outbox): a crash can never lose one nor send one for a change that
//! was rolled back. Each gets one delivery row per endpoint it goes to.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;

pub const INCIDENT_OPENED: &str = "incident.opened";
pub const INCIDENT_UPDATED: &str = "incident.updated";
pub const INCIDENT_RESOLVED: &str = "incident.resolved";
pub const CREDIT_ISSUED: &str = "credit.issued";
/// Billing's events, published through [`publish`].
pub const INVOICE_FINALIZED: &str = "invoice.finalized";
pub const CREDIT_NOTE_ISSUED: &str = "credit_note.issued";

/// Records event `kind` with `data` for `tenant`'s endpoints (`None`: a
/// pool event, for the admins' endpoints), and queues its deliveries.
pub async fn emit(
    tx: &mut PgConnection,
    kind: &'static str,
    tenant: Option<&str>,
    data: Value,
    at: DateTime<Utc>,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    insert(tx, id, kind, tenant, data, at).await?;
    Ok(id)
}

/// Records another service's event under the id it chose; `false` when
/// that id was already recorded (a retried publish), which queues nothing.
pub async fn publish(
    tx: &mut PgConnection,
    id: Uuid,
    kind: &'static str,
    tenant: &str,
    data: Value,
    at: DateTime<Utc>,
) -> Result<bool> {
    insert(tx, id, kind, Some(tenant), data, at).await
}

async fn insert(
    tx: &mut PgConnection,
    id: Uuid,
    kind: &'static str,
    tenant: Option<&str>,
    data: Value,
    at: DateTime<Utc>,
) -> Result<bool> {
    // Receivers dedupe on `id`; `created_at` is when it happened.
    let payload = json!({ "id": id, "type": kind, "created_at": at, "data": data });
    let inserted = sqlx::query(
        "INSERT INTO sla.events (id, type, tenant_id, payload, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(kind)
    .bind(tenant)
    .bind(&payload)
    .bind(at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO sla.deliveries (event_id, endpoint_id, next_attempt_at) \
         SELECT $1, id, now() FROM sla.webhook_endpoints \
         WHERE deleted_at IS NULL AND tenant_id IS NOT DISTINCT FROM $2",
    )
    .bind(id)
    .bind(tenant)
    .execute(&mut *tx)
    .await?;
    Ok(true)
}
