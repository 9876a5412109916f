//! Measuring: each contract's windows from metering, classified and stored
//! (one row per window with traffic), and each model's pool windows.
//!
//! Recomputing a window writes the same row: every column is a function of
//! metering's figures, the contract's terms and the maintenance schedule.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use reservoir_domain::ModelId;
use reservoir_sla::{Maintenance, PoolFigures, PoolVerdict, TierPolicy, classify, classify_pool};
use sqlx::PgPool;

use crate::clock::at_epoch;
use crate::error::Result;
use crate::peers::{Contract, MeasuredWindow};

/// Whether `[start, start + window_s)` overlaps one of `maintenance`.
pub fn in_maintenance(maintenance: &[Maintenance], start: DateTime<Utc>, window_s: u32) -> bool {
    let end = start + chrono::Duration::seconds(i64::from(window_s));
    maintenance.iter().any(|m| m.start < end && start < m.end)
}

/// Classifies and stores `windows` of `contract`; returns whether any is bad.
pub async fn store_contract_windows(
    pool: &PgPool,
    contract: &Contract,
    windows: &[MeasuredWindow],
    window_s: u32,
    maintenance: &[Maintenance],
) -> Result<()> {
    let policy = TierPolicy::of(contract.tier);
    let mut tx = pool.begin().await?;
    for w in windows {
        let verdict = classify(&w.figures, &policy, contract.rate_tokens_per_s, window_s);
        let reasons: Vec<&str> = verdict.reasons.iter().map(|r| r.as_str()).collect();
        let f = &w.figures;
        sqlx::query(
            "INSERT INTO sla.windows (contract_id, window_start, window_s, tenant_id, model_id, tier, \
               eligible_requests, platform_errors, ttft_missed, ttft_ms_p50, ttft_ms_p95, \
               decode_tokens_per_s_median, demand_weighted_tokens, delivered_weighted_tokens, reasons, in_maintenance) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (contract_id, window_start) DO UPDATE SET window_s = $3, eligible_requests = $7, \
               platform_errors = $8, ttft_missed = $9, ttft_ms_p50 = $10, ttft_ms_p95 = $11, \
               decode_tokens_per_s_median = $12, demand_weighted_tokens = $13, delivered_weighted_tokens = $14, \
               reasons = $15, in_maintenance = $16",
        )
        .bind(contract.id)
        .bind(w.start)
        .bind(i32::try_from(window_s).unwrap_or(i32::MAX))
        .bind(contract.tenant.as_str())
        .bind(contract.model.as_str())
        .bind(contract.tier.as_str())
        .bind(i64::try_from(f.eligible_requests).unwrap_or(i64::MAX))
        .bind(i64::try_from(f.platform_errors).unwrap_or(i64::MAX))
        .bind(i64::try_from(f.ttft_missed).unwrap_or(i64::MAX))
        .bind(w.ttft_ms_p50.and_then(|t| i32::try_from(t).ok()))
        .bind(w.ttft_ms_p95.and_then(|t| i32::try_from(t).ok()))
        .bind(f.decode_tokens_per_s_median)
        .bind(f.demand_weighted_tokens)
        .bind(f.delivered_weighted_tokens)
        .bind(&reasons)
        .bind(in_maintenance(maintenance, w.start, window_s))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Stores the pool windows of `model` starting at `starts` (epoch seconds):
/// how many contracts had traffic, how many of those were bad, the fewest
/// healthy workers sampled, and the verdict.
pub async fn store_pool_windows(
    pool: &PgPool,
    model: &ModelId,
    starts: &BTreeSet<i64>,
    window_s: u32,
    maintenance: &[Maintenance],
) -> Result<()> {
    let (Some(first), Some(last)) = (starts.first(), starts.last()) else { return Ok(()) };
    let counts: Vec<(DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "SELECT window_start, count(*), count(*) FILTER (WHERE cardinality(reasons) > 0 AND NOT in_maintenance) \
         FROM sla.windows WHERE model_id = $1 AND window_start >= $2 AND window_start <= $3 GROUP BY 1",
    )
    .bind(model.as_str())
    .bind(at_epoch(*first))
    .bind(at_epoch(*last))
    .fetch_all(pool)
    .await?;
    let counts: HashMap<i64, (i64, i64)> = counts.into_iter().map(|(t, m, b)| (t.timestamp(), (m, b))).collect();
    let samples: Vec<(DateTime<Utc>, i32)> = sqlx::query_as(
        "SELECT window_start, workers_live FROM sla.worker_samples \
         WHERE model_id = $1 AND window_start >= $2 AND window_start <= $3",
    )
    .bind(model.as_str())
    .bind(at_epoch(*first))
    .bind(at_epoch(*last))
    .fetch_all(pool)
    .await?;
    let samples: HashMap<i64, i32> = samples.into_iter().map(|(t, n)| (t.timestamp(), n)).collect();

    // One statement for every window: a month of 5-minute windows is 8,928 rows.
    let mut rows = PoolRows::default();
    for start in starts {
        let (measured, bad) = counts.get(start).copied().unwrap_or((0, 0));
        let workers_live = samples.get(start).copied();
        let figures = PoolFigures {
            contracts_measured: u32::try_from(measured).unwrap_or(u32::MAX),
            contracts_bad: u32::try_from(bad).unwrap_or(u32::MAX),
            workers_live: workers_live.and_then(|n| u32::try_from(n).ok()),
        };
        let (verdict, reasons) = classify_pool(figures);
        let maintained = in_maintenance(maintenance, at_epoch(*start), window_s);
        rows.starts.push(at_epoch(*start));
        rows.measured.push(i32::try_from(measured).unwrap_or(i32::MAX));
        rows.bad.push(i32::try_from(bad).unwrap_or(i32::MAX));
        rows.live.push(workers_live);
        rows.states.push(if maintained { "maintenance" } else { verdict.as_str() });
        let shown: Vec<&str> = if verdict == PoolVerdict::Outage && !maintained {
            reasons.iter().map(|r| r.as_str()).collect()
        } else {
            Vec::new()
        };
        rows.reasons.push(shown.join(","));
    }
    sqlx::query(
        "INSERT INTO sla.pool_windows (model_id, window_start, window_s, contracts_measured, contracts_bad, \
           workers_live, state, reasons) \
         SELECT $1, w.start, $2, w.measured, w.bad, w.live, w.state, string_to_array(w.reasons, ',') \
         FROM unnest($3::timestamptz[], $4::int4[], $5::int4[], $6::int4[], $7::text[], $8::text[]) \
           AS w(start, measured, bad, live, state, reasons) \
         ON CONFLICT (model_id, window_start) DO UPDATE SET window_s = EXCLUDED.window_s, \
           contracts_measured = EXCLUDED.contracts_measured, contracts_bad = EXCLUDED.contracts_bad, \
           workers_live = EXCLUDED.workers_live, state = EXCLUDED.state, reasons = EXCLUDED.reasons",
    )
    .bind(model.as_str())
    .bind(i32::try_from(window_s).unwrap_or(i32::MAX))
    .bind(&rows.starts)
    .bind(&rows.measured)
    .bind(&rows.bad)
    .bind(&rows.live)
    .bind(&rows.states)
    .bind(&rows.reasons)
    .execute(pool)
    .await?;
    Ok(())
}

/// Pool windows as columns, for one `unnest` insert.
#[derive(Default)]
struct PoolRows {
    starts: Vec<DateTime<Utc>>,
    measured: Vec<i32>,
    bad: Vec<i32>,
    live: Vec<Option<i32>>,
    states: Vec<&'static str>,
    /// Comma-joined reason names ('' for none).
    reasons: Vec<String>,
}

/// Records `healthy` workers of `model` in the window holding `now` (the
/// fewest seen while the window runs is kept).
pub async fn sample_workers(pool: &PgPool, model: &ModelId, window_start: DateTime<Utc>, healthy: u32) -> Result<()> {
    sqlx::query(
        "INSERT INTO sla.worker_samples (model_id, window_start, workers_live) VALUES ($1, $2, $3) \
         ON CONFLICT (model_id, window_start) DO UPDATE \
         SET workers_live = LEAST(sla.worker_samples.workers_live, EXCLUDED.workers_live)",
    )
    .bind(model.as_str())
    .bind(window_start)
    .bind(i32::try_from(healthy).unwrap_or(i32::MAX))
    .execute(pool)
    .await?;
    Ok(())
}
