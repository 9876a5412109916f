//! API tokens from the tenant console: issued and shown once, usable on the
//! API at once, listed without the secret, revoked after a confirmation and
//! refused from then on (sessions opened with them included); only the
//! tenant's own; bounded; and impossible to forge a `token_id` for.

use reservoir_domain::Role;
use reservoir_gateway::auth::Signer;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_runtime::config::AuthConfig;
use reservoir_tests::portal_support::{csrf, page, post, session, sign_in};
use reservoir_tests::{MIGRATOR, Options, Platform, error_code, rs256_auth};
use sqlx::PgPool;

/// The token on the page that answered its creation.
fn issued_token(html: &str) -> String {
    let start = html.find(r#"<textarea id="token""#).expect("the token's field");
    let body = &html[start..];
    let open = body.find('>').expect("field opens") + 1;
    let close = body.find("</textarea>").expect("field closes");
    body[open..close].trim().to_owned()
}

async fn console(p: &Platform, tenant: &str) -> String {
    let (status, _, cookie) = sign_in(p, "/console/sign-in", &p.tenant_token(tenant), false).await;
    assert_eq!(status, 303);
    session(&cookie)
}

/// Posts `fields` to `path` with the CSRF token of `form_page`.
async fn submit(
    p: &Platform,
    path: &str,
    cookie: &str,
    form_page: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let token = csrf(form_page);
    let mut form = vec![("csrf", token.as_str())];
    form.extend_from_slice(fields);
    post(p, path, cookie, &form).await
}

/// Issues a token named `name` from the console; answers the page.
async fn issue(p: &Platform, cookie: &str, name: &str, days: &str) -> (u16, String) {
    let (_, _, list) = page(p, "/console/tokens", cookie).await;
    let (status, _, body) =
        submit(p, "/console/tokens", cookie, &list, &[("name", name), ("lifetime_days", days)]).await;
    (status, body)
}

async fn usage_status(p: &Platform, token: &str) -> (u16, serde_json::Value) {
    p.call(reqwest::Method::GET, "/v1/reservations", token, None).await
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_token_is_shown_once_works_at_once_and_stops_when_revoked(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let acme = console(&p, "acme").await;

    let (status, _, body) = page(&p, "/console/tokens", &acme).await;
    assert_eq!(status, 200);
    assert!(body.contains("No tokens issued here yet") && body.contains("API tokens"), "{body}");

    // Issued: the page shows it, tells it is shown once, and is not cached.
    let (_, _, list) = page(&p, "/console/tokens", &acme).await;
    let token = csrf(&list);
    let form = [("csrf", token.as_str()), ("name", " ci-deploy "), ("lifetime_days", "30")];
    let response = reqwest::Client::new()
        .post(p.url("/console/tokens"))
        .header("cookie", &acme)
        .form(&form)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let body = response.text().await.expect("body");
    assert!(body.contains("shown only once") && body.contains("ci-deploy"), "{body}");
    let token = issued_token(&body);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // It works on the API right away, as the tenant.
    let (status, reply) = usage_status(&p, &token).await;
    assert_eq!(status, 200, "{reply}");

    // The list names it, with its expiry about 30 days out, never the secret.
    let (_, _, list) = page(&p, "/console/tokens", &acme).await;
    assert!(list.contains("ci-deploy") && list.contains("active"), "{list}");
    assert!(!list.contains(&token), "the list never shows a token");
    let stored: (String, i64) = sqlx::query_as(
        "SELECT id::text, extract(day FROM expires_at - created_at)::bigint FROM contracts.api_tokens WHERE tenant_id = 'acme'",
    )
    .fetch_one(&pool)
    .await
    .expect("stored");
    assert_eq!(stored.1, 30);
    let id = stored.0;

    // Another tenant can neither see nor revoke it.
    let globex = console(&p, "globex").await;
    let (status, _, _) = page(&p, &format!("/console/tokens/{id}/revoke"), &globex).await;
    assert_eq!(status, 404);
    let (_, _, theirs) = page(&p, "/console/tokens", &globex).await;
    assert!(!theirs.contains("ci-deploy"), "{theirs}");
    assert_eq!(submit(&p, &format!("/console/tokens/{id}/revoke"), &globex, &theirs, &[]).await.0, 404);
    assert_eq!(usage_status(&p, &token).await.0, 200, "still usable");

    // Revoking asks first, refuses a stale form, then takes effect at once.
    let (status, _, confirm) = page(&p, &format!("/console/tokens/{id}/revoke"), &acme).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("cannot be undone") && !confirm.contains("signs you out"), "{confirm}");
    let stale = [("csrf", "stale")];
    assert_eq!(post(&p, &format!("/console/tokens/{id}/revoke"), &acme, &stale).await.0, 403);
    let (status, location, _) = submit(&p, &format!("/console/tokens/{id}/revoke"), &acme, &confirm, &[]).await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/console/tokens?notice="), "{location}");
    let (status, reply) = usage_status(&p, &token).await;
    assert_eq!(status, 401, "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap_or_default().contains("revoked"), "{reply}");
    let (_, _, list) = page(&p, "/console/tokens", &acme).await;
    assert!(list.contains("revoked"), "{list}");
    // Revoking again changes nothing.
    assert_eq!(submit(&p, &format!("/console/tokens/{id}/revoke"), &acme, &confirm, &[]).await.0, 303);
    let (status, _, _) = sign_in(&p, "/console/sign-in", &token, false).await;
    assert_eq!(status, 401, "a revoked token opens no session");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn revoking_ends_sessions_and_reaches_other_gateways(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let acme = console(&p, "acme").await;
    let (status, body) = issue(&p, &acme, "laptop", "7").await;
    assert_eq!(status, 201, "{body}");
    let token = issued_token(&body);

    // A session opened with the token warns that revoking it signs out, and does.
    let (status, _, cookie) = sign_in(&p, "/console/sign-in", &token, false).await;
    assert_eq!(status, 303);
    let own = session(&cookie);
    let id: String = sqlx::query_scalar("SELECT id::text FROM contracts.api_tokens WHERE name = 'laptop'")
        .fetch_one(&pool)
        .await
        .expect("id");
    let (_, _, confirm) = page(&p, &format!("/console/tokens/{id}/revoke"), &own).await;
    assert!(confirm.contains("signs you out"), "{confirm}");
    let (status, location, _) = submit(&p, &format!("/console/tokens/{id}/revoke"), &own, &confirm, &[]).await;
    assert_eq!((status, location.as_str()), (303, "/console/sign-in"));
    let (status, _, body) = page(&p, "/console", &own).await;
    assert_eq!(status, 401, "the cookie, replayed, is refused: {body}");
    assert!(body.contains("revoked"), "{body}");
    assert_eq!(page(&p, "/console", &acme).await.0, 200, "other sessions go on");

    // A revocation made elsewhere (here: straight at the contracts service,
    // as another gateway would) reaches this gateway once its few seconds
    // of trust in the last answer are over.
    let (_, body) = issue(&p, &acme, "server", "90").await;
    let token = issued_token(&body);
    assert_eq!(usage_status(&p, &token).await.0, 200);
    let id: String = sqlx::query_scalar("SELECT id::text FROM contracts.api_tokens WHERE name = 'server'")
        .fetch_one(&pool)
        .await
        .expect("id");
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    contracts.revoke_api_token(pb::ApiTokenRef { tenant_id: "acme".into(), id: id.clone() }).await.expect("revoked");
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(usage_status(&p, &token).await.0, 401);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_requests_are_refused_and_the_count_is_bounded(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let acme = console(&p, "acme").await;
    for (name, days, why) in [("", "30", "name"), (&"x".repeat(65), "30", "name"), ("ok", "0", "lifetime_days")] {
        let (status, body) = issue(&p, &acme, name, days).await;
        assert!(status == 422 || status == 400, "{name:?}/{days}: {status} {body}");
        assert!(body.contains(why), "{body}");
    }
    let (status, _) = issue(&p, &acme, "ok", "366").await;
    assert_eq!(status, 422);
    let (status, _) = issue(&p, &acme, "ok", "soon").await;
    assert_eq!(status, 422, "a lifetime that is not a number");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM contracts.api_tokens").fetch_one(&pool).await.expect("n");
    assert_eq!(count, 0, "nothing half-made");

    // 25 active tokens at once, no more; concurrent requests cannot pass it.
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let requests = (0..30).map(|i| {
        let mut contracts = contracts.clone();
        async move {
            let r = pb::CreateApiTokenRequest { tenant_id: "acme".into(), name: format!("t{i}"), lifetime_days: 1 };
            contracts.create_api_token(r).await
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let made = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(made, 25);
    let refused = answers.iter().find_map(|a| a.as_ref().err()).expect("a refusal");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let (status, body) = issue(&p, &acme, "one-more", "30").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("revoke one first"), "{body}");
    let unknown = pb::ListApiTokensRequest { tenant_id: "nobody".into() };
    assert_eq!(contracts.list_api_tokens(unknown).await.expect_err("unknown").code(), tonic::Code::NotFound);
    let malformed = pb::ApiTokenRef { tenant_id: "acme".into(), id: "not-a-uuid".into() };
    assert_eq!(contracts.get_api_token(malformed).await.expect_err("malformed").code(), tonic::Code::NotFound);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_token_id_cannot_be_forged_or_borrowed(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let acme = console(&p, "acme").await;
    let (_, body) = issue(&p, &acme, "real", "30").await;
    assert_eq!(usage_status(&p, &issued_token(&body)).await.0, 200);
    let id: String =
        sqlx::query_scalar("SELECT id::text FROM contracts.api_tokens").fetch_one(&pool).await.expect("id");
    let signer = Signer::from_config(&p.auth).expect("signer").expect("HS256 signs");
    let in_a_day = u64::try_from(chrono::Utc::now().timestamp()).expect("now") + 86_400;

    // Even signed with the platform's key, an id nobody issued is refused,
    // and acme's token id does not work for globex.
    let made_up = signer.sign("acme", Role::Tenant, in_a_day, Some(uuid::Uuid::new_v4())).expect("sign");
    let (status, reply) = usage_status(&p, &made_up).await;
    assert_eq!((status, error_code(&reply)), (401, "unauthorized"), "{reply}");
    let borrowed = signer.sign("globex", Role::Tenant, in_a_day, id.parse().ok()).expect("sign");
    assert_eq!(usage_status(&p, &borrowed).await.0, 401);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn without_the_signing_key_the_console_says_where_tokens_come_from(pool: PgPool) {
    let verify_only = AuthConfig { rs256_private_key_pem_file: None, ..rs256_auth() };
    let p = Platform::start_with(pool, Options { auth: verify_only, ..Options::default() }).await;
    let token = reservoir_gateway::auth::mint(&rs256_auth(), "acme", Role::Tenant).expect("mint");
    let (status, _, cookie) = sign_in(&p, "/console/sign-in", &token, false).await;
    assert_eq!(status, 303);
    let acme = session(&cookie);
    let (status, _, body) = page(&p, "/console/tokens", &acme).await;
    assert_eq!(status, 200);
    assert!(body.contains("identity provider") && !body.contains("Issue token</button>"), "{body}");
    let fields = [("name", "x"), ("lifetime_days", "30")];
    let (status, _, body) = submit(&p, "/console/tokens", &acme, &body, &fields).await;
    assert_eq!(status, 409, "{body}");
}
