//! The portal over real HTTP, as a browser uses it: a token exchanged for a
//! session cookie (HttpOnly, SameSite=Strict, Secure behind TLS), pages that
//! need the session, CSRF on every form, a tenant refused on operator pages,
//! and an operator finalizing an invoice the tenant then sees.

use chrono::{Duration, Utc};
use reservoir_billing_service::run;
use reservoir_domain::Period;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_tests::sla_support::reserve;
use reservoir_tests::{MIGRATOR, Platform};
use sqlx::PgPool;

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Signs in at `path` with `token`; answers (status, Location, Set-Cookie).
async fn sign_in(p: &Platform, path: &str, token: &str, tls: bool) -> (u16, String, String) {
    let mut request = browser().post(p.url(path)).form(&[("token", token)]);
    if tls {
        request = request.header("x-forwarded-proto", "https");
    }
    let response = request.send().await.expect("sent");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (response.status().as_u16(), header("location"), header("set-cookie"))
}

/// `name=value` of the session cookie in a Set-Cookie header.
fn session(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

async fn page(p: &Platform, path: &str, cookie: &str) -> (u16, String, String) {
    let response = browser().get(p.url(path)).header("cookie", cookie).send().await.expect("sent");
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, location, response.text().await.expect("body"))
}

/// The CSRF token a page's forms carry.
fn csrf(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).map(|i| i + marker.len()).expect("a form with a CSRF token");
    html[start..].split('"').next().unwrap_or_default().to_owned()
}

async fn post(p: &Platform, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, String, String) {
    let response = browser().post(p.url(path)).header("cookie", cookie).form(form).send().await.expect("sent");
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, location, response.text().await.expect("body"))
}

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
    assert!(body.contains("acme") && body.contains("No invoices yet"), "{body}");
    let forged = format!("{}x", acme);
    assert_eq!(page(&p, "/console", &forged).await.1, "/console/sign-in");
    let (status, _, body) = sign_in(&p, "/console/sign-in", "not-a-token", false).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = sign_in(&p, "/admin/sign-in", &p.tenant_token("acme"), false).await;
    assert_eq!(status, 401, "a tenant token does not open the admin portal");

    // A tenant's session is refused on operator pages.
    let (status, _, body) = page(&p, "/admin/billing", &acme).await;
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
    assert_eq!((status, location.as_str()), (303, "/admin/billing"));
    let admin = session(&admin_cookie);
    let (status, _, body) = page(&p, &format!("/admin/billing?period={month}"), &admin).await;
    assert_eq!(status, 200);
    assert!(body.contains("acme") && body.contains("1 drafts"), "{body}");
    let id: String = sqlx::query_scalar("SELECT id::text FROM billing.invoices").fetch_one(&pool).await.expect("id");

    // Finalizing asks first, then shows the result.
    let (status, _, confirm) =
        page(&p, &format!("/admin/billing/confirm?action=finalize&id={id}&period={month}"), &admin).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("never changes again"), "{confirm}");
    let token = csrf(&confirm);
    let period = month.to_string();
    let form = [("csrf", "wrong"), ("action", "finalize"), ("id", id.as_str()), ("period", period.as_str())];
    assert_eq!(post(&p, "/admin/billing/do", &admin, &form).await.0, 403, "a forged form is refused");
    let form = [("csrf", token.as_str()), ("action", "finalize"), ("id", id.as_str()), ("period", period.as_str())];
    let (status, location, _) = post(&p, "/admin/billing/do", &admin, &form).await;
    assert_eq!(status, 303);
    let (_, _, after) = page(&p, &location, &admin).await;
    let number: String =
        sqlx::query_scalar("SELECT number FROM billing.invoices").fetch_one(&pool).await.expect("number");
    assert!(after.contains(&format!("Finalized as {number}")), "{after}");

    // Finance downloads the exports with the session.
    for what in ["invoices", "invoice-lines", "credit-notes", "sla-credits"] {
        let (status, _, file) =
            page(&p, &format!("/admin/billing/exports/{what}?period={month}&format=csv"), &admin).await;
        assert_eq!(status, 200, "{what}: {file}");
        assert!(file.lines().next().is_some_and(|header| header.contains(',')), "{what}: {file}");
    }
    assert!(
        page(&p, &format!("/admin/billing/exports/invoices?period={month}&format=csv"), &admin)
            .await
            .2
            .contains(&number)
    );
    assert_eq!(page(&p, &format!("/admin/billing/exports/invoices?period={month}&format=csv"), &acme).await.0, 403);

    // The tenant sees it and downloads it; another tenant cannot.
    let (_, _, home) = page(&p, "/console", &acme).await;
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
