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

pub async fn list(pool: &PgPool) -> Result<Vec<Tenant>> {
    let rows: Vec<TenantRow> =
        sqlx::query_as("SELECT id, currency, created_at FROM contracts.tenants ORDER BY id LIMIT 10000")
            .fetch_all(pool)
            .await?;
    rows.into_iter().map(from_row).collect()
}

/// `get` inside a transaction.
pub async fn get_in(conn: &mut sqlx::PgConnection, id: &TenantId) -> Result<Tenant> {
    let row: Option<TenantRow> = sqlx::query_as("SELECT id, currency, created_at FROM contracts.tenants WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    from_row(row.ok_or_else(|| ContractsError::NotFound(format!("tenant {id}")))?)
}
