//! Pure domain types shared by every Reservoir crate and service.
//!
//! Nothing here does I/O. Every type validates on construction (`FromStr` /
//! `new`), so a value of one of these types is always valid: services parse
//! wire input into these types once, at their edge.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod capacity;
mod ids;
pub mod limits;
mod money;
mod period;
mod plan;
mod time;
mod usage;

pub use ids::{ModelId, ReservationId, TenantId, WorkerId};
pub use money::{Currency, Money, round_half_even};
pub use period::Period;
pub use plan::{PriorityClass, ReservationStatus, Role, Term, Tier};
pub use time::{TimeRange, term_end};
pub use usage::{Outcome, USAGE_COUNT_MAX, UsageRecord};

pub use limits::{check_idempotency_key, check_request_id, is_printable_id};

/// Every way a domain value can be invalid. Messages are meant for API users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

impl DomainError {
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        DomainError::Invalid { what, reason: reason.into() }
    }
}
