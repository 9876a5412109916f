//! Authentication: only valid tokens of the right role get through; every
//! refusal is a JSON error; a valid token for a new tenant provisions it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use reservoir_tests::{MIGRATOR, Options, Platform, TEST_SECRET, error_code, fixture, rs256_auth};
use serde_json::json;
use sqlx::PgPool;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

fn claims(sub: &str, role: &str, aud: &str, exp: u64) -> serde_json::Value {
    json!({"sub": sub, "role": role, "aud": aud, "iss": "reservoir", "exp": exp, "iat": now()})
}

fn hs256(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("encode")
}

async fn status_and_code(p: &Platform, path: &str, token: &str) -> (u16, String) {
    let (status, body) = p.call(Method::GET, path, token, None).await;
    (status, error_code(&body).to_owned())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_tokens_are_refused_with_json_errors(pool: PgPool) {
    let p = Platform::start(pool).await;
    let good = claims("acme", "tenant", "reservoir", now() + 600);
    let unauthorized = (401, "unauthorized".to_owned());

    let expired = hs256(&claims("acme", "tenant", "reservoir", now() - 3600), TEST_SECRET);
    assert_eq!(status_and_code(&p, "/v1/reservations", &expired).await, unauthorized);

    let wrong_audience = hs256(&claims("acme", "tenant", "someone-else", now() + 600), TEST_SECRET);
    assert_eq!(status_and_code(&p, "/v1/reservations", &wrong_audience).await, unauthorized);

    let wrong_secret = hs256(&good, "another-secret-that-is-also-long-enough-000000");
    assert_eq!(status_and_code(&p, "/v1/reservations", &wrong_secret).await, unauthorized);

    // Tampered: the payload says admin, the signature was made for a tenant.
    let token = hs256(&good, TEST_SECRET);
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(claims("acme", "admin", "reservoir", now() + 600).to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(status_and_code(&p, "/admin/tenants", &tampered).await, unauthorized);

    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let none_payload = URL_SAFE_NO_PAD.encode(good.to_string());
    let alg_none = format!("{none_header}.{none_payload}.");
    assert_eq!(status_and_code(&p, "/v1/reservations", &alg_none).await, unauthorized);

    let no_exp = hs256(&json!({"sub": "acme", "role": "tenant", "aud": "reservoir", "iss": "reservoir"}), TEST_SECRET);
    assert_eq!(status_and_code(&p, "/v1/reservations", &no_exp).await, unauthorized);

    let odd_role = hs256(&claims("acme", "superuser", "reservoir", now() + 600), TEST_SECRET);
    assert_eq!(status_and_code(&p, "/v1/reservations", &odd_role).await, unauthorized);

    for garbage in ["", "not-a-jwt", "a.b.c", "%%%"] {
        let (status, _) = status_and_code(&p, "/v1/reservations", garbage).await;
        assert_eq!(status, 401, "{garbage:?}");
    }
    let response = p.http.get(p.url("/v1/reservations")).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 401, "no token at all");
    assert_eq!(response.headers().get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn roles_are_enforced(pool: PgPool) {
    let p = Platform::start(pool).await;
    let tenant = p.tenant_token("acme");
    let admin = p.admin_token();
    assert_eq!(status_and_code(&p, "/admin/tenants", &tenant).await, (403, "forbidden".to_owned()));
    assert_eq!(status_and_code(&p, "/v1/reservations", &admin).await, (403, "forbidden".to_owned()));
    let (status, _) = p.call(Method::GET, "/admin/tenants", &admin, None).await;
    assert_eq!(status, 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_valid_token_provisions_its_tenant(pool: PgPool) {
    let p = Platform::start(pool).await;
    let admin = p.admin_token();
    let (_, before) = p.call(Method::GET, "/admin/tenants", &admin, None).await;
    assert_eq!(before["tenants"], json!([]));
    let (status, _) = p.call(Method::GET, "/v1/reservations", &p.tenant_token("newco"), None).await;
    assert_eq!(status, 200);
    let (_, after) = p.call(Method::GET, "/admin/tenants", &admin, None).await;
    assert_eq!(after["tenants"][0]["id"], "newco");
    assert_eq!(after["tenants"][0]["currency"], "USD", "the default currency");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn rs256_tokens_verify_with_the_public_key(pool: PgPool) {
    let p = Platform::start_with(pool, Options { auth: rs256_auth(), ..Options::default() }).await;
    let (status, body) = p.call(Method::GET, "/v1/reservations", &p.tenant_token("acme"), None).await;
    assert_eq!(status, 200, "{body}");

    // An HS256 token signed with the public key as secret (algorithm confusion) is refused.
    let public_pem = std::fs::read(fixture("rs256-test-public.pem")).expect("pem");
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("acme", "tenant", "reservoir", now() + 600),
        &EncodingKey::from_secret(&public_pem),
    )
    .expect("encode");
    assert_eq!(status_and_code(&p, "/v1/reservations", &confused).await, (401, "unauthorized".to_owned()));
    let hs = hs256(&claims("acme", "tenant", "reservoir", now() + 600), TEST_SECRET);
    assert_eq!(status_and_code(&p, "/v1/reservations", &hs).await, (401, "unauthorized".to_owned()));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn callers_over_their_rate_get_429_with_retry_after(pool: PgPool) {
    // One request a second with a burst of three: the fourth at once is refused.
    let rate_limit = reservoir_gateway::RateLimit { requests_per_s: 1, burst: 3 };
    let p = Platform::start_with(pool, Options { rate_limit, ..Options::default() }).await;
    let token = p.tenant_token("eager");
    for _ in 0..3 {
        let (status, _) = p.call(Method::GET, "/v1/reservations", &token, None).await;
        assert_eq!(status, 200);
    }
    let response = p.http.get(p.url("/v1/reservations")).bearer_auth(&token).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(&response.json().await.expect("json")), "rate_limited");
    // Another caller has its own allowance.
    let (status, _) = p.call(Method::GET, "/v1/reservations", &p.tenant_token("patient"), None).await;
    assert_eq!(status, 200);
}
