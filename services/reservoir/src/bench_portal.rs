//! `reservoir bench portal [--quick]`: how fast the portal's pages answer
//! with 1,000 tenants and 10,000 contracts. Needs DATABASE_URL (a database
//! of its own is made and dropped).
//!
//! Seeding (not measured): one contract made through the contracts service,
//! copied in SQL into 10,000 contracts of 1,000 tenants (varied rates,
//! tiers and terms; past, running, future and cancelled), and 200,000 usage
//! records over the last 30 days.
//!
//! Measured: each page fetched over HTTP with a signed-in session, one
//! request at a time after two unmeasured ones, from the request's first
//! byte to the body's last: the gateway, the services it calls over gRPC,
//! PostgreSQL and the template. The baselines, measured the same way in the
//! same run: the gateway's `/healthz` (the HTTP floor) and the JSON API's
//! list of 50 reservations (the same service call as a contracts page).

use std::time::Instant;

use reservoir_domain::Role;
use reservoir_platform::{Config, Given, Service};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_runtime::{Shutdown, db};

const MODEL: &str = reservoir_pricing::BUILTIN_MODEL;
/// The figure the pages are held to.
const TARGET_MS: f64 = 100.0;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// 100 tenants and 1,000 contracts, 5 requests per page.
    #[arg(long)]
    quick: bool,
}

pub async fn run(config: &Config, args: &Args) -> anyhow::Result<()> {
    let admin_url = config.database_url()?.to_owned();
    let name = format!("bench_portal_{}", uuid::Uuid::new_v4().simple());
    let admin = db::connect(&admin_url, 2).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await?;
    let url = format!("{}/{name}", admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url));
    let result = measure(config, &url, args).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await?;
    result
}

