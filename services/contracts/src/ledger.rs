//! The capacity ledger on the database side: reading a model's holdings and
//! running capacity decisions in SERIALIZABLE transactions.
//!
//! Two walls keep the pool from being oversold under concurrency: every
//! capacity decision locks the model's row first (so decisions on one model
//! queue up instead of racing), and runs at SERIALIZABLE (so a writer that
//! forgot the lock is still caught; PostgreSQL aborts one of two racing
//! transactions with SQLSTATE 40001 and we run it again).

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use reservoir_domain::capacity::{Holding, reserved_steps};
use reservoir_domain::{ModelId, TimeRange};
use reservoir_runtime::db;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{ContractsError, Result};

/// Runs `work` in a SERIALIZABLE transaction, again from the start when it
/// lost a race (serialization failure, deadlock, or a unique key a concurrent
/// twin committed first: the next attempt sees the twin's row).
pub async fn in_serializable_tx<T, F>(pool: &PgPool, mut work: F) -> Result<T>
where
    F: for<'c> FnMut(&'c mut PgConnection) -> BoxFuture<'c, Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = async {
            let mut tx = pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").execute(&mut *tx).await?;
            let value = work(&mut tx).await?;
            tx.commit().await?;
            Ok(value)
        }
        .await;
        match outcome {
            Err(ContractsError::Database(e))
                if (db::is_retryable(&e) || db::is_unique_violation(&e)) && attempt < db::SERIALIZABLE_RETRIES_MAX =>
            {
                tracing::debug!(attempt, "transaction lost a race; retrying");
                db::retry_pause(attempt).await;
            }
            other => return other,
        }
    }
}

/// A reservation's hold on capacity, with its id.
#[derive(Debug, Clone, Copy)]
pub struct HoldingRow {
    pub reservation_id: Uuid,
    pub holding: Holding,
}

/// Live holdings of `model` that overlap `window`. A cancelled reservation
/// holds capacity from its start until it was cancelled.
pub async fn holdings(conn: &mut PgConnection, model: &ModelId, window: TimeRange) -> Result<Vec<HoldingRow>> {
    type Row = (Uuid, DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, i32);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, starts_at, ends_at, cancelled_at, rate_tokens_per_s FROM contracts.reservations \
         WHERE model_id = $1 \
           AND (cancelled_at IS NULL OR cancelled_at > starts_at) \
           AND (ends_at IS NULL OR ends_at > $2) \
           AND (cancelled_at IS NULL OR cancelled_at > $2) \
           AND ($3::timestamptz IS NULL OR starts_at < $3)",
    )
    .bind(model.as_str())
    .bind(window.start)
    .bind(window.end)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, starts_at, ends_at, cancelled_at, rate) in rows {
        let end = match (ends_at, cancelled_at) {
            (Some(e), Some(c)) => Some(e.min(c)),
            (e, c) => e.or(c),
        };
        let range = TimeRange::new(starts_at, end)
            .map_err(|e| ContractsError::Internal(format!("stored reservation {id}: {e}")))?;
        let rate_tokens_per_s = u64::try_from(rate).unwrap_or(0);
        out.push(HoldingRow { reservation_id: id, holding: Holding { range, rate_tokens_per_s } });
    }
    Ok(out)
}

/// Fails with a conflict naming the reservations in the way when, at some
/// instant from now on, more than `sellable` is sold.
pub async fn check_capacity_covers_sales(conn: &mut PgConnection, model: &ModelId, sellable: u32) -> Result<()> {
    let window = TimeRange { start: Utc::now(), end: None };
    let rows = holdings(conn, model, window).await?;
    let plain: Vec<Holding> = rows.iter().map(|r| r.holding).collect();
    let over: Vec<_> =
        reserved_steps(&plain, window).into_iter().filter(|s| s.reserved_tokens_per_s > u64::from(sellable)).collect();
    let Some(worst) = over.iter().max_by_key(|s| s.reserved_tokens_per_s) else {
        return Ok(());
    };
    let mut in_the_way: Vec<Uuid> = rows
        .iter()
        .filter(|r| over.iter().any(|s| r.holding.range.overlaps(&TimeRange { start: s.from, end: s.to })))
        .map(|r| r.reservation_id)
        .collect();
    in_the_way.sort();
    let message = format!(
        "sellable capacity would be {sellable} weighted tokens/s but {} are sold from {}; \
         reservations in the way: {}",
        worst.reserved_tokens_per_s,
        worst.from.to_rfc3339(),
        in_the_way.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", ")
    );
    Err(ContractsError::Conflict {
        message,
        details: serde_json::json!({
            "sellable_tokens_per_s": sellable,
            "sold_tokens_per_s": worst.reserved_tokens_per_s,
            "reservations": in_the_way,
        }),
    })
}
