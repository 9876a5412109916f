//! The REST API's request and response bodies. Amounts are decimal strings
//! with their currency; instants are RFC 3339; unknown fields are refused so
//! that a typo is an error rather than a silently ignored setting.

use chrono::{DateTime, Utc};
use reservoir_domain::{DomainError, Money, ReservationStatus, Term, Tier};
use reservoir_proto::enums::{status_from_pb, term_from_pb, tier_from_pb};
use reservoir_proto::time::instant;
use reservoir_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// What a tenant asks for when quoting or reserving throughput.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationRequest {
    /// Model id, e.g. `smollm2-135m-instruct`.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub model: String,
    /// Reserved throughput in weighted tokens per second (integer > 0).
    #[schema(minimum = 1, maximum = 2147483647)]
    #[serde(deserialize_with = "whole_number")]
    pub rate: u32,
    pub tier: Tier,
    pub term: Term,
    /// Start of the term (RFC 3339); now when omitted.
    pub starts_at: Option<DateTime<Utc>>,
    /// End of the term (RFC 3339). Month and half_year: omit it (taken from
    /// the term) or give exactly the term's end. Hourly: omit it for an
    /// open-ended contract.
    pub ends_at: Option<DateTime<Utc>>,
    /// Whether usage above the rate may spill over as burst (billed on demand). Default true.
    pub allow_burst: Option<bool>,
}

/// The price of a reservation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Price {
    /// Exact price per hour.
    pub per_hour: Money,
    /// Exact price of the whole term; `null` for an open-ended hourly contract.
    pub total_for_term: Option<Money>,
    /// The catalog version that priced it.
    pub catalog_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub id: uuid::Uuid,
    pub tenant: String,
    pub model: String,
    /// Reserved weighted tokens per second.
    pub rate: u32,
    pub tier: Tier,
    pub term: Term,
    pub starts_at: DateTime<Utc>,
    /// `null` for an open-ended hourly contract.
    pub ends_at: Option<DateTime<Utc>>,
    pub status: ReservationStatus,
    pub allow_burst: bool,
    pub price: Price,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReservationList {
    pub reservations: Vec<Reservation>,
}

/// A JSON number with an integral value that fits in u32: JSON Schema counts
/// `1.0` as the integer 1, so the API does too.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    let whole = n.as_u64().or_else(|| {
        n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX)).map(|f| f as u64)
    });
    whole
        .and_then(|w| u32::try_from(w).ok())
        .ok_or_else(|| D::Error::custom(format!("expected a whole number from 0 to {}, got {n}", u32::MAX)))
}

fn optional_whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole_number")] u32);
    Ok(Option::<Whole>::deserialize(d)?.map(|w| w.0))
}

/// An optional field that, when given, must not be empty.
pub fn present(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() => Err(ApiError::invalid(format!("{field} must not be empty"))),
        v => Ok(v),
    }
}

/// `present`, with the proto convention that an empty string means "not given".
pub fn non_empty(field: &str, value: Option<String>) -> Result<String, ApiError> {
    Ok(present(field, value)?.unwrap_or_default())
}

pub fn missing(field: &str) -> ApiError {
    tracing::error!(field, "a service answered without a required field");
    ApiError::internal()
}

/// A service's answer the gateway cannot read is the platform's fault, not
/// the caller's: logged with its cause, answered 500 without it.
pub fn answered<T>(field: &str, value: Result<T, DomainError>) -> Result<T, ApiError> {
    value.map_err(|e| {
        tracing::error!(field, error = %e, "a service answered a value the gateway cannot read");
        ApiError::internal()
    })
}

fn parse_stored<T: std::str::FromStr>(field: &str, s: &str) -> Result<T, ApiError> {
    s.parse().map_err(|_| missing(field))
}

fn money(field: &str, amount: &str, currency: reservoir_domain::Currency) -> Result<Money, ApiError> {
    Ok(Money::new(parse_stored(field, amount)?, currency))
}

impl TryFrom<pb::Reservation> for Reservation {
    type Error = ApiError;

