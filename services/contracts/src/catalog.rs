//! The price catalog: immutable versions, the newest one quotes.

use chrono::{DateTime, Utc};
use reservoir_pricing::Catalog;
use sqlx::{PgConnection, PgPool};

use crate::error::{ContractsError, Result};
use crate::ledger;

#[derive(Debug, Clone)]
pub struct CatalogVersion {
    pub catalog: Catalog,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

type Row = (i64, serde_json::Value, DateTime<Utc>, String);

fn from_row((version, document, created_at, created_by): Row) -> Result<CatalogVersion> {
    let mut catalog: Catalog = serde_json::from_value(document)
        .map_err(|e| ContractsError::Internal(format!("stored catalog {version}: {e}")))?;
    catalog.version = version;
    Ok(CatalogVersion { catalog, created_at, created_by })
}

/// The catalog `version`, or the newest one when `version` is `None`.
pub async fn get(conn: &mut PgConnection, version: Option<i64>) -> Result<CatalogVersion> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT version, document, created_at, created_by FROM contracts.catalog_versions \
         WHERE $1::bigint IS NULL OR version = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => from_row(row),
        None => Err(ContractsError::NotFound(match version {
            Some(v) => format!("catalog version {v}"),
            None => "catalog".into(),
        })),
    }
}

/// Publishes `catalog` as the next version, after validating it whole.
pub async fn publish(pool: &PgPool, mut catalog: Catalog, published_by: &str) -> Result<CatalogVersion> {
    // The version is assigned below; validate everything else first.
    catalog.version = 1;
    catalog.validate()?;
    if serde_json::to_string(&catalog).is_ok_and(|json| json.contains("\\u0000")) {
        return Err(ContractsError::Invalid("the catalog contains a NUL character".into()));
    }
    if published_by.is_empty() || published_by.len() > 200 {
        return Err(ContractsError::Invalid("publisher must be 1 to 200 bytes".into()));
    }
    ledger::in_serializable_tx(pool, |tx| {
        let mut catalog = catalog.clone();
        let published_by = published_by.to_owned();
        Box::pin(async move {
            let (latest,): (Option<i64>,) =
                sqlx::query_as("SELECT max(version) FROM contracts.catalog_versions").fetch_one(&mut *tx).await?;
            catalog.version = latest.unwrap_or(0) + 1;
            let document = serde_json::to_value(&catalog)
                .map_err(|e| ContractsError::Internal(format!("catalog to JSON: {e}")))?;
            sqlx::query("INSERT INTO contracts.catalog_versions (version, document, created_by) VALUES ($1, $2, $3)")
                .bind(catalog.version)
                .bind(document)
                .bind(&published_by)
                .execute(&mut *tx)
                .await?;
            get(&mut *tx, Some(catalog.version)).await
        })
    })
    .await
}
