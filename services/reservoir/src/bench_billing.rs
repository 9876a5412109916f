//! `reservoir bench billing [--quick]`: rates a month of 1,000,000 usage
//! records for 1,000 tenants into their draft invoices, and prints records/s,
//! invoices/s and peak memory. Needs DATABASE_URL (a database of its own is
//! made and dropped).
//!
//! Seeding (not measured): 1,000 month contracts through the contracts
//! service, then 1,000,000 distinct usage records written straight into
//! metering's table with one SQL statement (reserved, burst and spot
//! requests of varied sizes, spread over the month).
//!
//! Measured: `billing run` for the month, as an admin starts it: gathering
//! from the contracts, metering and SLA services over gRPC (metering
//! aggregates the records in SQL), rating every tenant, and storing each
//! draft in its own transaction. The baseline, measured in the same run, is
//! PostgreSQL alone aggregating the same records (the floor any billing run
//! pays). A second run recomputes the same drafts. Peak memory is this
//! process's resident set (billing, contracts, metering and SLA services
//! all run in it; PostgreSQL is another process).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use reservoir_domain::Period;
use reservoir_platform::{Config, Given, Service};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_runtime::{Shutdown, db};

use crate::bench::rss_kib;

const MODEL: &str = reservoir_pricing::BUILTIN_MODEL;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// 100,000 records for 100 tenants (finishes within a minute).
    #[arg(long)]
    quick: bool,
}

pub async fn run(config: &Config, args: &Args) -> anyhow::Result<()> {
    let (tenants, records): (u32, u64) = if args.quick { (100, 100_000) } else { (1_000, 1_000_000) };
    let admin_url = config.database_url()?.to_owned();
    let name = format!("bench_billing_{}", uuid::Uuid::new_v4().simple());
    let admin = db::connect(&admin_url, 2).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await?;
    let url = format!("{}/{name}", admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url));
    let result = measure(config, &url, tenants, records).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await?;
    result
}

async fn measure(config: &Config, url: &str, tenants: u32, records: u64) -> anyhow::Result<()> {
    let pool = db::connect(url, 16).await?;
    db::migrate(&pool).await?;
    reservoir_contracts::seed_model(&pool, &MODEL.parse()?, 1_000_000, rust_decimal::Decimal::new(10, 2)).await?;

    let mut config = config.clone();
    // The services listen on the loopback of this process: no internal token.
    config.internal.token = None;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    for listen in
        [&mut config.contracts.listen, &mut config.metering.listen, &mut config.sla.listen, &mut config.billing.listen]
    {
        *listen = loopback;
    }
    // The jobs stay out of the way: the bench runs the period itself.
    config.sla.job_interval_s = 86_400;
    config.billing.job_interval_s = 86_400;
    let services = [Service::Contracts, Service::Metering, Service::Sla, Service::Billing];
    let platform =
        reservoir_platform::build(config, &services, Given { pool: Some(pool.clone()), ..Given::default() }).await?;
    let billing = platform.billing().ok_or_else(|| anyhow::anyhow!("no billing service"))?;
    let contracts_url = platform.endpoints.contracts.clone().unwrap_or_default();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(platform.run_until_stopped(shutdown.clone()));

    // Next month, whole: contracts can start then, and the clock handed to
    // the run is just after it.
    let month = Period::containing(chrono::Utc::now())?.next().ok_or_else(|| anyhow::anyhow!("no next month"))?;
    let seeding = Instant::now();
    let contracts = ContractServiceClient::connect(contracts_url).await?;
    let ids = seed_contracts(contracts, tenants, month).await?;
    seed_usage(&pool, &ids, records, month).await?;
    sqlx::query("ANALYZE metering.usage_records").execute(&pool).await?;
    println!(
        "seeded {tenants} tenants with a month contract each and {records} usage records in {:.1} s (not measured)",
        seeding.elapsed().as_secs_f64()
    );

    // Baseline: PostgreSQL aggregating the same records, as metering does.
    let t = Instant::now();
    let groups: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT tenant_id, contract_id, class, model_id, catalog_version, \
           sum(weighted_tokens) FILTER (WHERE outcome IN ('ok', 'client_cancelled')) \
         FROM metering.usage_records WHERE finished_at >= $1 AND finished_at < $2 GROUP BY 1, 2, 3, 4, 5) g",
    )
    .bind(month.start())
    .bind(month.end())
    .fetch_one(&pool)
    .await?;
    let baseline = t.elapsed();

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak.max(rss_kib())
        })
    };
    let before = rss_kib();
    let now = month.end() + TimeDelta::hours(3);
    let t = Instant::now();
    let report =
        reservoir_billing_service::run::run_period(&billing.pool, &billing.peers, month, "bench", billing.grace, now)
            .await?;
    let first = t.elapsed();
    let t = Instant::now();
    let again =
        reservoir_billing_service::run::run_period(&billing.pool, &billing.peers, month, "bench", billing.grace, now)
            .await?;
    let second = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await?;
    let invoices: i64 = sqlx::query_scalar("SELECT count(*) FROM billing.invoices").fetch_one(&pool).await?;
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM billing.invoice_lines").fetch_one(&pool).await?;
    anyhow::ensure!(
        invoices == i64::from(tenants) && report.drafted == tenants && again.drafted == tenants,
        "one draft per tenant"
    );

    let secs = first.as_secs_f64();
    println!("month {month}: {records} records, {groups} usage groups, {invoices} draft invoices, {lines} lines");
    println!("baseline: PostgreSQL aggregates the records in {:.2} s", baseline.as_secs_f64());
    println!(
        "billing run: {:.2} s = {:.0} records/s, {:.0} invoices/s ({:.1}x the baseline)",
        secs,
        records as f64 / secs,
        f64::from(tenants) / secs,
        secs / baseline.as_secs_f64().max(1e-9)
    );
    println!("second run (recomputes the same drafts): {:.2} s", second.as_secs_f64());
    println!("peak resident memory of this process: {} MiB (before the run: {} MiB)", peak / 1024, before / 1024);
    println!(
        "{}",
        serde_json::json!({
            "bench": "billing", "records": records, "tenants": tenants, "invoices": invoices,
            "run_s": secs, "records_per_s": records as f64 / secs, "invoices_per_s": f64::from(tenants) / secs,
            "baseline_aggregate_s": baseline.as_secs_f64(), "second_run_s": second.as_secs_f64(),
            "peak_rss_mib": peak / 1024,
        })
    );
    shutdown.trigger();
    running.await??;
    pool.close().await;
    Ok(())
}