    fn try_from(r: pb::Reservation) -> Result<Self, ApiError> {
        let currency = parse_stored("currency", &r.currency)?;
        Ok(Reservation {
            id: parse_stored("id", &r.id)?,
            tenant: r.tenant_id,
            model: r.model,
            rate: r.rate_tokens_per_s,
            tier: answered("tier", tier_from_pb("tier", r.tier))?,
            term: answered("term", term_from_pb("term", r.term))?,
            starts_at: r.starts_at.as_ref().and_then(instant).ok_or_else(|| missing("starts_at"))?,
            ends_at: r.ends_at.as_ref().and_then(instant),
            status: answered("status", status_from_pb("status", r.status))?,
            allow_burst: r.allow_burst,
            price: Price {
                per_hour: money("price_per_hour", &r.price_per_hour, currency)?,
                total_for_term: r
                    .total_for_term
                    .as_deref()
                    .map(|t| money("total_for_term", t, currency))
                    .transpose()?,
                catalog_version: r.catalog_version,
            },
            idempotency_key: Some(r.idempotency_key).filter(|k| !k.is_empty()),
            created_at: r.created_at.as_ref().and_then(instant).ok_or_else(|| missing("created_at"))?,
            cancelled_at: r.cancelled_at.as_ref().and_then(instant),
            cancel_reason: Some(r.cancel_reason).filter(|k| !k.is_empty()),
        })
    }
}

/// Filters of a tenant's reservation list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReservationFilter {
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub model: Option<String>,
    pub status: Option<ReservationStatus>,
    /// At most this many, newest first (1 to 1000; default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Optional body of a tenant's cancellation.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[schema(max_length = 2000, pattern = r"^[^\x00]*$")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CapacityQuery {
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub model: String,
    /// Start of the window (RFC 3339); now when omitted.
    pub from: Option<DateTime<Utc>>,
    /// End of the window (RFC 3339); 31 days after `from` when omitted.
    pub to: Option<DateTime<Utc>>,
}

/// Free sellable capacity over time, as a step function.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Capacity {
    pub model: String,
    /// Capacity on sale: pool capacity less headroom, weighted tokens/s.
    pub sellable: u32,
    pub steps: Vec<CapacityStep>,
}

/// A constant piece of the step function, from `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CapacityStep {
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub reserved: u32,
    pub free: u32,
}

impl From<pb::GetCapacityResponse> for Capacity {
    fn from(c: pb::GetCapacityResponse) -> Self {
        Capacity {
            model: c.model,
            sellable: c.sellable_tokens_per_s,
            steps: c
                .steps
                .into_iter()
                .filter_map(|s| {
                    Some(CapacityStep {
                        from: s.from.as_ref().and_then(instant)?,
                        to: s.to.as_ref().and_then(instant),
                        reserved: s.reserved_tokens_per_s,
                        free: s.free_tokens_per_s,
                    })
                })
                .collect(),
        }
    }
}

/// A version of the price catalog, with what each model's tokens weigh:
/// prices are per weighted token, so the weights say what a rate buys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogVersion {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub catalog: reservoir_pricing::Catalog,
    /// Every model's weights as they stand now (measured on this pool at
    /// calibration; not part of the versioned catalog).
    pub weights: Vec<ModelWeights>,
}

impl CatalogVersion {
    /// The catalog `c` with the weights of `models`.
    pub fn new(c: pb::Catalog, models: Vec<pb::Model>) -> Result<Self, ApiError> {
        let document = c.document.ok_or_else(|| missing("document"))?;
        Ok(CatalogVersion {
            version: c.version,
            created_at: c.created_at.as_ref().and_then(instant).ok_or_else(|| missing("created_at"))?,
            created_by: c.created_by,
            catalog: answered("document", document.try_into())?,
            weights: models.into_iter().map(ModelWeights::from).collect(),
        })
    }
}

/// What a model's tokens weigh, in weighted tokens: a request costs
/// prompt_tokens x prompt_weight + completion_tokens x completion_weight,
/// and a reservation of N weighted tokens/s serves that much each second.
/// Calibration measures them on this pool (a generated token at the
/// calibration batch weighs 1; a prompt token its prefill time in generated
/// tokens); until it runs they are the defaults 0.25 and 1.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelWeights {
    pub model: String,
    /// Decimal string.
    pub prompt_weight: String,
    /// Decimal string.
    pub completion_weight: String,
    /// Prompt tokens/s one request is prefilled at (0: not measured): a
    /// request's TTFT target is its tier's base + prompt tokens / this.
    pub prefill_tokens_per_s: u32,
}

