//! The public status page's data, per model, from the pool windows: no
//! tenant names or tenant figures, only the pool's state, uptime, daily
//! bars, maintenance and pool incidents.
//!
//! Uptime over a span = pool windows not in outage / pool windows measured,
//! maintenance windows left out (as availability leaves them out).

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::error::Result;
use crate::maintenance::{self, Scheduled};

/// Days the daily bar and the incident list cover.
pub const HISTORY_DAYS: i64 = 90;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentState {
    Operational,
    Degraded,
    Outage,
    Maintenance,
    Unknown,
}

#[derive(Debug, Clone)]
pub struct ModelStatus {
    pub model: String,
    pub state: CurrentState,
    /// 24 h, 7, 30 and 90 days; `None` when nothing was measured.
    pub uptime: [Option<Decimal>; 4],
    /// Oldest first: midnight UTC and the day's uptime.
    pub daily: Vec<(DateTime<Utc>, Option<Decimal>)>,
    pub maintenance: Vec<Scheduled>,
}

fn ratio(up: i64, measured: i64) -> Option<Decimal> {
    (measured > 0).then(|| {
        (Decimal::from(up) / Decimal::from(measured))
            .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointNearestEven)
    })
}

async fn uptime(pool: &PgPool, model: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Option<Decimal>> {
    let (up, measured): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state <> 'outage'), count(*) FROM sla.pool_windows \
         WHERE model_id = $1 AND window_start >= $2 AND window_start < $3 AND state <> 'maintenance'",
    )
    .bind(model)
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    Ok(ratio(up, measured))
}

/// The status of every model in `models` at `now`.
pub async fn status(pool: &PgPool, models: &[String], now: DateTime<Utc>) -> Result<Vec<ModelStatus>> {
    let today = now.duration_trunc(TimeDelta::days(1)).unwrap_or(now);
    let history_from = today - Duration::days(HISTORY_DAYS - 1);
    let all_maintenance = maintenance::list(pool, None).await?;
    let mut out = Vec::new();
    for model in models {
        let mut uptimes = [None; 4];
        for (slot, span) in
            uptimes.iter_mut().zip([Duration::hours(24), Duration::days(7), Duration::days(30), Duration::days(90)])
        {
            *slot = uptime(pool, model, now - span, now).await?;
        }
        let days: Vec<(DateTime<Utc>, i64, i64)> = sqlx::query_as(
            "SELECT date_trunc('day', window_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', \
               count(*) FILTER (WHERE state <> 'outage'), count(*) \
             FROM sla.pool_windows WHERE model_id = $1 AND window_start >= $2 AND state <> 'maintenance' GROUP BY 1",
        )
        .bind(model)
        .bind(history_from)
        .fetch_all(pool)
        .await?;
        let daily = (0..HISTORY_DAYS)
            .map(|d| {
                let day = history_from + Duration::days(d);
                let found = days.iter().find(|(t, _, _)| *t == day);
                (day, found.and_then(|(_, up, measured)| ratio(*up, *measured)))
            })
            .collect();
        let maintenance: Vec<Scheduled> = all_maintenance
            .iter()
            .filter(|m| &m.model_id == model && m.cancelled_at.is_none() && m.ends_at > now)
            .cloned()
            .collect();
        let latest: Option<String> = sqlx::query_scalar(
            "SELECT state FROM sla.pool_windows WHERE model_id = $1 ORDER BY window_start DESC LIMIT 1",
        )
        .bind(model)
        .fetch_optional(pool)
        .await?;
        let open_incident: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sla.incidents WHERE scope = 'pool' AND model_id = $1 AND status = 'open')",
        )
        .bind(model)
        .fetch_one(pool)
        .await?;
        let state = if maintenance.iter().any(|m| m.starts_at <= now) {
            CurrentState::Maintenance
        } else if open_incident {
            CurrentState::Outage
        } else {
            match latest.as_deref() {
                None => CurrentState::Unknown,
                Some("degraded") => CurrentState::Degraded,
                Some("outage") => CurrentState::Outage,
                Some(_) => CurrentState::Operational,
            }
        };
        out.push(ModelStatus { model: model.clone(), state, uptime: uptimes, daily, maintenance });
    }
    Ok(out)
}
