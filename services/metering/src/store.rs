//! Usage records in PostgreSQL (schema `metering`): idempotent batch inserts
//! that set refused records aside, and the aggregates the SLA and billing
//! services read.

use chrono::{DateTime, Utc};
use reservoir_domain::UsageRecord;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::MeteringError;

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
    Rejected(String),
}

/// Stores a batch; each record gets its own answer. One statement for the
/// whole batch when the database takes it; when it refuses the batch (a
/// constraint, bytes it cannot store), record by record, so one bad record
/// is set aside and never holds back the others. An unreachable database is
/// an error for the whole call: nothing was decided, the caller retries.
pub async fn insert(pool: &PgPool, records: &[UsageRecord]) -> Result<Vec<Stored>, MeteringError> {
    match insert_batch(pool, records).await {
        Ok(stored) => Ok(stored),
        Err(e) if e.is_unavailable() => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, records = records.len(), "a batch of usage records was refused; storing one by one");
            let mut results = Vec::with_capacity(records.len());
            for record in records {
                match insert_batch(pool, std::slice::from_ref(record)).await {
                    Ok(mut one) => results.push(one.pop().unwrap_or(Stored::Duplicate)),
                    Err(e) if e.is_unavailable() => return Err(e),
                    Err(e) => results.push(Stored::Rejected(e.to_string())),
                }
            }
            Ok(results)
        }
    }
}

async fn insert_batch(pool: &PgPool, records: &[UsageRecord]) -> Result<Vec<Stored>, MeteringError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let text = |f: &dyn Fn(&UsageRecord) -> String| records.iter().map(f).collect::<Vec<String>>();
    let int = |f: &dyn Fn(&UsageRecord) -> u32| {
        records.iter().map(|r| i32::try_from(f(r)).unwrap_or(i32::MAX)).collect::<Vec<i32>>()
    };
    let inserted: Vec<String> = sqlx::query_scalar(
        // One statement: the records it stores (not the duplicates) are
        // added to the hourly rollup, in key order so that two batches lock
        // the rollup's rows in the same order.
        "WITH stored AS (INSERT INTO metering.usage_records (request_id, tenant_id, contract_id, model_id, class, \
         outcome, prompt_tokens, cached_prompt_tokens, completion_tokens, weighted_tokens, demand_weighted_tokens, \
         queue_ms, ttft_ms, total_ms, worker_id, started_at, finished_at, catalog_version) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
         $7::int[], $8::int[], $9::int[], $10::numeric[], $11::numeric[], $12::int[], $13::int[], $14::int[], \
         $15::text[], $16::timestamptz[], $17::timestamptz[], $18::int[]) \
         ON CONFLICT (request_id) DO NOTHING \
         RETURNING request_id, model_id, class, finished_at, weighted_tokens), \
         rolled AS (INSERT INTO metering.usage_hourly (model_id, hour, class, requests, weighted_tokens) \
         SELECT model_id, date_trunc('hour', finished_at, 'UTC'), class, count(*), sum(weighted_tokens) \
         FROM stored GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 \
         ON CONFLICT (model_id, hour, class) DO UPDATE SET requests = usage_hourly.requests + EXCLUDED.requests, \
         weighted_tokens = usage_hourly.weighted_tokens + EXCLUDED.weighted_tokens) \
         SELECT request_id FROM stored",
    )
    .bind(text(&|r| r.request_id.clone()))
    .bind(text(&|r| r.tenant.to_string()))
    .bind(records.iter().map(|r| r.contract).collect::<Vec<Option<Uuid>>>())
    .bind(text(&|r| r.model.to_string()))
    .bind(text(&|r| r.class.to_string()))
    .bind(text(&|r| r.outcome.to_string()))
    .bind(int(&|r| r.prompt_tokens))
    .bind(int(&|r| r.cached_prompt_tokens))
    .bind(int(&|r| r.completion_tokens))
    .bind(records.iter().map(|r| r.weighted_tokens).collect::<Vec<Decimal>>())
    .bind(records.iter().map(|r| r.demand_weighted_tokens).collect::<Vec<Decimal>>())
    .bind(int(&|r| r.queue_ms))
    .bind(records.iter().map(|r| r.ttft_ms.map(|t| i32::try_from(t).unwrap_or(i32::MAX))).collect::<Vec<Option<i32>>>())
    .bind(int(&|r| r.total_ms))
    .bind(text(&|r| r.worker_id.clone()))
    .bind(records.iter().map(|r| r.started_at).collect::<Vec<DateTime<Utc>>>())
    .bind(records.iter().map(|r| r.finished_at).collect::<Vec<DateTime<Utc>>>())
    .bind(int(&|r| r.catalog_version))
    .fetch_all(pool)
    .await?;
    let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
    Ok(records.iter().map(|r| if inserted.contains(&r.request_id) { Stored::New } else { Stored::Duplicate }).collect())
}

