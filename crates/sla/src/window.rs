//! Whether one window of a contract kept its tier's promise, and whether a
//! model's pool did.
//!
//! A contract's window is bad when, among its eligible requests,
//! - more than 5% failed for platform reasons (`platform_errors`),
//! - more than 5% missed their own TTFT target (`ttft_missed`),
//! - the median decode speed is below the tier's floor (`decode_below_floor`),
//! - or delivered weighted tokens are below 95% of min(demand, reserved rate
//!   x window length) (`throughput_short`).
//!
//! A window without eligible requests is good. Every comparison is exact.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::TierPolicy;

/// Percent of eligible requests that may fail, or miss their TTFT target,
/// before a window is bad ("more than 5%").
const FAILURE_PERCENT_MAX: u128 = 5;
/// Delivered must reach this share of what was owed.
const DELIVERED_SHARE_MIN: Decimal = Decimal::from_parts(95, 0, 0, false, 2);

/// What metering measured for one contract in one window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowFigures {
    pub eligible_requests: u64,
    pub platform_errors: u64,
    pub ttft_missed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rust_decimal::serde::str_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub decode_tokens_per_s_median: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub demand_weighted_tokens: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub delivered_weighted_tokens: Decimal,
}

/// Why a window is bad; several can hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BadReason {
    PlatformErrors,
    TtftMissed,
    DecodeBelowFloor,
    ThroughputShort,
    /// Pool only: no worker of the model could serve.
    WorkersDown,
    /// Pool only: at least half of the contracts measured had a bad window.
    ContractsBreached,
}

impl BadReason {
    pub const ALL: [BadReason; 6] = [
        BadReason::PlatformErrors,
        BadReason::TtftMissed,
        BadReason::DecodeBelowFloor,
        BadReason::ThroughputShort,
        BadReason::WorkersDown,
        BadReason::ContractsBreached,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            BadReason::PlatformErrors => "platform_errors",
            BadReason::TtftMissed => "ttft_missed",
            BadReason::DecodeBelowFloor => "decode_below_floor",
            BadReason::ThroughputShort => "throughput_short",
            BadReason::WorkersDown => "workers_down",
            BadReason::ContractsBreached => "contracts_breached",
        }
    }

    pub fn parse(s: &str) -> Option<BadReason> {
        BadReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The decision on one window: bad when `reasons` is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub reasons: Vec<BadReason>,
}

impl Verdict {
    pub fn is_bad(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// `part / whole > percent / 100`, exactly.
fn more_than_percent(part: u64, whole: u64, percent: u128) -> bool {
    u128::from(part) * 100 > u128::from(whole) * percent
}

/// Classifies one window of a contract reserving `reserved_tokens_per_s`
/// at `policy`'s tier, `window_s` seconds long.
pub fn classify(figures: &WindowFigures, policy: &TierPolicy, reserved_tokens_per_s: u32, window_s: u32) -> Verdict {
    let mut reasons = Vec::new();
    if figures.eligible_requests == 0 {
        return Verdict { reasons };
    }
    if more_than_percent(figures.platform_errors, figures.eligible_requests, FAILURE_PERCENT_MAX) {
        reasons.push(BadReason::PlatformErrors);
    }
    if more_than_percent(figures.ttft_missed, figures.eligible_requests, FAILURE_PERCENT_MAX) {
        reasons.push(BadReason::TtftMissed);
    }
    if figures.decode_tokens_per_s_median.is_some_and(|m| m < policy.decode_floor_tokens_per_s) {
        reasons.push(BadReason::DecodeBelowFloor);
    }
    // u32 x u32 fits a Decimal exactly; so does x 0.95 (two more places).
    let reserved = Decimal::from(u64::from(reserved_tokens_per_s) * u64::from(window_s));
    let owed = figures.demand_weighted_tokens.min(reserved);
    if figures.delivered_weighted_tokens < owed * DELIVERED_SHARE_MIN {
        reasons.push(BadReason::ThroughputShort);
    }
    Verdict { reasons }
}

/// A model's pool in one window: how many of its contracts had traffic, how
/// many of those windows were bad, and how many workers could serve (when
/// known).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFigures {
    pub contracts_measured: u32,
    pub contracts_bad: u32,
    pub workers_live: Option<u32>,
}

/// The pool's state in a window, as the status page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PoolVerdict {
    Operational,
    /// Some contracts had a bad window, fewer than half of those measured:
    /// shown, not counted as downtime.
    Degraded,
    /// At least half of the measured contracts had a bad window, or no
    /// worker could serve: downtime, and a pool incident.
    Outage,
}

impl PoolVerdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            PoolVerdict::Operational => "operational",
            PoolVerdict::Degraded => "degraded",
            PoolVerdict::Outage => "outage",
        }
    }

    pub fn parse(s: &str) -> Option<PoolVerdict> {
        [PoolVerdict::Operational, PoolVerdict::Degraded, PoolVerdict::Outage].into_iter().find(|v| v.as_str() == s)
    }
}

/// Classifies a pool window: "bad for many contracts at once" is at least
/// half of the contracts that had traffic (so one contract alone on a model
/// is enough), and workers down is an outage with or without traffic.
pub fn classify_pool(figures: PoolFigures) -> (PoolVerdict, Vec<BadReason>) {
    let mut reasons = Vec::new();
    if figures.workers_live == Some(0) {
        reasons.push(BadReason::WorkersDown);
    }
    let many_bad =
        figures.contracts_bad > 0 && 2 * u64::from(figures.contracts_bad) >= u64::from(figures.contracts_measured);
    if many_bad {
        reasons.push(BadReason::ContractsBreached);
    }
    if !reasons.is_empty() {
        (PoolVerdict::Outage, reasons)
    } else if figures.contracts_bad > 0 {
        (PoolVerdict::Degraded, reasons)
    } else {
        (PoolVerdict::Operational, reasons)
    }
}

#[cfg(test)]
mod tests;
