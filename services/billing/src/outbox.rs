//! Billing's events, written in the transaction that made them happen and
//! then handed to the SLA service, which signs and delivers them through
//! the tenants' webhooks. A crash between the two only delays an event:
//! the next round publishes it again under the same id, and the SLA
//! service records an id once.

use chrono::{DateTime, Utc};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::Result;
use crate::peers::Peers;

pub const INVOICE_FINALIZED: &str = "invoice.finalized";
pub const CREDIT_NOTE_ISSUED: &str = "credit_note.issued";

/// Events handed over per round.
const BATCH: i64 = 100;

pub async fn queue(tx: &mut PgConnection, kind: &str, tenant: &str, data: Value, at: DateTime<Utc>) -> Result<()> {
    sqlx::query("INSERT INTO billing.outbox (id, type, tenant_id, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(Uuid::now_v7())
        .bind(kind)
        .bind(tenant)
        .bind(data)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Publishes what is waiting, oldest first; returns how many went out.
/// Stops at the first failure (the SLA service down): the rest waits.
pub async fn publish_waiting(pool: &PgPool, peers: &Peers) -> Result<usize> {
    type Row = (Uuid, String, String, Value, DateTime<Utc>);
    let waiting: Vec<Row> = sqlx::query_as(
        "SELECT id, type, tenant_id, payload, created_at FROM billing.outbox WHERE published_at IS NULL \
         ORDER BY created_at, id LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    let mut sent = 0;
    for (id, kind, tenant, payload, at) in waiting {
        let event = pb::PublishEventRequest {
            id: id.to_string(),
            r#type: kind,
            tenant_id: tenant,
            data_json: payload.to_string(),
            created_at: Some(timestamp(at)),
        };
        peers.publish(event).await?;
        sqlx::query("UPDATE billing.outbox SET published_at = now() WHERE id = $1").bind(id).execute(pool).await?;
        sent += 1;
    }
    Ok(sent)
}
