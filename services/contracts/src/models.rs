//! Models and their pool capacity. Lowering capacity below what is already
//! sold is refused, naming the reservations in the way.

use chrono::{DateTime, Utc};
use reservoir_domain::ModelId;
use reservoir_domain::capacity::sellable_tokens_per_s;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};

use crate::error::{ContractsError, Result};
use crate::ledger;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub id: ModelId,
    pub capacity_tokens_per_s: u32,
    pub headroom: Decimal,
    pub prompt_weight: Decimal,
    pub completion_weight: Decimal,
    /// Prompt tokens/s one request is prefilled at, as measured at
    /// calibration; 0 until measured. TTFT targets allow prompt / this.
    pub prefill_tokens_per_s: u32,
    pub updated_at: DateTime<Utc>,
}

impl Model {
    pub fn sellable_tokens_per_s(&self) -> u32 {
        sellable_tokens_per_s(self.capacity_tokens_per_s, self.headroom)
    }
}

/// Settings of a model; `None` keeps the current (or default) value.
#[derive(Debug, Clone, Default)]
pub struct ModelChange {
    pub capacity_tokens_per_s: Option<u32>,
    pub headroom: Option<Decimal>,
    pub prompt_weight: Option<Decimal>,
    pub completion_weight: Option<Decimal>,
    pub prefill_tokens_per_s: Option<u32>,
}

impl ModelChange {
    pub fn validate(&self) -> Result<()> {
        for (name, rate) in [("capacity", self.capacity_tokens_per_s), ("prefill rate", self.prefill_tokens_per_s)] {
            if let Some(r) = rate
                && i32::try_from(r).is_err()
            {
                return Err(ContractsError::Invalid(format!("{name} must be at most {}", i32::MAX)));
            }
        }
        // The columns keep 5 and 6 decimal places: refuse more rather than round.
        if let Some(h) = self.headroom
            && (h < Decimal::ZERO || h >= Decimal::ONE || h.normalize().scale() > 5)
        {
            return Err(ContractsError::Invalid(
                "headroom must be at least 0 and below 1, with at most 5 decimal places".into(),
            ));
        }
        for (name, w) in [("prompt_weight", self.prompt_weight), ("completion_weight", self.completion_weight)] {
            if let Some(w) = w
                && (w < Decimal::ZERO || w >= Decimal::from(1000) || w.normalize().scale() > 6)
            {
                return Err(ContractsError::Invalid(format!(
                    "{name} must be at least 0 and below 1000, with at most 6 decimal places"
                )));
            }
        }
        Ok(())
    }
}

type ModelRow = (String, i32, Decimal, Decimal, Decimal, i32, DateTime<Utc>);

fn from_row(
    (id, capacity, headroom, prompt_weight, completion_weight, prefill, updated_at): ModelRow,
) -> Result<Model> {
    Ok(Model {
        id: id.parse().map_err(|e| ContractsError::Internal(format!("stored model id: {e}")))?,
        capacity_tokens_per_s: u32::try_from(capacity).unwrap_or(0),
        headroom,
        prompt_weight,
        completion_weight,
        prefill_tokens_per_s: u32::try_from(prefill).unwrap_or(0),
        updated_at,
    })
}

