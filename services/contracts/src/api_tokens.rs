//! API tokens a tenant issues and revokes from the console. This service
//! keeps only what makes a token manageable (id, name, expiry, revocation);
//! the gateway signs the token itself and never stores it.

use chrono::{DateTime, Utc};
use reservoir_domain::TenantId;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{ContractsError, Result};
use crate::tenants;

/// Longest life a token may be issued for.
pub const LIFETIME_DAYS_MAX: u32 = 365;
/// Longest name, in characters.
pub const NAME_CHARS_MAX: usize = 64;
/// Tokens a tenant may hold at once (neither revoked nor expired): enough
/// for one per service and environment, few enough that a runaway script
/// cannot fill the table.
pub const ACTIVE_PER_TENANT_MAX: i64 = 25;

/// Most tokens a list answers, newest first.
const LISTED_MAX: i64 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: Uuid,
    pub tenant: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// Whether the token may be used at `now`.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

type TokenRow = (Uuid, String, String, DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>);

fn from_row((id, tenant, name, created_at, expires_at, revoked_at): TokenRow) -> Result<ApiToken> {
    let tenant = tenant.parse().map_err(|e| ContractsError::Internal(format!("stored tenant id: {e}")))?;
    Ok(ApiToken { id, tenant, name, created_at, expires_at, revoked_at })
}

/// The columns every query answers, in `TokenRow`'s order.
macro_rules! columns {
    () => {
        "id, tenant_id, name, created_at, expires_at, revoked_at"
    };
}

/// The name as stored: trimmed, 1 to 64 printable characters.
fn checked_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(ContractsError::Invalid(format!(
            "name must be 1 to {NAME_CHARS_MAX} printable characters, such as \"billing-sync\""
        )));
    }
    Ok(name.to_owned())
}

/// Records a new token for `tenant`, living `lifetime_days`. Refused while
/// the tenant already holds `ACTIVE_PER_TENANT_MAX` usable tokens; the count
/// and the insert are one transaction under the tenant's row lock, so two
/// concurrent requests cannot both take the last place.
pub async fn create(pool: &PgPool, tenant: &TenantId, name: &str, lifetime_days: u32) -> Result<ApiToken> {
    let name = checked_name(name)?;
    if !(1..=LIFETIME_DAYS_MAX).contains(&lifetime_days) {
        return Err(ContractsError::Invalid(format!("lifetime_days must be 1 to {LIFETIME_DAYS_MAX}")));
    }
    let mut tx = pool.begin().await?;
    let locked: Option<(String,)> = sqlx::query_as("SELECT id FROM contracts.tenants WHERE id = $1 FOR UPDATE")
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if locked.is_none() {
        return Err(ContractsError::NotFound(format!("tenant {tenant}")));
    }
    let (active,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM contracts.api_tokens WHERE tenant_id = $1 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(tenant.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if active >= ACTIVE_PER_TENANT_MAX {
        return Err(ContractsError::conflict(format!(
            "tenant {tenant} already holds {ACTIVE_PER_TENANT_MAX} active API tokens; revoke one first"
        )));
    }
    let row: TokenRow = sqlx::query_as(concat!(
        "INSERT INTO contracts.api_tokens (id, tenant_id, name, expires_at)
         VALUES ($1, $2, $3, now() + $4 * interval '1 day') RETURNING ",
        columns!()
    ))
    .bind(Uuid::new_v4())
    .bind(tenant.as_str())
    .bind(&name)
    .bind(i32::try_from(lifetime_days).unwrap_or(1))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    from_row(row)
}

/// The tenant's token `id`; another tenant's token is not found.
pub async fn get(pool: &PgPool, tenant: &TenantId, id: Uuid) -> Result<ApiToken> {
    let row: Option<TokenRow> =
        sqlx::query_as(concat!("SELECT ", columns!(), " FROM contracts.api_tokens WHERE id = $1 AND tenant_id = $2"))
            .bind(id)
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?;
    from_row(row.ok_or_else(|| ContractsError::NotFound(format!("API token {id}")))?)
}

/// The tenant's tokens, newest first; NOT_FOUND for an unknown tenant.
pub async fn list(pool: &PgPool, tenant: &TenantId) -> Result<Vec<ApiToken>> {
    tenants::get(pool, tenant).await?;
    // Revoked and expired tokens stay listed for 90 days after they ended,
    // so their holder can see what happened.
    let rows: Vec<TokenRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM contracts.api_tokens
         WHERE tenant_id = $1 AND coalesce(revoked_at, expires_at) > now() - interval '90 days'
         ORDER BY created_at DESC, id LIMIT $2"
    ))
    .bind(tenant.as_str())
    .bind(LISTED_MAX)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(from_row).collect()
}

/// Revokes the tenant's token `id`; revoking it again answers the first
/// revocation unchanged.
pub async fn revoke(pool: &PgPool, tenant: &TenantId, id: Uuid) -> Result<ApiToken> {
    sqlx::query(
        "UPDATE contracts.api_tokens SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(tenant.as_str())
    .execute(pool)
    .await?;
    get(pool, tenant, id).await
}