async fn measure(config: &Config, url: &str, args: &Args) -> anyhow::Result<()> {
    let (tenants, contracts, records, repeats): (i32, i32, i32, usize) =
        if args.quick { (100, 1_000, 20_000, 5) } else { (1_000, 10_000, 200_000, 20) };
    let pool = db::connect(url, 16).await?;
    db::migrate(&pool).await?;
    reservoir_contracts::seed_model(&pool, &MODEL.parse()?, 10_000_000, rust_decimal::Decimal::new(10, 2)).await?;

    let mut config = config.clone();
    config.internal.token = None;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    for listen in [
        &mut config.contracts.listen,
        &mut config.metering.listen,
        &mut config.sla.listen,
        &mut config.billing.listen,
        &mut config.scheduler.listen,
        &mut config.scheduler.metrics_listen,
        &mut config.gateway.listen,
    ] {
        *listen = loopback;
    }
    config.scheduler.workers = Vec::new();
    config.scheduler.spool_dir = std::env::temp_dir().join(format!("bench-portal-{}", uuid::Uuid::new_v4().simple()));
    config.sla.job_interval_s = 86_400;
    config.billing.job_interval_s = 86_400;
    let services =
        [Service::Contracts, Service::Metering, Service::Scheduler, Service::Sla, Service::Billing, Service::Gateway];
    let platform =
        reservoir_platform::build(config.clone(), &services, Given { pool: Some(pool.clone()), ..Given::default() })
            .await?;
    let endpoints = platform.endpoints.clone();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(platform.run_until_stopped(shutdown.clone()));
    let gateway = endpoints.gateway.ok_or_else(|| anyhow::anyhow!("no gateway built"))?;
    let contracts_url = endpoints.contracts.ok_or_else(|| anyhow::anyhow!("no contracts service built"))?;

    let seeding = Instant::now();
    seed(&pool, &contracts_url, tenants, contracts, records).await?;
    println!(
        "seeded {tenants} tenants, {contracts} contracts and {records} usage records in {:.1} s (not measured)",
        seeding.elapsed().as_secs_f64()
    );

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let admin_token = reservoir_gateway::auth::mint(&config.auth, "bench", Role::Admin)?;
    let operator = session(&http, &gateway, "/admin/sign-in", &admin_token).await?;
    let tenant_token = reservoir_gateway::auth::mint(&config.auth, "tenant-0001", Role::Tenant)?;
    let tenant = session(&http, &gateway, "/console/sign-in", &tenant_token).await?;

    let bearer = format!("Bearer {admin_token}");
    let baselines: [(&str, &str, &str); 2] = [
        ("HTTP floor: /healthz", "/healthz", ""),
        ("JSON: 50 reservations", "/admin/reservations?limit=50", bearer.as_str()),
    ];
    // A tenant and a contracts page from the middle of the lists.
    let middle_tenant = format!("tenant-{:04}", tenants / 2);
    let middle_page = contracts / 50 / 2;
    let pages: Vec<(&str, String, &str)> = vec![
        ("overview", "/admin/ui".into(), operator.as_str()),
        ("tenants, page 1", "/admin/ui/tenants".into(), operator.as_str()),
        ("tenants, search", "/admin/ui/tenants?q=00".into(), operator.as_str()),
        ("tenants, last page", format!("/admin/ui/tenants?page={}", tenants / 50), operator.as_str()),
        ("one tenant", format!("/admin/ui/tenants/{middle_tenant}"), operator.as_str()),
        ("contracts, newest", "/admin/ui/contracts".into(), operator.as_str()),
        (
            "contracts by rate, mid page",
            format!("/admin/ui/contracts?sort=rate&dir=desc&page={middle_page}"),
            operator.as_str(),
        ),
        ("contracts of a tenant", "/admin/ui/contracts?tenant=tenant-0042".into(), operator.as_str()),
        ("contracts active, by tenant", "/admin/ui/contracts?status=active&sort=tenant".into(), operator.as_str()),
        ("capacity", "/admin/ui/capacity".into(), operator.as_str()),
        ("SLA", "/admin/ui/sla".into(), operator.as_str()),
        ("billing", "/admin/ui/billing".into(), operator.as_str()),
        ("catalog", "/admin/ui/catalog".into(), operator.as_str()),
        ("console: contracts", "/console".into(), tenant.as_str()),
        ("console: usage", "/console/usage".into(), tenant.as_str()),
        ("console: API tokens", "/console/tokens".into(), tenant.as_str()),
    ];

    println!("\n{:<30} {:>9} {:>9} {:>9} {:>12}", "page", "p50 ms", "p95 ms", "max ms", "p50 / JSON");
    let mut json = serde_json::Map::new();
    let mut json_p50 = f64::NAN;
    for (label, path, auth) in baselines {
        let times = time(&http, &gateway, path, Auth::Bearer(auth), repeats).await?;
        let (p50, p95, max) = summary(&times);
        if path.starts_with("/admin/reservations") {
            json_p50 = p50;
        }
        println!("{label:<30} {p50:>9.1} {p95:>9.1} {max:>9.1} {:>12}", "");
        json.insert(label.into(), serde_json::json!({ "p50_ms": p50, "p95_ms": p95 }));
    }
    let mut over = 0;
    for (label, path, cookie) in &pages {
        let times = time(&http, &gateway, path, Auth::Cookie(cookie), repeats).await?;
        let (p50, p95, max) = summary(&times);
        if p95 > TARGET_MS {
            over += 1;
        }
        println!("{label:<30} {p50:>9.1} {p95:>9.1} {max:>9.1} {:>11.1}x", p50 / json_p50);
        json.insert((*label).into(), serde_json::json!({ "p50_ms": p50, "p95_ms": p95, "path": path }));
    }
    println!(
        "\n{} of {} pages have a p95 over {TARGET_MS} ms ({repeats} requests each, one at a time, this build)",
        over,
        pages.len()
    );
    println!("{}", serde_json::Value::Object(json));
    shutdown.trigger();
    let _ = running.await;
    Ok(())
}

enum Auth<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
}

/// Signs in at `path`; answers the session cookie (`name=value`).
async fn session(http: &reqwest::Client, gateway: &str, path: &str, token: &str) -> anyhow::Result<String> {
    let response = http.post(format!("{gateway}{path}")).form(&[("token", token)]).send().await?;
    anyhow::ensure!(response.status().is_redirection(), "sign-in at {path}: {}", response.status());
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("sign-in at {path} set no cookie"))?;
    Ok(cookie.to_owned())
}

/// Milliseconds of `repeats` requests for `path`, after two not measured.
async fn time(
    http: &reqwest::Client,
    gateway: &str,
    path: &str,
    auth: Auth<'_>,
    repeats: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(repeats);
    for i in 0..repeats + 2 {
        let mut request = http.get(format!("{gateway}{path}"));
        request = match auth {
            Auth::Bearer("") => request,
            Auth::Bearer(value) => request.header("authorization", value),
            Auth::Cookie(value) => request.header("cookie", value),
        };
        let started = Instant::now();
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        let took = started.elapsed();
        anyhow::ensure!(status.is_success(), "{path}: {status}: {}", String::from_utf8_lossy(&body));
        if i >= 2 {
            times.push(took.as_secs_f64() * 1000.0);
        }
    }
    Ok(times)
}

