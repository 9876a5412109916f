//! Reading reservation rows.

use chrono::{DateTime, Utc};
use reservoir_domain::{ModelId, ReservationStatus, TenantId};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::Reservation;
use crate::error::{ContractsError, Result};

/// Most rows one list answers.
pub const LIST_LIMIT_MAX: u32 = 1000;

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: String,
    model_id: String,
    rate_tokens_per_s: i32,
    tier: String,
    term: String,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    allow_burst: bool,
    catalog_version: i64,
    currency: String,
    price_per_hour: Decimal,
    total_for_term: Option<Decimal>,
    idempotency_key: Option<String>,
    created_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
    cancelled_by: Option<String>,
    cancel_reason: Option<String>,
}

macro_rules! select_reservation {
    ($rest:literal) => {
        concat!(
            "SELECT id, tenant_id, model_id, rate_tokens_per_s, tier, term, starts_at, ends_at, allow_burst, \
             catalog_version, currency, price_per_hour, total_for_term, idempotency_key, created_at, \
             cancelled_at, cancelled_by, cancel_reason FROM contracts.reservations ",
            $rest
        )
    };
}

fn from_row(r: Row) -> Result<Reservation> {
    let bad = |what: &str, e: &dyn std::fmt::Display| ContractsError::Internal(format!("stored {what}: {e}"));
    Ok(Reservation {
        id: r.id,
        tenant: r.tenant_id.parse().map_err(|e| bad("tenant", &e))?,
        model: r.model_id.parse().map_err(|e| bad("model", &e))?,
        rate_tokens_per_s: u32::try_from(r.rate_tokens_per_s).map_err(|e| bad("rate", &e))?,
        tier: r.tier.parse().map_err(|e| bad("tier", &e))?,
        term: r.term.parse().map_err(|e| bad("term", &e))?,
        starts_at: r.starts_at,
        ends_at: r.ends_at,
        allow_burst: r.allow_burst,
        catalog_version: r.catalog_version,
        currency: r.currency,
        price_per_hour: r.price_per_hour,
        total_for_term: r.total_for_term,
        idempotency_key: r.idempotency_key,
        created_at: r.created_at,
        cancelled_at: r.cancelled_at,
        cancelled_by: r.cancelled_by,
        cancel_reason: r.cancel_reason,
    })
}

fn not_found(id: Uuid) -> ContractsError {
    ContractsError::NotFound(format!("reservation {id}"))
}

/// The reservation `id`; when `tenant` is given it must be theirs, and another
/// tenant's reservation is reported as not found (never as forbidden).
pub async fn get(pool: &PgPool, id: Uuid, tenant: Option<&TenantId>) -> Result<Reservation> {
    let mut conn = pool.acquire().await?;
    get_in(&mut conn, id, tenant).await
}

pub async fn get_in(conn: &mut PgConnection, id: Uuid, tenant: Option<&TenantId>) -> Result<Reservation> {
    let row: Option<Row> =
        sqlx::query_as(select_reservation!("WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)"))
            .bind(id)
            .bind(tenant.map(TenantId::as_str))
            .fetch_optional(&mut *conn)
            .await?;
    from_row(row.ok_or_else(|| not_found(id))?)
}

pub async fn get_for_update(conn: &mut PgConnection, id: Uuid, tenant: Option<&TenantId>) -> Result<Reservation> {
    let row: Option<Row> =
        sqlx::query_as(select_reservation!("WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2) FOR UPDATE"))
            .bind(id)
            .bind(tenant.map(TenantId::as_str))
            .fetch_optional(&mut *conn)
            .await?;
    from_row(row.ok_or_else(|| not_found(id))?)
}

/// The reservation and request fingerprint stored under an idempotency key.
pub async fn by_idempotency_key(
    conn: &mut PgConnection,
    tenant: &TenantId,
    key: &str,
) -> Result<Option<(Uuid, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, request_fingerprint FROM contracts.reservations WHERE tenant_id = $1 AND idempotency_key = $2",
    )
    .bind(tenant.as_str())
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The column a list is ordered by (ties by id, in the same direction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    CreatedAt,
    Tenant,
    Model,
    Rate,
    StartsAt,
}

