//! Database pool, migrations and the retry rule for serializable transactions.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Every service's schema, one migration folder (each file touches one schema).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How often a transaction that lost a serialization race is retried before
/// the caller gets an error. Each retry waits a little longer.
pub const SERIALIZABLE_RETRIES_MAX: u32 = 30;

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
    Ok(pool)
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.map_err(|e| anyhow::anyhow!("migrations failed: {e}"))
}

/// Whether PostgreSQL aborted the transaction only because it raced another
/// one (serialization failure or deadlock): running it again is safe.
pub fn is_retryable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40001") | Some("40P01")),
        _ => false,
    }
}

/// Whether the database could not be reached or went away (connection
/// refused or lost, pool exhausted, server shutting down: SQLSTATE classes 08
/// and 57P): the request decided nothing, and the caller may retry later.
pub fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Whether the error is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Back-off before retry number `attempt` (1-based): grows linearly with a
/// little jitter so that racing transactions spread out.
pub async fn retry_pause(attempt: u32) {
    let jitter_ms = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8);
    tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 3 + jitter_ms)).await;
}