/// p50, p95 and the maximum.
fn summary(times: &[f64]) -> (f64, f64, f64) {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    (at(0.5), at(0.95), sorted.last().copied().unwrap_or(f64::NAN))
}

/// One real contract through the service, copied in SQL into `contracts`
/// varied ones of `tenants` tenants; usage records over the last 30 days.
async fn seed(
    pool: &sqlx::PgPool,
    contracts_url: &str,
    tenants: i32,
    contracts: i32,
    records: i32,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO contracts.tenants (id, currency, created_at) \
         SELECT format('tenant-%s', lpad(n::text, 4, '0')), 'USD', now() - n * interval '1 hour' \
         FROM generate_series(1, $1) n",
    )
    .bind(tenants)
    .execute(pool)
    .await?;
    let mut client = ContractServiceClient::connect(contracts_url.to_owned()).await?;
    let order = pb::QuoteRequest {
        tenant_id: "tenant-0001".into(),
        model: MODEL.into(),
        rate_tokens_per_s: 10,
        tier: pb::Tier::Standard.into(),
        term: pb::Term::Hourly.into(),
        starts_at: Some(timestamp(chrono::Utc::now() + chrono::Duration::minutes(5))),
        ends_at: None,
    };
    let template = client
        .create_reservation(pb::CreateReservationRequest {
            order: Some(order),
            idempotency_key: "seed".into(),
            allow_burst: None,
        })
        .await?
        .into_inner();
    // Contract n: tenant n mod tenants, starting between 40 days ago and 20
    // days ahead, a day to 40 days long (some open-ended), one in 20 cancelled.
    sqlx::query(
        "INSERT INTO contracts.reservations (id, tenant_id, model_id, rate_tokens_per_s, tier, term, starts_at, \
           ends_at, allow_burst, catalog_version, currency, price_per_hour, total_for_term, quote, idempotency_key, \
           request_fingerprint, created_at, cancelled_at, cancelled_by, cancel_reason) \
         SELECT gen_random_uuid(), format('tenant-%s', lpad((1 + n % $2)::text, 4, '0')), r.model_id, \
           1 + (n * 37) % 200, (ARRAY['standard', 'premium', 'enterprise'])[1 + n % 3], 'hourly', \
           now() + ((n * 7919) % 86400 - 57600) * interval '1 minute', \
           CASE WHEN n % 7 = 0 THEN NULL ELSE now() + ((n * 7919) % 86400 - 57600 + 1440 * (1 + n % 40)) * interval '1 minute' END, \
           true, r.catalog_version, r.currency, r.price_per_hour, NULL, r.quote, format('seed-%s', n), \
           r.request_fingerprint, now() - (n % 1000) * interval '1 hour', \
           CASE WHEN n % 20 = 0 THEN now() - interval '1 hour' END, \
           CASE WHEN n % 20 = 0 THEN 'bench' END, CASE WHEN n % 20 = 0 THEN 'seeded' END \
         FROM generate_series(1, $1 - 1) n, contracts.reservations r WHERE r.id = $3::uuid",
    )
    .bind(contracts)
    .bind(tenants)
    .bind(&template.id)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO metering.usage_records (request_id, tenant_id, contract_id, model_id, class, outcome, \
           prompt_tokens, cached_prompt_tokens, completion_tokens, weighted_tokens, demand_weighted_tokens, \
           queue_ms, ttft_ms, total_ms, worker_id, started_at, finished_at, recorded_at, catalog_version) \
         SELECT format('seed-%s', n), format('tenant-%s', lpad((1 + n % $2)::text, 4, '0')), NULL, $3, 'spot', 'ok', \
           100 + n % 300, 0, 16 + n % 200, (16 + n % 200) + (100 + n % 300) * 0.25, (16 + n % 200) + (100 + n % 300) * 0.25, \
           5, 120, 900, 'w1', t - interval '1 second', t, t, 1 \
         FROM generate_series(1, $1) n, LATERAL (SELECT now() - (n::float8 / $1) * interval '30 days' AS t) at",
    )
    .bind(records)
    .bind(tenants)
    .bind(MODEL)
    .execute(pool)
    .await?;
    // The hourly rollup metering keeps as it stores records, for these too.
    sqlx::query(
        "INSERT INTO metering.usage_hourly (model_id, hour, class, requests, weighted_tokens) \
         SELECT model_id, date_trunc('hour', finished_at, 'UTC'), class, count(*), sum(weighted_tokens) \
         FROM metering.usage_records GROUP BY 1, 2, 3",
    )
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}
