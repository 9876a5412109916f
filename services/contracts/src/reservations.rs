//! Reservations: quoting, the capacity-checked create, reads, cancellation.

use chrono::{DateTime, Duration, DurationRound, Utc};
use reservoir_domain::capacity::{Holding, peak_reserved};
use reservoir_domain::{ModelId, ReservationStatus, TenantId, Term, Tier, TimeRange};
use reservoir_pricing::{Quote, QuoteRequest};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{ContractsError, Result};
use crate::{catalog, ledger, models, tenants};

/// How far in the past a requested start may lie (clock skew of clients).
const START_PAST_TOLERANCE: Duration = Duration::minutes(5);
/// How far ahead a reservation may start.
const START_FUTURE_MAX: Duration = Duration::days(2 * 366);

/// A reservation as the tenant asked for it. Fields left out get defaults
/// only after the request's fingerprint is taken, so a retry of the same
/// request always has the same fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReservation {
    pub tenant: TenantId,
    pub model: ModelId,
    pub rate_tokens_per_s: u32,
    pub tier: Tier,
    pub term: Term,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub allow_burst: Option<bool>,
    pub idempotency_key: Option<String>,
}

impl NewReservation {
    fn fingerprint(&self) -> String {
        let canonical = serde_json::json!({
            "model": self.model.as_str(),
            "rate": self.rate_tokens_per_s,
            "tier": self.tier.as_str(),
            "term": self.term.as_str(),
            "starts_at": self.starts_at.map(|t| t.to_rfc3339()),
            "ends_at": self.ends_at.map(|t| t.to_rfc3339()),
            "allow_burst": self.allow_burst,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }

    pub fn validate(&self) -> Result<()> {
        if self.rate_tokens_per_s == 0 || i32::try_from(self.rate_tokens_per_s).is_err() {
            return Err(ContractsError::Invalid(format!("rate must be between 1 and {}", i32::MAX)));
        }
        if let Some(key) = &self.idempotency_key {
            reservoir_domain::check_idempotency_key(key)?;
        }
        Ok(())
    }
}

/// PostgreSQL keeps microseconds: keep every instant at that precision so that
/// what we answer is what we stored.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::microseconds(1)).unwrap_or(t)
}

/// The quote for `req` at the newest catalog, with defaults applied.
pub async fn quote(conn: &mut PgConnection, req: &NewReservation, now: DateTime<Utc>) -> Result<Quote> {
    req.validate()?;
    let starts_at = to_micros(req.starts_at.unwrap_or(now));
    if starts_at < now - START_PAST_TOLERANCE {
        return Err(ContractsError::Invalid("starts_at lies in the past".into()));
    }
    if starts_at > now + START_FUTURE_MAX {
        return Err(ContractsError::Invalid("starts_at lies more than two years ahead".into()));
    }
    let current = catalog::get(&mut *conn, None).await?;
    // Priced in the tenant's currency, from the catalog's price list in it.
    let currency = match tenants::get_in(&mut *conn, &req.tenant).await {
        Ok(tenant) => tenant.currency,
        Err(ContractsError::NotFound(_)) => current.catalog.currency,
        Err(e) => return Err(e),
    };
    let quote = reservoir_pricing::quote_in(
        &current.catalog,
        &QuoteRequest {
            model: req.model.clone(),
            rate_tokens_per_s: req.rate_tokens_per_s,
            tier: req.tier,
            term: req.term,
            starts_at,
            ends_at: req.ends_at.map(to_micros),
        },
        currency,
    )?;
    Ok(quote)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub id: Uuid,
    pub tenant: TenantId,
    pub model: ModelId,
    pub rate_tokens_per_s: u32,
    pub tier: Tier,
    pub term: Term,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub allow_burst: bool,
    pub catalog_version: i64,
    pub currency: String,
    pub price_per_hour: Decimal,
    pub total_for_term: Option<Decimal>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<String>,
    pub cancel_reason: Option<String>,
}

impl Reservation {
    /// Status is derived from the clock, so it is never stale.
    pub fn status(&self, now: DateTime<Utc>) -> ReservationStatus {
        if self.cancelled_at.is_some() {
            ReservationStatus::Cancelled
        } else if self.ends_at.is_some_and(|e| e <= now) {
            ReservationStatus::Expired
        } else if self.starts_at <= now {
            ReservationStatus::Active
        } else {
            ReservationStatus::Scheduled
        }
    }
}

mod rows;
pub use rows::{ListFilter, SortBy, count, get, list, summarize};

/// Creates a reservation when the model's pool has room for it at every
/// instant of its term; one serializable transaction, idempotent by
/// (tenant, idempotency key).
pub async fn create(pool: &PgPool, req: &NewReservation) -> Result<Reservation> {
    req.validate()?;
    let fingerprint = req.fingerprint();
    ledger::in_serializable_tx(pool, |tx| {
        let req = req.clone();
        let fingerprint = fingerprint.clone();
        Box::pin(async move { create_in(tx, &req, &fingerprint).await })
    })
    .await
}

async fn create_in(tx: &mut PgConnection, req: &NewReservation, fingerprint: &str) -> Result<Reservation> {
    if let Some(key) = &req.idempotency_key
        && let Some((id, stored_fingerprint)) = rows::by_idempotency_key(&mut *tx, &req.tenant, key).await?
    {
        if stored_fingerprint != fingerprint {
            return Err(ContractsError::Conflict {
                message: "this Idempotency-Key was already used with a different request".into(),
                details: serde_json::json!({ "reservation_id": id }),
            });
        }
        return rows::get_in(&mut *tx, id, Some(&req.tenant)).await;
    }
    let tenant = tenants::get_in(&mut *tx, &req.tenant).await?;
    let model = models::get_with(&mut *tx, &req.model, true).await?;
    let quote = quote(&mut *tx, req, Utc::now()).await?;
    if quote.currency != tenant.currency {
        return Err(ContractsError::Invalid(format!(
            "the catalog prices in {} but tenant {} is billed in {}",
            quote.currency, tenant.id, tenant.currency
        )));
    }
    let range = TimeRange::new(quote.starts_at, quote.ends_at)?;
    let holdings: Vec<Holding> =
        ledger::holdings(&mut *tx, &req.model, range).await?.into_iter().map(|r| r.holding).collect();
    let sellable = u64::from(model.sellable_tokens_per_s());
    let peak = peak_reserved(&holdings, range);
    let free = sellable.saturating_sub(peak);
    if u64::from(req.rate_tokens_per_s) > free {
        return Err(ContractsError::Conflict {
            message: format!(
                "not enough capacity: {free} weighted tokens/s of {} are free for the whole term \
                 (sellable {sellable}, reserved at peak {peak}); asked for {}",
                req.model, req.rate_tokens_per_s
            ),
            details: serde_json::json!({
                "available_tokens_per_s": free,
                "sellable_tokens_per_s": sellable,
                "reserved_peak_tokens_per_s": peak,
                "requested_tokens_per_s": req.rate_tokens_per_s,
            }),
        });
    }
    let id = Uuid::now_v7();
    let quote_json = serde_json::to_value(&quote).map_err(|e| ContractsError::Internal(format!("quote: {e}")))?;
    sqlx::query(
        "INSERT INTO contracts.reservations (id, tenant_id, model_id, rate_tokens_per_s, tier, term, \
         starts_at, ends_at, allow_burst, catalog_version, currency, price_per_hour, total_for_term, quote, \
         idempotency_key, request_fingerprint) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(id)
    .bind(req.tenant.as_str())
    .bind(req.model.as_str())
    .bind(i32::try_from(req.rate_tokens_per_s).unwrap_or(i32::MAX))
    .bind(req.tier.as_str())
    .bind(req.term.as_str())
    .bind(quote.starts_at)
    .bind(quote.ends_at)
    .bind(req.allow_burst.unwrap_or(true))
    .bind(quote.catalog_version)
    .bind(quote.currency.as_str())
    .bind(quote.price_per_hour)
    .bind(quote.total_for_term.map(|m| m.amount))
    .bind(quote_json)
    .bind(req.idempotency_key.as_deref())
    .bind(fingerprint)
    .execute(&mut *tx)
    .await?;
    rows::get_in(&mut *tx, id, None).await
}

/// Who asks to cancel, and why.
#[derive(Debug, Clone)]
pub struct Cancellation {
    pub id: Uuid,
    /// When set, the reservation must belong to this tenant.
    pub tenant: Option<TenantId>,
    pub by_admin: bool,
    pub reason: Option<String>,
    pub cancelled_by: String,
}

/// Cancels by the term's rules: hourly any time; month and half_year only
/// by an admin who gives a reason. Capacity is freed from now on.
pub async fn cancel(pool: &PgPool, c: &Cancellation) -> Result<Reservation> {
    if c.by_admin && c.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ContractsError::Invalid("an admin cancellation needs a reason".into()));
    }
    if c.reason.as_ref().is_some_and(|r| r.chars().count() > 2000 || r.contains('\0')) {
        return Err(ContractsError::Invalid("reason must be at most 2000 characters of text without NUL".into()));
    }
    ledger::in_serializable_tx(pool, |tx| {
        let c = c.clone();
        Box::pin(async move {
            let r = rows::get_for_update(&mut *tx, c.id, c.tenant.as_ref()).await?;
            let now = Utc::now();
            match r.status(now) {
                ReservationStatus::Cancelled => {
                    return Err(ContractsError::conflict(format!("reservation {} is already cancelled", r.id)));
                }
                ReservationStatus::Expired => {
                    return Err(ContractsError::conflict(format!("reservation {} has already expired", r.id)));
                }
                ReservationStatus::Scheduled | ReservationStatus::Active => {}
            }
            if !r.term.tenant_may_cancel_early() && !c.by_admin {
                let end = r.ends_at.map(|e| e.to_rfc3339()).unwrap_or_default();
                return Err(ContractsError::conflict(format!(
                    "a {} contract cannot be cancelled before it ends at {end}",
                    r.term
                )));
            }
            sqlx::query(
                "UPDATE contracts.reservations SET cancelled_at = $2, cancelled_by = $3, cancel_reason = $4 \
                 WHERE id = $1",
            )
            .bind(r.id)
            .bind(to_micros(now))
            .bind(&c.cancelled_by)
            .bind(c.reason.as_deref())
            .execute(&mut *tx)
            .await?;
            rows::get_in(&mut *tx, r.id, None).await
        })
    })
    .await
}
