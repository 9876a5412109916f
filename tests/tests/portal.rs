//! The portal over real HTTP, as a browser uses it: a token exchanged for a
//! session cookie (HttpOnly, SameSite=Strict, Secure behind TLS), pages that
//! need the session, CSRF on every form, a tenant refused on operator pages,
//! and an operator finalizing an invoice the tenant then sees.

use chrono::{Duration, Utc};
use reservoir_billing_service::run;
use reservoir_domain::Period;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_tests::portal_support::{csrf, page, post, session, sign_in};
use reservoir_tests::sla_support::reserve;
use reservoir_tests::{MIGRATOR, Platform};
use sqlx::PgPool;

#[sqlx::test(migrator = "MIGRATOR")]
async fn sessions_are_cookies_with_csrf_and_each_side_sees_only_its_own(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;

    // A tenant token becomes a session cookie; behind TLS it is Secure.
    let (status, location, cookie) = sign_in(&p, "/console/sign-in", &p.tenant_token("acme"), false).await;
    assert_eq!((status, location.as_str()), (303, "/console"));
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let (_, _, tls_cookie) = sign_in(&p, "/console/sign-in", &p.tenant_token("acme"), true).await;
    assert!(tls_cookie.contains("Secure"), "{tls_cookie}");
    let acme = session(&cookie);

    // Pages need the session; a wrong token or a forged cookie gets none.
    let (status, location, _) = page(&p, "/console", "").await;
    assert_eq!((status, location.as_str()), (303, "/console/sign-in"));
    let (status, _, body) = page(&p, "/console", &acme).await;
    assert_eq!(status, 200);
    assert!(body.contains("acme") && body.contains("No contracts"), "{body}");
    let (_, _, body) = page(&p, "/console/invoices", &acme).await;
    assert!(body.contains("No invoices yet"), "{body}");
    let forged = format!("{}x", acme);
    assert_eq!(page(&p, "/console", &forged).await.1, "/console/sign-in");
    let (status, _, body) = sign_in(&p, "/console/sign-in", "not-a-token", false).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = sign_in(&p, "/admin/sign-in", &p.tenant_token("acme"), false).await;
    assert_eq!(status, 401, "a tenant token does not open the admin portal");

    // A tenant's session is refused on operator pages.
    let (status, _, body) = page(&p, "/admin/ui/billing", &acme).await;
    assert_eq!(status, 403);
    assert!(body.contains("operators"), "{body}");

    // An operator runs nothing here yet: a month with one draft, made by the
    // billing service with the test's clock.
    let month = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    reserve(&mut contracts, "acme", pb::Tier::Standard, month.start()).await;
    let b = &p.billing;
    run::run_period(&b.pool, &b.peers, month, "test", Duration::hours(24), month.end() + Duration::hours(2))
        .await
        .expect("run");

    let (status, location, admin_cookie) = sign_in(&p, "/admin/sign-in", &p.admin_token(), false).await;
    assert_eq!((status, location.as_str()), (303, "/admin/ui"));
    let admin = session(&admin_cookie);
    let (status, _, body) = page(&p, &format!("/admin/ui/billing?period={month}"), &admin).await;
    assert_eq!(status, 200);
    assert!(body.contains("acme") && body.contains("1 drafts"), "{body}");
    let id: String = sqlx::query_scalar("SELECT id::text FROM billing.invoices").fetch_one(&pool).await.expect("id");

    // Finalizing asks first, then shows the result.
    let (status, _, confirm) =
        page(&p, &format!("/admin/ui/billing/confirm?action=finalize&id={id}&period={month}"), &admin).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("never changes again"), "{confirm}");
    let token = csrf(&confirm);
    let period = month.to_string();
    let form = [("csrf", "wrong"), ("action", "finalize"), ("id", id.as_str()), ("period", period.as_str())];
    assert_eq!(post(&p, "/admin/ui/billing/do", &admin, &form).await.0, 403, "a forged form is refused");
    let form = [("csrf", token.as_str()), ("action", "finalize"), ("id", id.as_str()), ("period", period.as_str())];
    let (status, location, _) = post(&p, "/admin/ui/billing/do", &admin, &form).await;
    assert_eq!(status, 303);
    let (_, _, after) = page(&p, &location, &admin).await;
    let number: String =
        sqlx::query_scalar("SELECT number FROM billing.invoices").fetch_one(&pool).await.expect("number");
    assert!(after.contains(&format!("Finalized as {number}")), "{after}");

    // Finance downloads the exports with the session.
    for what in ["invoices", "invoice-lines", "credit-notes", "sla-credits"] {
        let (status, _, file) =
            page(&p, &format!("/admin/ui/billing/exports/{what}?period={month}&format=csv"), &admin).await;
        assert_eq!(status, 200, "{what}: {file}");
        assert!(file.lines().next().is_some_and(|header| header.contains(',')), "{what}: {file}");
    }
    assert!(
        page(&p, &format!("/admin/ui/billing/exports/invoices?period={month}&format=csv"), &admin)
            .await
            .2
            .contains(&number)
    );
    assert_eq!(page(&p, &format!("/admin/ui/billing/exports/invoices?period={month}&format=csv"), &acme).await.0, 403);

    // The tenant sees it and downloads it; another tenant cannot.
    let (_, _, home) = page(&p, "/console/invoices", &acme).await;
    assert!(home.contains(&number), "{home}");
    let (status, _, csv) = page(&p, &format!("/console/invoices/{id}.csv"), &acme).await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("invoice_id,invoice_number"), "{csv}");
    let (_, _, other) = sign_in(&p, "/console/sign-in", &p.tenant_token("other"), false).await;
    let (status, _, _) = page(&p, &format!("/console/invoices/{id}.pdf"), &session(&other)).await;
    assert_eq!(status, 404);

    // Signing out needs the session's CSRF token, and ends the session.
    assert_eq!(post(&p, "/console/sign-out", &acme, &[("csrf", "nope")]).await.0, 403);
    let (status, location, _) = post(&p, "/console/sign-out", &acme, &[("csrf", csrf(&home).as_str())]).await;
    assert_eq!((status, location.as_str()), (303, "/console/sign-in"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn operators_find_sort_page_create_and_cancel_contracts(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let next_month = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let committed = reserve(&mut contracts, "alice", pb::Tier::Premium, next_month.start()).await;
    contracts.ensure_tenant(pb::EnsureTenantRequest { id: "bob".into() }).await.expect("tenant");
    for i in 0..55u32 {
        let order = pb::QuoteRequest {
            tenant_id: "bob".into(),
            model: reservoir_tests::MODEL.into(),
            rate_tokens_per_s: 1 + i,
            tier: pb::Tier::Standard.into(),
            term: pb::Term::Hourly.into(),
            // An hour each, one after another: they never hold capacity together.
            starts_at: Some(reservoir_proto::time::timestamp(Utc::now() + Duration::hours(1 + i64::from(i)))),
            ends_at: Some(reservoir_proto::time::timestamp(Utc::now() + Duration::hours(2 + i64::from(i)))),
        };
        let request =
            pb::CreateReservationRequest { order: Some(order), idempotency_key: format!("b{i}"), allow_burst: None };
        contracts.create_reservation(request).await.expect("reserve");
    }
    let (_, _, cookie) = sign_in(&p, "/admin/sign-in", &p.admin_token(), false).await;
    let admin = session(&cookie);

    // Filtered on the server, sorted by a column, paged by 50.
    let (status, _, body) = page(&p, "/admin/ui/contracts?tenant=bob&sort=rate&dir=desc", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Page 1 of 2 (55 in all)") && !body.contains(">alice<"), "{body}");
    assert!(body.contains(r#"aria-sort="descending"><a href="?tenant=bob&#38;sort=rate&#38;dir=asc""#), "{body}");
    let first_rate = body.find(">55<").expect("the highest rate first");
    assert!(body.find(">54<").is_some_and(|i| i > first_rate));
    let (_, _, second) = page(&p, "/admin/ui/contracts?tenant=bob&sort=rate&dir=desc&page=2", &admin).await;
    assert!(second.contains("Page 2 of 2") && second.contains(">1<") && !second.contains(">55<"), "{second}");
    assert_eq!(page(&p, "/admin/ui/contracts?sort=price", &admin).await.0, 422, "an unknown order");

    // Tenants: search, one tenant's page, an unknown one.
    let (_, _, found) = page(&p, "/admin/ui/tenants?q=ali", &admin).await;
    assert!(found.contains("/admin/ui/tenants/alice") && !found.contains("/admin/ui/tenants/bob"), "{found}");
    let (status, _, alice) = page(&p, "/admin/ui/tenants/alice", &admin).await;
    assert_eq!(status, 200);
    assert!(alice.contains("Contracts (1)") && alice.contains("Credit balance"), "{alice}");
    assert_eq!(page(&p, "/admin/ui/tenants/nobody", &admin).await.0, 404);

    // A new contract: a bad form says why; a good one is quoted, then reserved once.
    let (status, _, refused) = page(
        &p,
        "/admin/ui/contracts/quote?tenant=alice&model=smollm2-135m-instruct&rate=zero&tier=premium&term=hourly",
        &admin,
    )
    .await;
    assert_eq!(status, 422);
    assert!(refused.contains("The rate is a whole number"), "{refused}");
    let query = "tenant=alice&model=smollm2-135m-instruct&rate=25&tier=premium&term=hourly&allow_burst=on";
    let (status, _, quote) = page(&p, &format!("/admin/ui/contracts/quote?{query}"), &admin).await;
    assert_eq!(status, 200, "{quote}");
    assert!(quote.contains("Quote for alice") && quote.contains("Graduated rate tiers"), "{quote}");
    let key = quote.split(r#"name="idempotency_key" value=""#).nth(1).and_then(|s| s.split('"').next()).expect("key");
    let form = [
        ("csrf", csrf(&quote)),
        ("idempotency_key", key.to_owned()),
        ("tenant", "alice".into()),
        ("model", reservoir_tests::MODEL.into()),
        ("rate", "25".into()),
        ("tier", "premium".into()),
        ("term", "hourly".into()),
        ("starts_at", String::new()),
        ("allow_burst", "on".into()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location, _) = post(&p, "/admin/ui/contracts", &admin, &form).await;
    assert_eq!(status, 303);
    assert!(page(&p, &location, &admin).await.2.contains("Reserved 25 tokens/s"));
    assert_eq!(post(&p, "/admin/ui/contracts", &admin, &form).await.0, 303, "the same form again");
    let alices: i64 = sqlx::query_scalar("SELECT count(*) FROM contracts.reservations WHERE tenant_id = 'alice'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(alices, 2, "a resubmitted form reserves once");

    // Cancelling a committed term needs the override, and always a reason.
    let path = format!("/admin/ui/contracts/{}/cancel", committed.id);
    let (_, _, ask) = page(&p, &path, &admin).await;
    assert!(ask.contains("operator override"), "{ask}");
    let token = csrf(&ask);
    assert_eq!(post(&p, &path, &admin, &[("csrf", "forged"), ("reason", "x")]).await.0, 403);
    assert_eq!(post(&p, &path, &admin, &[("csrf", token.as_str()), ("reason", " ")]).await.0, 422);
    let (status, _, body) = post(&p, &path, &admin, &[("csrf", token.as_str()), ("reason", "moved")]).await;
    assert_eq!(status, 409, "the term's rules hold without the override: {body}");
    let form = [("csrf", token.as_str()), ("reason", "customer left"), ("override_term", "on")];
    let (status, location, _) = post(&p, &path, &admin, &form).await;
    assert_eq!(status, 303);
    assert!(page(&p, &location, &admin).await.2.contains("Cancelled contract"));
    let (reason, by): (String, String) =
        sqlx::query_as("SELECT cancel_reason, cancelled_by FROM contracts.reservations WHERE id = $1::uuid")
            .bind(&committed.id)
            .fetch_one(&pool)
            .await
            .expect("cancelled");
    assert_eq!((reason.as_str(), by.as_str()), ("customer left", "ops"));
}
