//! A usage record: what one request used and how it ended. Metering stores
//! exactly one per request id; the SLA and billing read their aggregates.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{DomainError, ModelId, PriorityClass, TenantId};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Served to its end.
    Ok,
    /// Refused for load (429: a full queue, or past the burst and spot
    /// queue timeout).
    Shed,
    /// The client went away; what ran is still metered.
    ClientCancelled,
    /// The platform failed it: no worker could finish it, or, reserved, it
    /// waited past its queue deadline (answered 503).
    PlatformError,
    /// The scheduler stopped while it ran (recorded at the next start).
    Interrupted,
}

impl Outcome {
    pub const ALL: &'static [Outcome] =
        &[Outcome::Ok, Outcome::Shed, Outcome::ClientCancelled, Outcome::PlatformError, Outcome::Interrupted];

    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Shed => "shed",
            Outcome::ClientCancelled => "client_cancelled",
            Outcome::PlatformError => "platform_error",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// Whether the platform, not the client, is why the request did not
    /// complete (what the SLA counts against a contract).
    pub fn is_platform_failure(&self) -> bool {
        matches!(self, Outcome::Shed | Outcome::PlatformError | Outcome::Interrupted)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, DomainError> {
        Outcome::ALL.iter().copied().find(|o| o.as_str() == s).ok_or_else(|| {
            DomainError::invalid("outcome", "expected ok, shed, client_cancelled, platform_error or interrupted")
        })
    }
}

/// One request's usage, valid by construction at the metering edge.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub request_id: String,
    pub tenant: TenantId,
    /// The contract it was served under; `None` for spot without one.
    pub contract: Option<Uuid>,
    pub model: ModelId,
    pub class: PriorityClass,
    pub outcome: Outcome,
    pub prompt_tokens: u32,
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
    pub weighted_tokens: Decimal,
    pub demand_weighted_tokens: Decimal,
    pub queue_ms: u32,
    pub ttft_ms: Option<u32>,
    pub total_ms: u32,
    pub worker_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The price catalog version in force when the request started (0: unknown).
    pub catalog_version: u32,
}

/// Largest count or duration a record holds (the columns are 32-bit signed).
pub const USAGE_COUNT_MAX: u32 = i32::MAX as u32;

impl UsageRecord {
    /// Checks what types cannot: bounds, and that the parts agree.
    pub fn validate(&self) -> Result<(), DomainError> {
        let invalid = |reason: &str| Err(DomainError::invalid("usage record", reason));
        if crate::check_request_id(&self.request_id).is_err() {
            return invalid("request_id must be 1 to 128 printable ASCII characters");
        }
        if self.worker_id.len() > 128 || self.worker_id.chars().any(|c| c.is_control()) {
            return invalid("worker_id must be at most 128 characters without control characters");
        }
        let counts =
            [self.prompt_tokens, self.cached_prompt_tokens, self.completion_tokens, self.queue_ms, self.total_ms];
        if counts.iter().chain(self.ttft_ms.iter()).any(|c| *c > USAGE_COUNT_MAX) {
            return invalid("token counts and durations must be at most 2147483647");
        }
        if self.cached_prompt_tokens > self.prompt_tokens {
            return invalid("cached_prompt_tokens cannot exceed prompt_tokens");
        }
        if self.weighted_tokens.is_sign_negative() || self.demand_weighted_tokens.is_sign_negative() {
            return invalid("weighted tokens must not be negative");
        }
        if self.contract.is_none() && self.class != PriorityClass::Spot {
            return invalid("a reserved or burst request needs its contract");
        }
        if self.finished_at < self.started_at {
            return invalid("finished_at is before started_at");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_their_names() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), *o);
        }
        assert!("cancelled".parse::<Outcome>().is_err());
    }

    #[test]
    fn only_platform_failures_count_against_the_platform() {
        let failures: Vec<_> = Outcome::ALL.iter().filter(|o| o.is_platform_failure()).collect();
        assert_eq!(failures, [&Outcome::Shed, &Outcome::PlatformError, &Outcome::Interrupted]);
    }
}
