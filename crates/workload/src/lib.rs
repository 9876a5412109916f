//! Benchmark workloads, pure and seeded: no clock, no I/O.
//!
//! - `trace`: request traces (Poisson arrivals, long-tailed prompt lengths,
//!   distinct prompts) that `reservoir bench isolation` sends;
//! - `report`: the figures of a phase from what the client saw of each
//!   request (TTFT quantiles, requests within target, delivered over
//!   demanded, goodput and utilization as useful work);
//! - `shape`: where chat traffic's work sits (mean decode context, mean
//!   prompt-token position), which calibration measures the engine at;
//! - `targets`: the targets the scheduler is held to on those figures, and
//!   whether a run met them.
//!
//! A benchmark that flatters is a defect: the trace never repeats a prompt,
//! and the report counts work in the unit capacity is sold in.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod report;
pub mod shape;
pub mod targets;
pub mod trace;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorkloadError {
    #[error("invalid workload: {0}")]
    Invalid(String),
}
