//! Pure SLA logic of Reservoir: what each tier promises, whether a window of
//! a contract's measured usage kept the promise, monthly availability, the
//! credit schedule, and how bad windows become incidents.
//!
//! Nothing here does I/O or reads the clock: the SLA service fetches the
//! figures from metering, passes the time in, and stores what these
//! functions decide. Comparisons against percentages are exact (integer or
//! `Decimal` arithmetic, never floats), so "exactly at the target" is never a
//! matter of rounding.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod availability;
mod credit;
mod incident;
mod policy;
mod window;

pub use availability::{Availability, Maintenance, windows_overlapping};
pub use credit::credit_share;
pub use incident::{IncidentStep, next_step};
pub use policy::TierPolicy;
pub use window::{BadReason, PoolFigures, PoolVerdict, Verdict, WindowFigures, classify, classify_pool};

/// Default SLA window: five minutes, aligned to UTC.
pub const WINDOW_S_DEFAULT: u32 = 300;
