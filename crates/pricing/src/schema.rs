//! Schema-only types for the OpenAPI document: they describe the JSON form of
//! maps whose keys are a closed set, so API clients see which keys are needed.

#![allow(dead_code)]

use utoipa::ToSchema;

/// Price multiplier per SLA tier (decimal strings > 0); all three tiers.
#[derive(ToSchema)]
pub struct TierMultipliers {
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$", example = "1.0")]
    standard: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$", example = "1.5")]
    premium: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$", example = "2.5")]
    enterprise: String,
}

/// Discount per term as a decimal fraction in [0, 1); all three terms.
#[derive(ToSchema)]
pub struct TermDiscounts {
    #[schema(pattern = r"^0(\.[0-9]+)?$", example = "0")]
    hourly: String,
    #[schema(pattern = r"^0(\.[0-9]+)?$", example = "0.20")]
    month: String,
    #[schema(pattern = r"^0(\.[0-9]+)?$", example = "0.35")]
    half_year: String,
}
