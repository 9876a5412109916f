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
    // Receivers dedupe on `id`; `created_at` is when it happened.
    let payload = json!({ "id": id, "type": kind, "created_at": at, "data": data });
    sqlx::query("INSERT INTO sla.events (id, type, tenant_id, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(kind)
        .bind(tenant)
        .bind(&payload)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sla.deliveries (event_id, endpoint_id, next_attempt_at) \
         SELECT $1, id, now() FROM sla.webhook_endpoints \
         WHERE deleted_at IS NULL AND tenant_id IS NOT DISTINCT FROM $2",
    )
    .bind(id)
    .bind(tenant)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}
