//! Invoice lines: what each charge or credit is, where it came from, and its
//! exact and rounded amounts side by side.

use chrono::{DateTime, Utc};
use reservoir_domain::{Currency, round_half_even};
use reservoir_pricing::TierLine;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// A contract's reservation fee for the part of its term in the month.
    Reservation,
    /// Burst usage at on-demand prices.
    Burst,
    /// Spot usage.
    Spot,
    /// Usage of an earlier month recorded after that month was invoiced:
    /// the difference between its price now and what was billed.
    LateUsage,
    /// An SLA credit (negative).
    SlaCredit,
    /// Credit balance from earlier invoices taken off this one (negative).
    CreditApplied,
    /// What credits left over after bringing this invoice to zero, moved to
    /// the tenant's credit balance (positive, so the total is zero).
    CreditCarried,
}

impl LineKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            LineKind::Reservation => "reservation",
            LineKind::Burst => "burst",
            LineKind::Spot => "spot",
            LineKind::LateUsage => "late_usage",
            LineKind::SlaCredit => "sla_credit",
            LineKind::CreditApplied => "credit_applied",
            LineKind::CreditCarried => "credit_carried",
        }
    }
}

/// What a line's quantity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Seconds of a reservation's term.
    Second,
    /// Millions of weighted tokens.
    MillionWeightedTokens,
    /// An amount of money (credits): the quantity is the amount.
    Money,
}

/// One line of an invoice. Decimals serialize as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    pub contract_id: Option<Uuid>,
    pub model: Option<String>,
    /// The catalog version that priced it.
    pub catalog_version: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub quantity: Decimal,
    pub unit: Unit,
    /// The tiers the quantity fell in, with their unit prices.
    pub tiers: Vec<TierLine>,
    /// The usage window (or term part) the line is for.
    pub usage_from: DateTime<Utc>,
    pub usage_to: DateTime<Utc>,
    /// The record it cites, such as `sla_credit:<id>`.
    pub source: Option<String>,
    /// Exact, at 12 places at most.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub amount_exact: Decimal,
    /// `amount_exact` rounded half to even to the currency's minor unit,
    /// written with exactly that many places.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub amount: Decimal,
}

/// `amount` rounded half to even to `currency`'s minor unit and written
/// with exactly that many places (`12.30`, `1235`, `0.125`).
pub fn rounded_to_minor_unit(amount: Decimal, currency: Currency) -> Decimal {
    let digits = currency.minor_unit_digits();
    let mut rounded = round_half_even(amount, digits);
    rounded.rescale(digits);
    rounded
}
