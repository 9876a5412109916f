//! `reservoir bench <what>`: measurements printed for people, each ending
//! with one JSON line for scripts. Benchmarks are not tests: nothing here
//! asserts a figure.

use clap::Subcommand;

use crate::engine_cli;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Engine throughput on the default model: prefill, decode at batch 1/8/32/64, step time, KV waste, memory.
    Engine(engine_cli::BenchEngineArgs),
    /// Scheduling policy time per decision with 1,000 and 10,000 requests queued, against a measured decode step.
    Sched(engine_cli::ModelArg),
    /// Reserved tenants' service under a spot flood, against plain FCFS: a seeded trace through the gateway's HTTP API (needs DATABASE_URL).
    Isolation(crate::bench_isolation::Args),
    /// Usage records/s from the request path through the spool into PostgreSQL, and memory under a backlog (needs DATABASE_URL).
    Metering(crate::bench_metering::Args),
    /// A month of 1,000,000 usage records for 1,000 tenants rated into draft invoices: records/s, invoices/s, peak memory (needs DATABASE_URL).
    Billing(crate::bench_billing::Args),
    /// Portal pages' response times with 1,000 tenants and 10,000 contracts, against the JSON API (needs DATABASE_URL).
    Portal(crate::bench_portal::Args),
}

pub async fn run(config: &reservoir_platform::Config, what: &BenchCommand) -> anyhow::Result<()> {
    match what {
        BenchCommand::Engine(args) => engine_cli::bench_engine(args),
        BenchCommand::Sched(model) => crate::bench_sched::run(model),
        BenchCommand::Isolation(args) => crate::bench_isolation::run(config, args).await,
        BenchCommand::Metering(args) => crate::bench_metering::run(config, args).await,
        BenchCommand::Billing(args) => crate::bench_billing::run(config, args).await,
        BenchCommand::Portal(args) => crate::bench_portal::run(config, args).await,
    }
}

/// Resident memory of this process now, in KiB (Linux).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
