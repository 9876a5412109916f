//! Pure pricing of Reservoir: the price catalog, graduated and volume tier
//! tables, proration to the second, and reservation quotes.
//!
//! Nothing here does I/O, reads the clock or touches floats: every function
//! is a pure function of its arguments, so the same catalog version and the
//! same request give the same price to the last decimal, on any machine.
//!
//! # Rounding rule
//!
//! Written down once, used by every function of this crate:
//!
//! 1. Catalog numbers (tier bounds, prices, fees, multipliers, discounts) and
//!    quantities have at most [`INTERNAL_SCALE`] (12) decimal places;
//!    validation refuses more, so inputs are taken exactly as written.
//! 2. Every amount the crate computes is rounded half to even to
//!    [`INTERNAL_SCALE`] decimal places at the step that computes it. With
//!    catalogs priced to 6 decimal places or fewer and the quantities the
//!    platform uses (whole tokens/s, tokens / 1,000,000) products never need
//!    more than 12 places, so tier charges and hourly prices are exact; only
//!    proration (a division by 3,600 seconds) ever rounds. Computed amounts
//!    carry no trailing zeros (`26.2`); catalog numbers echoed in a
//!    breakdown keep the text they were written with (`0.0100`).
//! 3. Amounts are rounded to the currency's minor unit, half to even
//!    ([`reservoir_domain::Money::rounded`]), only where a line is presented
//!    as a total (`*_rounded` fields of a [`Quote`]; invoice lines in billing).
//! 4. Every amount, quantity and catalog number stays below [`AMOUNT_LIMIT`]
//!    (10^16): with 12 places that is the 28 digits `Decimal` holds, so sums
//!    of amounts never round. Every operation is checked: reaching the limit
//!    is [`PricingError::Overflow`], never a panic and never a wrapped value.
//!
//! Proration splits a period so that consecutive parts add up exactly to the
//! whole: see [`prorate_span`] for the approach, and [`TierTable`] for the
//! tier semantics.

// In tests a failed unwrap is a failed test, with the value in the message.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod amount;
mod catalog;
mod error;
mod fee;
mod prorate;
mod quote;
#[cfg(feature = "openapi")]
mod schema;
mod tiers;

pub use amount::{AMOUNT_LIMIT, INTERNAL_SCALE};
pub use catalog::{BUILTIN_MODEL, Catalog, ModelPrices};
pub use error::PricingError;
pub use fee::{ReservationTerms, credit_amount, reservation_fee};
pub use prorate::{SECONDS_PER_HOUR, prorate, prorate_elapsed, prorate_span, prorate_span_to_scale};
pub use quote::{Quote, QuoteRequest, quote, quote_in};
pub use tiers::{PriceTier, TIERS_MAX, TierLine, TierMode, TierTable, TieredCharge, millions_of, price_tokens};