/// Keeps a refused record (its wire bytes) with the reason, once: the same
/// bytes refused again (a retried call) are not kept twice.
pub async fn set_aside(pool: &PgPool, request_id: &str, reason: &str, bytes: &[u8]) -> Result<(), MeteringError> {
    sqlx::query(
        "INSERT INTO metering.rejected_records (request_id, reason, record) VALUES ($1, $2, $3) \
         ON CONFLICT (fingerprint) DO NOTHING",
    )
    .bind(printable(request_id, 200))
    .bind(printable(reason, 2000))
    .bind(bytes)
    .execute(pool)
    .await?;
    Ok(())
}

/// Text PostgreSQL always stores: control characters (NUL among them) become
/// '?', and it is cut at `max` characters.
fn printable(s: &str, max: usize) -> String {
    s.chars().take(max).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Total {
    pub tenant_id: String,
    pub contract_id: Option<Uuid>,
    pub class: String,
    pub model_id: String,
    pub catalog_version: i32,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub completion_tokens: i64,
    pub weighted_tokens: Decimal,
    /// Weighted tokens of the requests billed: those that ended well or
    /// that the client cancelled (what it received), not those the
    /// platform failed, interrupted or shed.
    pub billable_weighted_tokens: Decimal,
    /// Midnight UTC of the day, when grouped by day.
    pub day: Option<DateTime<Utc>>,
    pub ok_requests: i64,
    pub shed_requests: i64,
    pub client_cancelled_requests: i64,
    pub platform_error_requests: i64,
    pub interrupted_requests: i64,
}

/// Totals over `[from, to)` by finish time, per tenant, contract, class,
/// model and catalog version (and day).
pub async fn totals(
    pool: &PgPool,
    tenant: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by_day: bool,
) -> Result<Vec<Total>, MeteringError> {
    // `$4` switches the day grouping on; without it every row's day is NULL.
    Ok(sqlx::query_as(
        "SELECT tenant_id, contract_id, class, model_id, catalog_version, count(*) AS requests, \
           COALESCE(sum(prompt_tokens), 0)::int8 AS prompt_tokens, \
           COALESCE(sum(cached_prompt_tokens), 0)::int8 AS cached_prompt_tokens, \
           COALESCE(sum(completion_tokens), 0)::int8 AS completion_tokens, \
           COALESCE(sum(weighted_tokens), 0) AS weighted_tokens, \
           COALESCE(sum(weighted_tokens) FILTER (WHERE outcome IN ('ok', 'client_cancelled')), 0) \
             AS billable_weighted_tokens, \
           CASE WHEN $4 THEN date_trunc('day', finished_at, 'UTC') END AS day, \
           count(*) FILTER (WHERE outcome = 'ok') AS ok_requests, \
           count(*) FILTER (WHERE outcome = 'shed') AS shed_requests, \
           count(*) FILTER (WHERE outcome = 'client_cancelled') AS client_cancelled_requests, \
           count(*) FILTER (WHERE outcome = 'platform_error') AS platform_error_requests, \
           count(*) FILTER (WHERE outcome = 'interrupted') AS interrupted_requests \
         FROM metering.usage_records \
         WHERE ($1::text IS NULL OR tenant_id = $1) AND finished_at >= $2 AND finished_at < $3 \
         GROUP BY tenant_id, contract_id, class, model_id, catalog_version, day \
         ORDER BY day NULLS FIRST, tenant_id, contract_id NULLS LAST, class, model_id, catalog_version",
    )
    .bind(tenant)
    .bind(from)
    .bind(to)
    .bind(by_day)
    .fetch_all(pool)
    .await?)
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub requests: i64,
    pub weighted_tokens: Decimal,
    pub reserved_weighted_tokens: Decimal,
}

/// One model's usage over `[from, to)` by the hour it finished in, in
/// buckets of `bucket_s` seconds (whole hours) aligned to the epoch, from
/// the hourly rollup; empty buckets are left out.
pub async fn series(
    pool: &PgPool,
    model: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_s: u32,
) -> Result<Vec<Bucket>, MeteringError> {
    Ok(sqlx::query_as(
        "SELECT date_bin(make_interval(secs => $4), hour, 'epoch'::timestamptz) AS start, \
           sum(requests)::int8 AS requests, \
           COALESCE(sum(weighted_tokens), 0) AS weighted_tokens, \
           COALESCE(sum(weighted_tokens) FILTER (WHERE class = 'reserved'), 0) AS reserved_weighted_tokens \
         FROM metering.usage_hourly \
         WHERE model_id = $1 AND hour >= $2 AND hour < $3 \
         GROUP BY start ORDER BY start",
    )
    .bind(model)
    .bind(from)
    .bind(to)
    .bind(f64::from(bucket_s))
    .fetch_all(pool)
    .await?)
}

/// A request's TTFT target: `base_ms + prompt_tokens x 1000 / prefill_tokens_per_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtftTarget {
    pub base_ms: u32,
    /// 0: the base alone.
    pub prefill_tokens_per_s: u32,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Window {
    pub contract_id: Uuid,
    pub window_start: DateTime<Utc>,
    pub eligible_requests: i64,
    pub platform_errors: i64,
    pub ttft_ms_p50: Option<i32>,
    pub ttft_ms_p95: Option<i32>,
    pub ttft_missed: i64,
    pub decode_tokens_per_s_median: Option<Decimal>,
    pub demand_weighted_tokens: Decimal,
    pub delivered_weighted_tokens: Decimal,
}

/// Which windows [`windows`] answers.
#[derive(Debug, Clone)]
pub struct WindowQuery {
    /// `None`: every contract.
    pub contract: Option<Uuid>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub window_s: u32,
    pub target: Option<TtftTarget>,
    /// Only windows holding a record stored at or after this instant.
    pub recorded_since: Option<DateTime<Utc>>,
}

/// Per contract and window of `window_s` seconds (aligned to the UTC epoch,
/// by request start) over `[from, to)`, reserved requests only: what the
/// SLA measures. Client cancellations are not eligible; percentiles are
/// nearest-rank; a request misses its TTFT target when its first token came
/// later than it, or never came because the platform failed it.
pub async fn windows(pool: &PgPool, q: &WindowQuery) -> Result<Vec<Window>, MeteringError> {
    let (has_target, base_ms, prefill) = match q.target {
        Some(t) => (true, i64::from(t.base_ms), i64::from(t.prefill_tokens_per_s)),
        None => (false, 0, 0),
    };
    Ok(sqlx::query_as(
        "WITH eligible AS ( \
           SELECT *, to_timestamp(floor(extract(epoch FROM started_at) / $4::int8) * $4::int8) AS window_start \
           FROM metering.usage_records \
           WHERE class = 'reserved' AND contract_id IS NOT NULL AND outcome <> 'client_cancelled' \
             AND ($1::uuid IS NULL OR contract_id = $1) AND started_at >= $2 AND started_at < $3 \
             AND ($8::timestamptz IS NULL OR (contract_id, floor(extract(epoch FROM started_at) / $4::int8)) IN ( \
               SELECT contract_id, floor(extract(epoch FROM started_at) / $4::int8) FROM metering.usage_records \
               WHERE class = 'reserved' AND recorded_at >= $8 AND ($1::uuid IS NULL OR contract_id = $1) \
                 AND started_at >= $2 AND started_at < $3))) \
         SELECT contract_id, window_start, \
           count(*) AS eligible_requests, \
           count(*) FILTER (WHERE outcome IN ('shed', 'platform_error', 'interrupted')) AS platform_errors, \
           percentile_disc(0.5) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_ms_p50, \
           percentile_disc(0.95) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_ms_p95, \
           count(*) FILTER (WHERE $5 AND ( \
             (ttft_ms IS NULL AND outcome IN ('shed', 'platform_error', 'interrupted')) \
             OR ttft_ms > $6 + CASE WHEN $7 > 0 THEN prompt_tokens::int8 * 1000 / $7 ELSE 0 END)) AS ttft_missed, \
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY (completion_tokens - 1) * 1000.0 / (total_ms - ttft_ms)) \
             FILTER (WHERE completion_tokens >= 2 AND ttft_ms IS NOT NULL AND total_ms > ttft_ms)::numeric, 3) \
             AS decode_tokens_per_s_median, \
           COALESCE(sum(demand_weighted_tokens), 0) AS demand_weighted_tokens, \
           COALESCE(sum(weighted_tokens), 0) AS delivered_weighted_tokens \
         FROM eligible GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(q.contract)
    .bind(q.from)
    .bind(q.to)
    .bind(i64::from(q.window_s.max(1)))
    .bind(has_target)
    .bind(base_ms)
    .bind(prefill)
    .bind(q.recorded_since)
    .fetch_all(pool)
    .await?)
}
