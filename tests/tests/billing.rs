//! Billing end to end over the real services: contracts in the contracts
//! service, usage in metering; the billing service (with the test's clock)
//! runs the month, finalizes with gapless numbers, bills late usage on the
//! next invoice, and the gateway serves the invoice as JSON, CSV and PDF.
//!
//! The contracts start at the beginning of next month, so the month is
//! whole whatever day the test runs.

use chrono::{Datelike, Duration, Utc};
use reservoir_billing_service::run;
use reservoir_domain::{Period, round_half_even};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_tests::billing_support::{record, usage};
use reservoir_tests::sla_support::reserve;
use reservoir_tests::{MIGRATOR, Platform};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgPool;

fn decimal(v: &Value) -> Decimal {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a decimal string: {v}"))
}

async fn get(p: &Platform, path: &str, token: &str) -> (u16, reqwest::Response) {
    let response = p.http.get(p.url(path)).bearer_auth(token).send().await.expect("sent");
    (response.status().as_u16(), response)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_month_is_invoiced_finalized_numbered_and_late_usage_lands_on_the_next(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let month = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let start = month.start();
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let contract = reserve(&mut contracts, "acme", pb::Tier::Standard, start).await;
    let fee: Decimal = contract.total_for_term.as_deref().expect("a month has a total").parse().expect("decimal");

    // Burst: 3 x 50 M weighted tokens = 150 M, graduated:
    //   100 x 0.20 + 50 x 0.15 = 20 + 7.50 = 27.50
    // Spot: exactly 1,000 M (2 x 500 M), the volume bound: 1000 x 0.05 = 50.00
    let mut metering = MeteringServiceClient::new(p.internal_channel(&p.metering).await);
    let mid = start + Duration::days(10);
    let burst = pb::PriorityClass::Burst;
    let spot = pb::PriorityClass::Spot;
    let mut records: Vec<pb::UsageRecord> =
        (0..3).map(|i| usage(&format!("b{i}"), "acme", &contract.id, burst, 50_000_000, mid)).collect();
    records.extend((0..2).map(|i| usage(&format!("s{i}"), "acme", "", spot, 500_000_000, mid)));
    record(&mut metering, records).await;

    // The month is over: run it twice, the same invoice.
    let now = month.end() + Duration::hours(3);
    let grace = Duration::hours(24);
    let b = &p.billing;
    let first = run::run_period(&b.pool, &b.peers, month, "test", grace, now).await.expect("run");
    assert_eq!((first.tenants, first.drafted), (1, 1));
    let lines_before: Vec<String> =
        sqlx::query_scalar("SELECT l::text FROM billing.invoice_lines l ORDER BY invoice_id, line_no")
            .fetch_all(&pool)
            .await
            .expect("lines");
    run::run_period(&b.pool, &b.peers, month, "test", grace, now).await.expect("run again");
    let invoices: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM billing.invoices").fetch_all(&pool).await.expect("invoices");
    assert_eq!(invoices.len(), 1, "running twice makes no second invoice");
    let lines_after: Vec<String> =
        sqlx::query_scalar("SELECT l::text FROM billing.invoice_lines l ORDER BY invoice_id, line_no")
            .fetch_all(&pool)
            .await
            .expect("lines");
    assert_eq!(lines_before, lines_after, "recomputing a draft from the same inputs writes the same lines");
    let id = invoices[0].0;

    // The tenant sees the draft with its lines.
    let token = p.tenant_token("acme");
    let (status, response) = get(&p, &format!("/v1/invoices/{id}"), &token).await;
    assert_eq!(status, 200);
    let draft: Value = response.json().await.expect("json");
    assert_eq!(draft["status"], "draft");
    let kinds: Vec<(&str, Decimal)> = draft["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| (l["kind"].as_str().unwrap_or(""), decimal(&l["amount"])))
        .collect();
    let fee_rounded = round_half_even(fee, 2);
    assert_eq!(
        kinds,
        vec![("reservation", fee_rounded), ("burst", Decimal::new(2750, 2)), ("spot", Decimal::new(5000, 2))],
        "{draft}"
    );
    assert_eq!(decimal(&draft["total"]), fee_rounded + Decimal::new(7750, 2));
    let burst_tiers = &draft["lines"][1]["tiers"];
    assert_eq!((burst_tiers[0]["amount"].as_str(), burst_tiers[1]["amount"].as_str()), (Some("20"), Some("7.5")));
    // Another tenant cannot read it.
    let (status, _) = get(&p, &format!("/v1/invoices/{id}"), &p.tenant_token("intruder")).await;
    assert_eq!(status, 404);

    // Finalized: numbered, immutable.
    let finalized = run::finalize(&b.pool, &b.peers, id, "test", now).await.expect("finalize");
    assert_eq!(finalized, id);
    let number: String = sqlx::query_scalar("SELECT number FROM billing.invoices WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("number");
    assert_eq!(number, format!("RSV-{}-000001", now.year()));
    let again = run::finalize(&b.pool, &b.peers, id, "test", now).await.expect_err("finalized once");
    assert!(again.to_string().contains("only a draft"), "{again}");

    // CSV: a header and one row per line; PDF: a real one, with the total.
    let (status, response) = get(&p, &format!("/v1/invoices/{id}.csv"), &token).await;
    assert_eq!(status, 200);
    let csv = response.text().await.expect("csv");
    let rows: Vec<&str> = csv.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert!(rows[0].starts_with("invoice_id,invoice_number,tenant_id,period"), "{csv}");
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows[2].contains(&number) && rows[2].ends_with(",27.50"), "{csv}");
    let (status, response) = get(&p, &format!("/v1/invoices/{id}.pdf"), &token).await;
    assert_eq!(status, 200);
    let pdf = response.bytes().await.expect("pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdf_text(&pdf);
    let total = format!("{} USD", draft["total"].as_str().expect("total"));
    assert!(text.contains(&number) && text.contains(&total) && text.contains("acme"), "{text}");

    // 50 M more burst of that month arrive after it was finalized: the
    // next month's invoice bills them as late usage, at the tier where the
    // month now stands (150 -> 200 M, all at 0.15 = 7.50).
    record(&mut metering, vec![usage("late", "acme", &contract.id, burst, 50_000_000, mid)]).await;
    let next = month.next().expect("next");
    let later = next.end() + Duration::hours(3);
    run::run_period(&b.pool, &b.peers, next, "test", grace, later).await.expect("next run");
    let (status, response) = get(&p, &format!("/v1/invoices?period={next}"), &token).await;
    assert_eq!(status, 200);
    let list: Value = response.json().await.expect("json");
    let next_id = list["invoices"][0]["id"].as_str().expect("next invoice").to_owned();
    let (_, response) = get(&p, &format!("/v1/invoices/{next_id}"), &token).await;
    let next_invoice: Value = response.json().await.expect("json");
    let late = next_invoice["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["kind"] == "late_usage")
        .unwrap_or_else(|| panic!("a late usage line: {next_invoice}"))
        .clone();
    assert_eq!(decimal(&late["amount"]), Decimal::new(750, 2), "{late}");
    assert_eq!(decimal(&late["quantity"]), Decimal::from(50));
    assert_eq!(late["usage_from"].as_str().and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok()), Some(start));
    // Run again: still billed once.
    run::run_period(&b.pool, &b.peers, next, "test", grace, later).await.expect("next run again");
    let late_lines: i64 = sqlx::query_scalar("SELECT count(*) FROM billing.invoice_lines WHERE kind = 'late_usage'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(late_lines, 1);
}

/// The text of a PDF, as `pdftotext` reads it (poppler-utils; the test
/// script installs it).
fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("invoice.pdf");
    std::fs::write(&path, pdf).expect("write");
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", path.to_str().expect("path"), "-"])
        .output()
        .expect("pdftotext (poppler-utils) must be installed: ./scripts/test installs it");
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_runners_at_once_make_one_invoice_each_and_gapless_numbers(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let month = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let tenants: Vec<String> = (0..8).map(|i| format!("tenant-{i}")).collect();
    for t in &tenants {
        reserve(&mut contracts, t, pb::Tier::Standard, month.start()).await;
    }
    let now = month.end() + Duration::hours(3);
    let grace = Duration::hours(24);
    let b = p.billing.clone();
    let (one, two) = tokio::join!(
        run::run_period(&b.pool, &b.peers, month, "one", grace, now),
        run::run_period(&b.pool, &b.peers, month, "two", grace, now),
    );
    one.expect("first runner");
    two.expect("second runner");
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM billing.invoices ORDER BY id").fetch_all(&pool).await.expect("ids");
    assert_eq!(ids.len(), tenants.len(), "one invoice per tenant, however many runners");

    // Two finalizers over the same drafts, in opposite orders.
    let reversed: Vec<uuid::Uuid> = ids.iter().rev().copied().collect();
    let finalize_all = |order: Vec<uuid::Uuid>, b: reservoir_billing_service::Billing| async move {
        let mut done = 0;
        for id in order {
            if run::finalize(&b.pool, &b.peers, id, "racer", now).await.is_ok() {
                done += 1;
            }
        }
        done
    };
    let (a, z) = tokio::join!(finalize_all(ids.clone(), b.clone()), finalize_all(reversed, b.clone()));
    assert_eq!(a + z, tenants.len(), "each draft finalized exactly once");
    let mut numbers: Vec<i64> =
        sqlx::query_scalar("SELECT number_sequence FROM billing.invoices").fetch_all(&pool).await.expect("numbers");
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=tenants.len() as i64).collect::<Vec<_>>(), "numbers without gaps or repeats");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_run_cut_short_is_finished_by_the_next(pool: PgPool) {
    use reservoir_billing_service::settle::{Mode, settle};
    let p = Platform::start(pool.clone()).await;
    let month = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    for n in 0..4 {
        reserve(&mut contracts, &format!("tenant-{n}"), pb::Tier::Standard, month.start()).await;
    }
    let now = month.end() + Duration::hours(3);
    let grace = Duration::hours(24);
    let b = &p.billing;
    // A run that stopped after two tenants: registered, two drafts stored.
    sqlx::query("INSERT INTO billing.runs (period, started_at, started_by) VALUES ($1, $2, 'crashed')")
        .bind(month.to_string())
        .bind(now)
        .execute(&pool)
        .await
        .expect("run row");
    let inputs = reservoir_billing_service::gather::gather(&b.peers, &b.pool, month, None).await.expect("gather");
    for tenant in ["tenant-0", "tenant-1"] {
        settle(&b.pool, &inputs, tenant, month, &Mode::Draft { grace }, now).await.expect("settled");
    }
    let before: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, tenant_id FROM billing.invoices ORDER BY tenant_id")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(before.len(), 2);

    let report = run::run_period(&b.pool, &b.peers, month, "rerun", grace, now).await.expect("rerun");
    assert_eq!((report.tenants, report.drafted), (4, 4));
    let after: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, tenant_id FROM billing.invoices ORDER BY tenant_id")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(after.len(), 4, "every tenant once: {after:?}");
    assert_eq!(&after[..2], &before[..], "the drafts stored before the crash are the same invoices");
    let finished: bool = sqlx::query_scalar("SELECT finished_at IS NOT NULL FROM billing.runs WHERE period = $1")
        .bind(month.to_string())
        .fetch_one(&pool)
        .await
        .expect("run");
    assert!(finished);
}
