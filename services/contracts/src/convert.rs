//! Proto <-> domain conversions: the only place proto types are looked at.
//! Validation happens here, once; errors name the offending field.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use reservoir_proto::v1 as pb;
use rust_decimal::Decimal;

use crate::api_tokens::ApiToken;
use crate::error::{ContractsError, Result};
use crate::models::Model;
use crate::reservations::Reservation;
use crate::tenants::Tenant;

pub use reservoir_proto::time::timestamp;

pub fn instant(field: &str, t: &Timestamp) -> Result<DateTime<Utc>> {
    reservoir_proto::time::instant(t).ok_or_else(|| ContractsError::Invalid(format!("{field} is not a valid instant")))
}

pub fn optional_instant(field: &str, t: Option<&Timestamp>) -> Result<Option<DateTime<Utc>>> {
    t.map(|t| instant(field, t)).transpose()
}

pub fn parse<T: std::str::FromStr<Err = reservoir_domain::DomainError>>(s: &str) -> Result<T> {
    Ok(s.parse::<T>()?)
}

/// Empty strings mean "not given" in proto3.
pub fn optional<T: std::str::FromStr<Err = reservoir_domain::DomainError>>(s: &str) -> Result<Option<T>> {
    if s.is_empty() { Ok(None) } else { parse(s).map(Some) }
}

/// A non-negative decimal written plainly: digits, optionally a point and
/// more digits (no sign, exponent or spaces), as the API documents.
pub fn decimal(field: &str, s: &str) -> Result<Decimal> {
    reservoir_proto::pricing::plain_decimal(s)
        .ok_or_else(|| ContractsError::Invalid(format!("{field} must be a decimal number such as \"0.25\"")))
}

/// `None` and (proto3's "not given") the empty string are both absent.
pub fn optional_decimal(field: &str, s: Option<&str>) -> Result<Option<Decimal>> {
    match s {
        None | Some("") => Ok(None),
        Some(s) => decimal(field, s).map(Some),
    }
}

pub fn uuid(field: &str, s: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|_| ContractsError::NotFound(format!("{field} {s:?}")))
}

impl From<Tenant> for pb::Tenant {
    fn from(t: Tenant) -> Self {
        pb::Tenant { id: t.id.to_string(), currency: t.currency.to_string(), created_at: Some(timestamp(t.created_at)) }
    }
}

impl From<ApiToken> for pb::ApiToken {
    fn from(t: ApiToken) -> Self {
        pb::ApiToken {
            id: t.id.to_string(),
            tenant_id: t.tenant.to_string(),
            name: t.name,
            created_at: Some(timestamp(t.created_at)),
            expires_at: Some(timestamp(t.expires_at)),
            revoked_at: t.revoked_at.map(timestamp),
        }
    }
}

impl From<Model> for pb::Model {
    fn from(m: Model) -> Self {
        pb::Model {
            sellable_tokens_per_s: m.sellable_tokens_per_s(),
            id: m.id.to_string(),
            capacity_tokens_per_s: m.capacity_tokens_per_s,
            headroom: m.headroom.normalize().to_string(),
            prompt_weight: m.prompt_weight.normalize().to_string(),
            completion_weight: m.completion_weight.normalize().to_string(),
            prefill_tokens_per_s: m.prefill_tokens_per_s,
            updated_at: Some(timestamp(m.updated_at)),
        }
    }
}

pub fn reservation(r: Reservation, now: DateTime<Utc>) -> pb::Reservation {
    pb::Reservation {
        status: pb::ReservationStatus::from(r.status(now)).into(),
        id: r.id.to_string(),
        tenant_id: r.tenant.to_string(),
        model: r.model.to_string(),
        rate_tokens_per_s: r.rate_tokens_per_s,
        tier: pb::Tier::from(r.tier).into(),
        term: pb::Term::from(r.term).into(),
        starts_at: Some(timestamp(r.starts_at)),
        ends_at: r.ends_at.map(timestamp),
        catalog_version: r.catalog_version,
        currency: r.currency,
        price_per_hour: r.price_per_hour.to_string(),
        total_for_term: r.total_for_term.map(|t| t.to_string()),
        idempotency_key: r.idempotency_key.unwrap_or_default(),
        created_at: Some(timestamp(r.created_at)),
        cancelled_at: r.cancelled_at.map(timestamp),
        cancel_reason: r.cancel_reason.unwrap_or_default(),
        cancelled_by: r.cancelled_by.unwrap_or_default(),
        allow_burst: r.allow_burst,
    }
}