/// Creates a model; the same id with the same settings answers the existing
/// model again, other settings are a conflict (use update).
pub async fn create(pool: &PgPool, id: &ModelId, settings: &ModelChange) -> Result<Model> {
    settings.validate()?;
    let capacity =
        settings.capacity_tokens_per_s.ok_or_else(|| ContractsError::Invalid("capacity is required".into()))?;
    let inserted = sqlx::query(
        "INSERT INTO contracts.models \
           (id, capacity_tokens_per_s, headroom, prompt_weight, completion_weight, prefill_tokens_per_s) \
         VALUES ($1, $2, COALESCE($3, 0.10), COALESCE($4, 0.25), COALESCE($5, 1), COALESCE($6, 0)) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(i32::try_from(capacity).unwrap_or(i32::MAX))
    .bind(settings.headroom)
    .bind(settings.prompt_weight)
    .bind(settings.completion_weight)
    .bind(settings.prefill_tokens_per_s.map(|r| i32::try_from(r).unwrap_or(i32::MAX)))
    .execute(pool)
    .await?
    .rows_affected();
    let model = get(pool, id).await?;
    let same = model.capacity_tokens_per_s == capacity
        && settings.headroom.is_none_or(|h| h == model.headroom)
        && settings.prompt_weight.is_none_or(|w| w == model.prompt_weight)
        && settings.completion_weight.is_none_or(|w| w == model.completion_weight)
        && settings.prefill_tokens_per_s.is_none_or(|r| r == model.prefill_tokens_per_s);
    if inserted == 0 && !same {
        return Err(ContractsError::conflict(format!(
            "model {id} already exists with other settings; change it with PATCH"
        )));
    }
    Ok(model)
}

pub async fn get(pool: &PgPool, id: &ModelId) -> Result<Model> {
    let mut conn = pool.acquire().await?;
    get_with(&mut conn, id, false).await
}

/// Reads a model; with `lock`, holds its row until the transaction ends, which
/// serializes every capacity decision on that model.
pub async fn get_with(conn: &mut PgConnection, id: &ModelId, lock: bool) -> Result<Model> {
    let row: Option<ModelRow> = if lock {
        sqlx::query_as(
            "SELECT id, capacity_tokens_per_s, headroom, prompt_weight, completion_weight, prefill_tokens_per_s, updated_at \
             FROM contracts.models WHERE id = $1 FOR UPDATE",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?
    } else {
        sqlx::query_as(
            "SELECT id, capacity_tokens_per_s, headroom, prompt_weight, completion_weight, prefill_tokens_per_s, updated_at \
             FROM contracts.models WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?
    };
    from_row(row.ok_or_else(|| ContractsError::NotFound(format!("model {id}")))?)
}

pub async fn list(pool: &PgPool) -> Result<Vec<Model>> {
    let rows: Vec<ModelRow> = sqlx::query_as(
        "SELECT id, capacity_tokens_per_s, headroom, prompt_weight, completion_weight, prefill_tokens_per_s, updated_at \
         FROM contracts.models ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(from_row).collect()
}

/// Changes a model's settings. When the sellable capacity would drop below
/// what is sold at some instant from now on, nothing changes and the answer
/// names the reservations in the way.
pub async fn update(pool: &PgPool, id: &ModelId, change: &ModelChange) -> Result<Model> {
    change.validate()?;
    ledger::in_serializable_tx(pool, |tx| {
        let change = change.clone();
        let id = id.clone();
        Box::pin(async move {
            let current = get_with(&mut *tx, &id, true).await?;
            let next = Model {
                capacity_tokens_per_s: change.capacity_tokens_per_s.unwrap_or(current.capacity_tokens_per_s),
                headroom: change.headroom.unwrap_or(current.headroom),
                prompt_weight: change.prompt_weight.unwrap_or(current.prompt_weight),
                completion_weight: change.completion_weight.unwrap_or(current.completion_weight),
                prefill_tokens_per_s: change.prefill_tokens_per_s.unwrap_or(current.prefill_tokens_per_s),
                ..current.clone()
            };
            if next.sellable_tokens_per_s() < current.sellable_tokens_per_s() {
                ledger::check_capacity_covers_sales(&mut *tx, &id, next.sellable_tokens_per_s()).await?;
            }
            sqlx::query(
                "UPDATE contracts.models SET capacity_tokens_per_s = $2, headroom = $3, prompt_weight = $4, \
                 completion_weight = $5, prefill_tokens_per_s = $6, updated_at = now() WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(i32::try_from(next.capacity_tokens_per_s).unwrap_or(i32::MAX))
            .bind(next.headroom)
            .bind(next.prompt_weight)
            .bind(next.completion_weight)
            .bind(i32::try_from(next.prefill_tokens_per_s).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await?;
            get_with(&mut *tx, &id, false).await
        })
    })
    .await
}
