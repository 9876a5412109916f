//! Usage records in PostgreSQL: idempotent batch inserts and the queries the
//! SLA and billing services run.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::record::UsageRecord;
use crate::error::MeteringError;

/// Inserts a batch in one statement; records whose request id is already
/// stored are skipped. Answers how many were new.
pub async fn insert(pool: &PgPool, records: &[UsageRecord]) -> Result<u64, MeteringError> {
    if records.is_empty() {
        return Ok(0);
    }
    let col = |f: &dyn Fn(&UsageRecord) -> String| records.iter().map(f).collect::<Vec<String>>();
    let int = |f: &dyn Fn(&UsageRecord) -> u32| {
        records.iter().map(|r| i32::try_from(f(r)).unwrap_or(i32::MAX)).collect::<Vec<i32>>()
    };
    let result = sqlx::query(
        "INSERT INTO metering.usage_records (request_id, tenant_id, contract_id, model_id, class, outcome, \
         prompt_tokens, cached_prompt_tokens, completion_tokens, weighted_tokens, demand_weighted_tokens, \
         queue_ms, ttft_ms, total_ms, worker_id, started_at, finished_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
         $7::int[], $8::int[], $9::int[], $10::numeric[], $11::numeric[], $12::int[], $13::int[], $14::int[], \
         $15::text[], $16::timestamptz[], $17::timestamptz[]) \
         ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(col(&|r| r.request_id.clone()))
    .bind(col(&|r| r.tenant.to_string()))
    .bind(records.iter().map(|r| r.contract).collect::<Vec<Option<Uuid>>>())
    .bind(col(&|r| r.model.to_string()))
    .bind(col(&|r| r.class.to_string()))
    .bind(col(&|r| r.outcome.as_str().to_owned()))
    .bind(int(&|r| r.prompt_tokens))
    .bind(int(&|r| r.cached_prompt_tokens))
    .bind(int(&|r| r.completion_tokens))
    .bind(records.iter().map(|r| r.weighted_tokens).collect::<Vec<Decimal>>())
    .bind(records.iter().map(|r| r.demand_weighted_tokens).collect::<Vec<Decimal>>())
    .bind(int(&|r| r.queue_ms))
    .bind(records.iter().map(|r| r.ttft_ms.map(|t| i32::try_from(t).unwrap_or(i32::MAX))).collect::<Vec<Option<i32>>>())
    .bind(int(&|r| r.total_ms))
    .bind(col(&|r| r.worker_id.clone()))
    .bind(records.iter().map(|r| r.started_at).collect::<Vec<DateTime<Utc>>>())
    .bind(records.iter().map(|r| r.finished_at).collect::<Vec<DateTime<Utc>>>())
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Total {
    pub tenant_id: String,
    pub contract_id: Option<Uuid>,
    pub class: String,
    pub model_id: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub completion_tokens: i64,
    pub weighted_tokens: Decimal,
    /// Midnight UTC of the day, when grouped by day.
    pub day: Option<DateTime<Utc>>,
}

/// Totals over `[from, to)` by finish time, per tenant, contract, class and model.
pub async fn totals(
    pool: &PgPool,
    tenant: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by_day: bool,
) -> Result<Vec<Total>, MeteringError> {
    // `$4` switches the day grouping on; without it every row's day is NULL.
    Ok(sqlx::query_as(
        "SELECT tenant_id, contract_id, class, model_id, count(*) AS requests, \
           COALESCE(sum(prompt_tokens), 0)::int8 AS prompt_tokens, \
           COALESCE(sum(cached_prompt_tokens), 0)::int8 AS cached_prompt_tokens, \
           COALESCE(sum(completion_tokens), 0)::int8 AS completion_tokens, \
           COALESCE(sum(weighted_tokens), 0) AS weighted_tokens, \
           CASE WHEN $4 THEN date_trunc('day', finished_at, 'UTC') END AS day \
         FROM metering.usage_records \
         WHERE ($1::text IS NULL OR tenant_id = $1) AND finished_at >= $2 AND finished_at < $3 \
         GROUP BY tenant_id, contract_id, class, model_id, day \
         ORDER BY day NULLS FIRST, tenant_id, contract_id NULLS LAST, class, model_id",
    )
    .bind(tenant)
    .bind(from)
    .bind(to)
    .bind(by_day)
    .fetch_all(pool)
    .await?)
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Window {
    pub contract_id: Uuid,
    pub window_start: DateTime<Utc>,
    pub eligible_requests: i64,
    pub platform_errors: i64,
    pub ttft_ms_p95: Option<i32>,
    pub demand_weighted_tokens: Decimal,
    pub delivered_weighted_tokens: Decimal,
}

/// Per contract and 5-minute window (by request start) over `[from, to)`,
/// reserved requests only: what the SLA measures. Client cancellations are
/// not eligible; TTFT p95 is the nearest-rank 95th percentile.
pub async fn windows(
    pool: &PgPool,
    contract: Option<Uuid>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Window>, MeteringError> {
    Ok(sqlx::query_as(
        "SELECT contract_id, \
           to_timestamp(floor(extract(epoch FROM started_at) / 300) * 300) AS window_start, \
           count(*) FILTER (WHERE outcome <> 'client_cancelled') AS eligible_requests, \
           count(*) FILTER (WHERE outcome = 'platform_error') AS platform_errors, \
           percentile_disc(0.95) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_ms_p95, \
           COALESCE(sum(demand_weighted_tokens), 0) AS demand_weighted_tokens, \
           COALESCE(sum(weighted_tokens), 0) AS delivered_weighted_tokens \
         FROM metering.usage_records \
         WHERE class = 'reserved' AND contract_id IS NOT NULL \
           AND ($1::uuid IS NULL OR contract_id = $1) AND started_at >= $2 AND started_at < $3 \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(contract)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?)
}
