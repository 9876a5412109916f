//! Scheduled maintenance of a model's pool: windows overlapping it are
//! excluded from availability and shown as maintenance, not downtime.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use reservoir_sla::Maintenance;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{Result, SlaError};

/// Longest maintenance that can be scheduled at once.
pub const MAINTENANCE_MAX: chrono::TimeDelta = chrono::TimeDelta::days(7);
pub const NOTE_BYTES_MAX: usize = 2000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Scheduled {
    pub id: Uuid,
    pub model_id: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub note: String,
    pub created_by: String,
    pub cancelled_at: Option<DateTime<Utc>>,
}

pub struct NewMaintenance<'a> {
    pub model: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub note: &'a str,
    pub created_by: &'a str,
}

/// Schedules a maintenance. It must start after `now`: downtime cannot be
/// excused after the fact.
pub async fn create(pool: &PgPool, m: &NewMaintenance<'_>, now: DateTime<Utc>) -> Result<Scheduled> {
    if m.from < now {
        return Err(SlaError::Invalid(
            "a maintenance is scheduled before it starts: from must be in the future".into(),
        ));
    }
    if m.to <= m.from {
        return Err(SlaError::Invalid("to must be after from".into()));
    }
    if m.to - m.from > MAINTENANCE_MAX {
        return Err(SlaError::Invalid(format!("a maintenance lasts at most {} days", MAINTENANCE_MAX.num_days())));
    }
    let note = m.note.trim();
    if note.is_empty() || note.len() > NOTE_BYTES_MAX {
        return Err(SlaError::Invalid(format!("note must be 1 to {NOTE_BYTES_MAX} bytes")));
    }
    Ok(sqlx::query_as(
        "INSERT INTO sla.maintenance (id, model_id, starts_at, ends_at, note, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         RETURNING id, model_id, starts_at, ends_at, note, created_by, cancelled_at",
    )
    .bind(Uuid::now_v7())
    .bind(m.model)
    .bind(m.from)
    .bind(m.to)
    .bind(note)
    .bind(m.created_by)
    .fetch_one(pool)
    .await?)
}

/// Every maintenance of `model` (all models when `None`), newest first.
pub async fn list(pool: &PgPool, model: Option<&str>) -> Result<Vec<Scheduled>> {
    Ok(sqlx::query_as(
        "SELECT id, model_id, starts_at, ends_at, note, created_by, cancelled_at FROM sla.maintenance \
         WHERE $1::text IS NULL OR model_id = $1 ORDER BY starts_at DESC LIMIT 1000",
    )
    .bind(model)
    .fetch_all(pool)
    .await?)
}

/// Cancels a maintenance (it then excludes nothing).
pub async fn cancel(pool: &PgPool, id: Uuid) -> Result<Scheduled> {
    sqlx::query_as(
        "UPDATE sla.maintenance SET cancelled_at = COALESCE(cancelled_at, now()) WHERE id = $1 \
         RETURNING id, model_id, starts_at, ends_at, note, created_by, cancelled_at",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| SlaError::NotFound(format!("maintenance {id}")))
}

/// Maintenance in force (not cancelled) by model, for classification.
pub async fn by_model(pool: &PgPool) -> Result<HashMap<String, Vec<Maintenance>>> {
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT model_id, starts_at, ends_at FROM sla.maintenance WHERE cancelled_at IS NULL")
            .fetch_all(pool)
            .await?;
    let mut map: HashMap<String, Vec<Maintenance>> = HashMap::new();
    for (model, start, end) in rows {
        map.entry(model).or_default().push(Maintenance { start, end });
    }
    Ok(map)
}