/// One month contract per tenant (`bench-tenant-0001`...), 8 at a time.
async fn seed_contracts(
    client: ContractServiceClient<tonic::transport::Channel>,
    tenants: u32,
    month: Period,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut ids = Vec::with_capacity(tenants as usize);
    for chunk in (0..tenants).collect::<Vec<_>>().chunks(8) {
        let mut tasks = Vec::new();
        for &n in chunk {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                let tenant = format!("bench-tenant-{n:04}");
                client.ensure_tenant(pb::EnsureTenantRequest { id: tenant.clone() }).await?;
                let tier = [pb::Tier::Standard, pb::Tier::Premium, pb::Tier::Enterprise][n as usize % 3];
                let order = pb::QuoteRequest {
                    tenant_id: tenant.clone(),
                    model: MODEL.into(),
                    rate_tokens_per_s: 5 + n % 200,
                    tier: tier.into(),
                    term: pb::Term::Month.into(),
                    starts_at: Some(timestamp(month.start())),
                    ends_at: None,
                };
                let request = pb::CreateReservationRequest {
                    order: Some(order),
                    idempotency_key: tenant.clone(),
                    allow_burst: None,
                };
                let r = client.create_reservation(request).await?.into_inner();
                anyhow::Ok((tenant, r.id))
            }));
        }
        for t in tasks {
            ids.push(t.await??);
        }
    }
    Ok(ids)
}

/// `records` distinct records over the month, tenants in turn: 60% reserved,
/// 25% burst (under the tenant's contract), 15% spot; prompt 20 to 1,019
/// and completion 1 to 512 tokens; a few cancelled or failed.
async fn seed_usage(pool: &sqlx::PgPool, ids: &[(String, String)], records: u64, month: Period) -> anyhow::Result<()> {
    let tenants: Vec<String> = ids.iter().map(|(t, _)| t.clone()).collect();
    let contracts: Vec<uuid::Uuid> = ids.iter().map(|(_, c)| uuid::Uuid::parse_str(c)).collect::<Result<_, _>>()?;
    let span_s = (month.end() - month.start()).num_seconds() - 2;
    sqlx::query(
        "WITH t AS (SELECT ordinality - 1 AS k, tenant, contract \
                    FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS x(tenant, contract)), \
              r AS (SELECT i, (i % $3) AS k, ((i / $3) * 7919) % 100 AS pick, 20 + (i * 104729) % 1000 AS prompt, \
                           1 + (i * 1299709) % 512 AS completion, \
                           $4 + make_interval(secs => (i * 15485863) % $5) AS finished \
                    FROM generate_series(0, $6 - 1) AS i) \
         INSERT INTO metering.usage_records (request_id, tenant_id, contract_id, model_id, class, outcome, \
           prompt_tokens, cached_prompt_tokens, completion_tokens, weighted_tokens, demand_weighted_tokens, \
           queue_ms, ttft_ms, total_ms, worker_id, started_at, finished_at, catalog_version) \
         SELECT 'bench-' || r.i, t.tenant, CASE WHEN r.pick < 85 THEN t.contract END, $7, \
           CASE WHEN r.pick < 60 THEN 'reserved' WHEN r.pick < 85 THEN 'burst' ELSE 'spot' END, \
           CASE WHEN r.pick % 50 = 1 THEN 'client_cancelled' WHEN r.pick % 97 = 3 THEN 'platform_error' ELSE 'ok' END, \
           r.prompt, 0, r.completion, r.prompt * 0.25 + r.completion, r.prompt * 0.25 + r.completion, \
           1, 200, 2000, 'w1', r.finished - interval '2 seconds', r.finished, 1 \
         FROM r JOIN t USING (k)",
    )
    .bind(&tenants)
    .bind(&contracts)
    .bind(i64::try_from(tenants.len())?)
    .bind(month.start() + TimeDelta::seconds(2))
    .bind(span_s)
    .bind(i64::try_from(records)?)
    .bind(MODEL)
    .execute(pool)
    .await?;
    Ok(())
}
