//! The portal in a real browser (headless Chromium over WebDriver): an
//! operator signs in by keyboard, creates a contract for a tenant (quoted
//! first), runs a month's billing, finalizes the invoice and downloads its
//! CSV; the tenant signs in, sees that invoice, issues and revokes an API
//! token, and is refused on an operator page. Every page is saved under
//! `target/screenshots/`, pages are checked on a 375-px-wide screen, and
//! any console error fails.

use chrono::Utc;
use fantoccini::Locator;
use reservoir_domain::Period;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_tests::browser::Browser;
use reservoir_tests::sla_support::reserve;
use reservoir_tests::{MIGRATOR, Platform};
use sqlx::PgPool;

/// WebDriver's key codes (Tab, Enter).
const TAB: &str = "\u{e004}";
const ENTER: &str = "\u{e007}";

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_operator_bills_a_tenant_who_then_finds_the_invoice_in_the_console(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let now = Utc::now();
    let this_month = Period::containing(now).expect("month");
    let last = this_month.previous().expect("last month");

    // History the platform would hold: acme's month-long contract of last
    // month (made for next month, then moved back, as none can start in the past).
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let next = this_month.next().expect("next month");
    let history = reserve(&mut contracts, "acme", pb::Tier::Standard, next.start()).await;
    sqlx::query(
        "UPDATE contracts.reservations SET starts_at = $2, ends_at = $3, created_at = $2 - interval '1 day' \
         WHERE id = $1::uuid",
    )
    .bind(&history.id)
    .bind(last.start())
    .bind(last.end())
    .execute(&pool)
    .await
    .expect("move the contract into last month");

    let mut b = Browser::start(&p.gateway, "portal_journey").await;

    // The operator signs in with the keyboard alone.
    b.goto("/admin/sign-in").await;
    b.screenshot("admin-sign-in").await;
    let token = b.client.find(Locator::Css("#token")).await.expect("token field");
    token.send_keys(&p.admin_token()).await.expect("type the token");
    b.keys(&token, &format!("{TAB}{ENTER}")).await;
    assert_eq!(b.path().await, "/admin/ui");
    assert!(b.text().await.contains("Reserved now, by tier"), "the overview");
    b.screenshot("admin-overview").await;
    b.assert_no_console_errors("sign-in", &[]).await;

    // A contract for a tenant: the order, its quote, then the reservation.
    b.follow("Tenants").await;
    assert!(b.text().await.contains("acme"));
    b.screenshot("admin-tenants").await;
    b.follow("acme").await;
    b.screenshot("admin-tenant").await;
    b.follow("Contracts").await;
    b.follow("New contract").await;
    b.screenshot("admin-contract-new").await;
    b.fill("#tenant", "acme").await;
    b.fill("#rate", "20").await;
    b.choose("#tier", "premium").await;
    b.choose("#term", "hourly").await;
    b.click("main form button[type=submit]").await;
    let quote = b.text().await;
    assert!(quote.contains("Quote for acme") && quote.contains("Price per hour"), "{quote}");
    b.screenshot("admin-contract-quote").await;
    b.click("form[action='/admin/ui/contracts'] button[type=submit]").await;
    assert!(b.text().await.contains("Reserved 20 tokens/s of"), "the result is shown");
    b.screenshot("admin-contracts").await;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM contracts.reservations WHERE tenant_id = 'acme'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(held, 2, "last month's contract and the new one");
    b.assert_no_console_errors("creating a contract", &[]).await;

    // Last month's billing: run, then finalize, each confirmed first.
    b.goto(&format!("/admin/ui/billing?period={last}")).await;
    b.screenshot("admin-billing").await;
    b.follow(&format!("Run {last}")).await;
    b.screenshot("admin-billing-confirm-run").await;
    b.click("main form button[type=submit]").await;
    assert!(b.text().await.contains("1 tenants, 1 drafts"), "{}", b.text().await);
    b.screenshot("admin-billing-drafted").await;
    b.follow("Finalize").await;
    b.screenshot("admin-billing-confirm-finalize").await;
    b.click("main form button[type=submit]").await;
    let number: String = sqlx::query_scalar("SELECT number FROM billing.invoices WHERE tenant_id = 'acme'")
        .fetch_one(&pool)
        .await
        .expect("a finalized invoice");
    assert!(b.text().await.contains(&format!("Finalized as {number}")));
    b.screenshot("admin-billing-finalized").await;

    // Its CSV, downloaded with the session as the link does.
    let csv_link = b.client.find(Locator::Css("a[href$='.csv']")).await.expect("a CSV link");
    let href = csv_link.attr("href").await.expect("href").expect("an address");
    let (status, csv) = b.fetch(&href).await;
    assert_eq!(status, 200, "{csv}");
    assert!(csv.starts_with("invoice_id,invoice_number") && csv.contains(&number), "{csv}");
    b.assert_no_console_errors("billing", &[]).await;

    // The pool's capacity and the SLA records.
    b.follow("Capacity").await;
    assert!(b.text().await.contains("last 30 days"));
    b.screenshot("admin-capacity").await;
    b.follow("SLA").await;
    assert!(b.text().await.contains("Schedule maintenance"));
    b.screenshot("admin-sla").await;
    b.follow("Catalog").await;
    assert!(b.text().await.contains("Review the edit"));
    b.screenshot("admin-catalog").await;
    b.assert_no_console_errors("capacity, SLA and catalog", &[]).await;

    // A phone-sized screen: no page scrolls sideways (wide tables scroll
    // inside their own box).
    b.client.set_window_size(375, 800).await.expect("resize");
    let width = b.client.execute("return window.innerWidth;", vec![]).await.expect("width");
    assert!(width.as_u64().is_some_and(|w| w <= 400), "a narrow window: {width}");
    for (path, name) in [
        (format!("/admin/ui/billing?period={last}"), "narrow-admin-billing"),
        ("/admin/ui/contracts".to_owned(), "narrow-admin-contracts"),
        ("/admin/ui".to_owned(), "narrow-admin-overview"),
        ("/admin/ui/sla".to_owned(), "narrow-admin-sla"),
    ] {
        b.goto(&path).await;
        assert!(!b.scrolls_sideways().await, "{path} scrolls sideways at 375 px");
        b.screenshot(name).await;
    }
    b.client.set_window_size(1280, 900).await.expect("resize");
    b.click("form[action='/admin/sign-out'] button").await;
    assert_eq!(b.path().await, "/admin/sign-in");

    // The tenant signs in and finds the invoice.
    b.goto("/console/sign-in").await;
    b.screenshot("console-sign-in").await;
    b.fill("#token", &p.tenant_token("acme")).await;
    b.click("main form button[type=submit], form button[type=submit]").await;
    assert_eq!(b.path().await, "/console");
    assert!(b.text().await.contains("Contracts (2)"), "{}", b.text().await);
    b.screenshot("console-contracts").await;
    // The meters' fragment, as the page's script fetches it every 5 seconds.
    let (status, meters) = b.fetch("/console/meters").await;
    assert_eq!(status, 200);
    assert!(meters.contains("0 of 20 tokens/s"), "{meters}");
    // The tenant reserves throughput itself, quoted first.
    b.follow("Reserve throughput").await;
    b.fill("#rate", "5").await;
    b.choose("#term", "hourly").await;
    b.click("main form button[type=submit]").await;
    assert!(b.text().await.contains("Quote for acme"));
    b.screenshot("console-quote").await;
    b.click("main form[method=post] button[type=submit]").await;
    assert!(b.text().await.contains("Contracts (3)"), "{}", b.text().await);
    b.follow("Invoices").await;
    assert!(b.text().await.contains(&number), "the tenant sees {number}");
    b.screenshot("console-invoices").await;
    b.follow("Usage").await;
    b.screenshot("console-usage").await;
    b.follow("SLA").await;
    b.screenshot("console-sla").await;
    // An API token, shown once, works on the API until it is revoked.
    b.follow("API tokens").await;
    b.fill("#name", "ci-deploy").await;
    b.choose("#lifetime_days", "30").await;
    b.click("main form button[type=submit]").await;
    assert!(b.text().await.contains("shown only once"), "{}", b.text().await);
    b.screenshot("console-token-issued").await;
    let issued = b.client.execute("return document.getElementById('token').value;", vec![]).await.expect("token");
    let issued = issued.as_str().expect("the token's text").trim().to_owned();
    assert_eq!(p.call(reqwest::Method::GET, "/v1/reservations", &issued, None).await.0, 200);
    b.follow("Done").await;
    b.follow("Revoke").await;
    b.screenshot("console-token-revoke").await;
    b.click("main form button[type=submit]").await;
    assert!(b.text().await.contains("is revoked"), "{}", b.text().await);
    b.screenshot("console-tokens").await;
    assert_eq!(p.call(reqwest::Method::GET, "/v1/reservations", &issued, None).await.0, 401);
    b.assert_no_console_errors("the console", &[]).await;

    // An operator page is refused to the tenant's session.
    b.goto("/admin/ui/billing").await;
    assert!(b.text().await.contains("operators"), "{}", b.text().await);
    b.screenshot("console-refused-admin").await;
    b.assert_no_console_errors("the refusal", &["/admin/ui/billing", "403"]).await;
    b.close().await;
}