impl From<pb::Model> for ModelWeights {
    fn from(m: pb::Model) -> Self {
        ModelWeights {
            model: m.id,
            prompt_weight: m.prompt_weight,
            completion_weight: m.completion_weight,
            prefill_tokens_per_s: m.prefill_tokens_per_s,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub currency: String,
    pub created_at: DateTime<Utc>,
}

impl From<pb::Tenant> for Tenant {
    fn from(t: pb::Tenant) -> Self {
        Tenant {
            id: t.id,
            currency: t.currency,
            created_at: t.created_at.as_ref().and_then(instant).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub id: String,
    /// ISO 4217 code; the platform's default currency when omitted.
    #[schema(pattern = r"^[A-Z]{3}$")]
    pub currency: Option<String>,
}

/// A model and its pool capacity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub id: String,
    /// Measured pool capacity, weighted tokens/s.
    pub capacity: u32,
    /// Share of capacity held back from sale, decimal string.
    pub headroom: String,
    /// Capacity on sale: floor(capacity x (1 - headroom)).
    pub sellable: u32,
    /// What a prompt token weighs in weighted tokens (see `ModelWeights`).
    pub prompt_weight: String,
    /// What a generated token weighs: 1 once calibrated.
    pub completion_weight: String,
    /// Prompt tokens/s one request is prefilled at, measured at
    /// calibration (0: not measured). TTFT targets allow prompt / this.
    pub prefill_tokens_per_s: u32,
    pub updated_at: DateTime<Utc>,
}

impl From<pb::Model> for Model {
    fn from(m: pb::Model) -> Self {
        Model {
            id: m.id,
            capacity: m.capacity_tokens_per_s,
            headroom: m.headroom,
            sellable: m.sellable_tokens_per_s,
            prompt_weight: m.prompt_weight,
            completion_weight: m.completion_weight,
            prefill_tokens_per_s: m.prefill_tokens_per_s,
            updated_at: m.updated_at.as_ref().and_then(instant).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<Model>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModel {
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub id: String,
    /// Pool capacity, weighted tokens/s.
    #[schema(minimum = 0, maximum = 2147483647)]
    #[serde(deserialize_with = "whole_number")]
    pub capacity: u32,
    /// Decimal string in [0, 1); default "0.10".
    #[schema(pattern = r"^0(\.[0-9]{1,5})?$")]
    pub headroom: Option<String>,
    /// Decimal string; default "0.25".
    #[schema(pattern = r"^[0-9]{1,3}(\.[0-9]{1,6})?$")]
    pub prompt_weight: Option<String>,
    /// Decimal string; default "1".
    #[schema(pattern = r"^[0-9]{1,3}(\.[0-9]{1,6})?$")]
    pub completion_weight: Option<String>,
    /// Prompt tokens/s one request is prefilled at; default 0 (not measured).
    #[schema(minimum = 0, maximum = 2147483647)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub prefill_tokens_per_s: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPatch {
    #[schema(minimum = 0, maximum = 2147483647)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub capacity: Option<u32>,
    #[schema(pattern = r"^0(\.[0-9]{1,5})?$")]
    pub headroom: Option<String>,
    #[schema(pattern = r"^[0-9]{1,3}(\.[0-9]{1,6})?$")]
    pub prompt_weight: Option<String>,
    #[schema(pattern = r"^[0-9]{1,3}(\.[0-9]{1,6})?$")]
    pub completion_weight: Option<String>,
    #[schema(minimum = 0, maximum = 2147483647)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub prefill_tokens_per_s: Option<u32>,
}

/// Filters of the admin's reservation list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdminReservationFilter {
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub tenant: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub model: Option<String>,
    pub status: Option<ReservationStatus>,
    /// Reservations holding capacity at this instant (RFC 3339).
    pub active_at: Option<DateTime<Utc>>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// An admin's cancellation: a reason is required.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminCancelRequest {
    #[schema(min_length = 1, max_length = 2000, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub reason: String,
}

/// A list limit: 1 to 1000, 1000 when left out.
pub fn list_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(1000),
        Some(l @ 1..=1000) => Ok(l),
        Some(_) => Err(ApiError::invalid("limit must be between 1 and 1000")),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}