impl SortBy {
    /// The column, from this fixed list only: it is written into the SQL.
    fn column(self) -> &'static str {
        match self {
            SortBy::CreatedAt => "created_at",
            SortBy::Tenant => "tenant_id",
            SortBy::Model => "model_id",
            SortBy::Rate => "rate_tokens_per_s",
            SortBy::StartsAt => "starts_at",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub tenant: Option<TenantId>,
    pub model: Option<ModelId>,
    pub status: Option<ReservationStatus>,
    /// Reservations holding capacity at this instant.
    pub active_at: Option<DateTime<Utc>>,
    /// Reservations running at some instant of `[from, to)`.
    pub running: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Rows after this reservation in the default order (newest first).
    pub page_after: Option<Uuid>,
    /// At most this many rows (default and maximum `LIST_LIMIT_MAX`).
    pub limit: Option<u32>,
    pub sort: SortBy,
    /// Smallest first; the default order is newest first.
    pub ascending: bool,
    /// Rows skipped before the first one answered.
    pub offset: u32,
}

/// The filter's conditions, `$1`..`$7` as `bind_filter` binds them. The
/// CASE is the SQL twin of `Reservation::status`.
const LIST_WHERE: &str = "WHERE ($1::text IS NULL OR tenant_id = $1) \
       AND ($2::text IS NULL OR model_id = $2) \
       AND ($3::text IS NULL OR $3 = CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled' \
            WHEN ends_at IS NOT NULL AND ends_at <= now() THEN 'expired' \
            WHEN starts_at <= now() THEN 'active' ELSE 'scheduled' END) \
       AND ($4::timestamptz IS NULL OR (starts_at <= $4 AND (ends_at IS NULL OR ends_at > $4) \
            AND (cancelled_at IS NULL OR cancelled_at > $4))) \
       AND ($5::timestamptz IS NULL OR (starts_at < $6 AND (ends_at IS NULL OR ends_at > $5) \
            AND (cancelled_at IS NULL OR (cancelled_at > $5 AND cancelled_at > starts_at)))) \
       AND ($7::uuid IS NULL OR (created_at, id) < \
            (SELECT created_at, id FROM contracts.reservations WHERE id = $7))";

pub async fn list(pool: &PgPool, filter: &ListFilter) -> Result<Vec<Reservation>> {
    if filter.page_after.is_some() && (filter.sort != SortBy::CreatedAt || filter.ascending || filter.offset > 0) {
        return Err(ContractsError::Invalid("page_after pages the default order only (no sort, no offset)".into()));
    }
    let limit = filter.limit.filter(|l| *l > 0).unwrap_or(LIST_LIMIT_MAX).min(LIST_LIMIT_MAX);
    let direction = if filter.ascending { "ASC" } else { "DESC" };
    let sql = format!(
        "{} {LIST_WHERE} ORDER BY {column} {direction}, id {direction} LIMIT $8 OFFSET $9",
        select_reservation!(""),
        column = filter.sort.column(),
    );
    // Audited: the only text put into the SQL is `LIST_WHERE` and a column
    // and direction from fixed lists.
    let rows: Vec<Row> = bind_filter(sqlx::query_as(sqlx::AssertSqlSafe(sql)), filter)
        .bind(i64::from(limit))
        .bind(i64::from(filter.offset))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(from_row).collect()
}

/// How many reservations match the filter (order and paging aside).
pub async fn count(pool: &PgPool, filter: &ListFilter) -> Result<u64> {
    let sql = format!("SELECT count(*) FROM contracts.reservations {LIST_WHERE}");
    let whole = ListFilter { page_after: None, ..filter.clone() };
    let (n,): (i64,) = bind_filter(sqlx::query_as(sqlx::AssertSqlSafe(sql)), &whole).fetch_one(pool).await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

type ListQuery<'q, O> = sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

/// Binds `$1`..`$7` of `LIST_WHERE`, in order.
fn bind_filter<'q, O>(query: ListQuery<'q, O>, filter: &ListFilter) -> ListQuery<'q, O> {
    query
        .bind(filter.tenant.as_ref().map(|t| t.as_str().to_owned()))
        .bind(filter.model.as_ref().map(|m| m.as_str().to_owned()))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.active_at)
        .bind(filter.running.map(|(from, _)| from))
        .bind(filter.running.map(|(_, to)| to))
        .bind(filter.page_after)
}

/// Reservations holding capacity at `at`: (model, tier, how many, summed rate).
pub async fn summarize(pool: &PgPool, at: DateTime<Utc>) -> Result<Vec<(String, String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT model_id, tier, count(*), COALESCE(sum(rate_tokens_per_s), 0)::int8 \
         FROM contracts.reservations \
         WHERE starts_at <= $1 AND (ends_at IS NULL OR ends_at > $1) AND (cancelled_at IS NULL OR cancelled_at > $1) \
         GROUP BY model_id, tier ORDER BY model_id, tier",
    )
    .bind(at)
    .fetch_all(pool)
    .await?)
}
