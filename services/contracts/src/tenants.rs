//! Tenants: provisioned on first sight of a valid token, or by an admin.

use chrono::{DateTime, Utc};
use reservoir_domain::{Currency, TenantId};
use sqlx::PgPool;

use crate::error::{ContractsError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub currency: Currency,
    pub created_at: DateTime<Utc>,
}

type TenantRow = (String, String, DateTime<Utc>);

fn from_row((id, currency, created_at): TenantRow) -> Result<Tenant> {
    Ok(Tenant {
        id: id.parse().map_err(|e| ContractsError::Internal(format!("stored tenant id: {e}")))?,
        currency: currency.parse().map_err(|e| ContractsError::Internal(format!("stored currency: {e}")))?,
        created_at,
    })
}

/// Returns the tenant, creating it with `currency` when it does not exist.
/// An existing tenant is never changed.
pub async fn ensure(pool: &PgPool, id: &TenantId, currency: Currency) -> Result<Tenant> {
    sqlx::query("INSERT INTO contracts.tenants (id, currency) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(id.as_str())
        .bind(currency.as_str())
        .execute(pool)
        .await?;
    get(pool, id).await
}

/// Creates a tenant; the same id with the same currency is the first answer
/// again, with another currency a conflict.
pub async fn create(pool: &PgPool, id: &TenantId, currency: Currency) -> Result<Tenant> {
    let tenant = ensure(pool, id, currency).await?;
    if tenant.currency != currency {
        return Err(ContractsError::conflict(format!("tenant {id} already exists with currency {}", tenant.currency)));
    }
    Ok(tenant)
}

pub async fn get(pool: &PgPool, id: &TenantId) -> Result<Tenant> {
    let mut conn = pool.acquire().await?;
    get_in(&mut conn, id).await
}

/// Most tenants one list answers.
pub const LIST_LIMIT_MAX: u32 = 10_000;

/// Which tenants a list answers: ids containing `search` (any case), in id
/// order, `limit` of them (0 means `LIST_LIMIT_MAX`) after `offset`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page<'a> {
    pub search: &'a str,
    pub limit: u32,
    pub offset: u32,
}

/// One page of tenants, and how many match in all.
pub async fn list(pool: &PgPool, page: &Page<'_>) -> Result<(Vec<Tenant>, u64)> {
    let limit = if page.limit == 0 { LIST_LIMIT_MAX } else { page.limit.min(LIST_LIMIT_MAX) };
    // LIKE's own wildcards in the search are matched as themselves.
    let pattern = format!("%{}%", page.search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let rows: Vec<TenantRow> = sqlx::query_as(
        "SELECT id, currency, created_at FROM contracts.tenants WHERE id ILIKE $1 ORDER BY id LIMIT $2 OFFSET $3",
    )
    .bind(&pattern)
    .bind(i64::from(limit))
    .bind(i64::from(page.offset))
    .fetch_all(pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as("SELECT count(*) FROM contracts.tenants WHERE id ILIKE $1")
        .bind(&pattern)
        .fetch_one(pool)
        .await?;
    Ok((rows.into_iter().map(from_row).collect::<Result<_>>()?, u64::try_from(total).unwrap_or(0)))
}

/// `get` inside a transaction.
pub async fn get_in(conn: &mut sqlx::PgConnection, id: &TenantId) -> Result<Tenant> {
    let row: Option<TenantRow> = sqlx::query_as("SELECT id, currency, created_at FROM contracts.tenants WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    from_row(row.ok_or_else(|| ContractsError::NotFound(format!("tenant {id}")))?)
}
