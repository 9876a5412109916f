//! No input makes the gateway answer 5xx or lose its shape: malformed JSON,
//! wrong types, huge or negative numbers, unknown enum values, bad dates, NUL
//! bytes, oversized bodies, and thousands of generated bodies.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use reqwest::Method;
use reservoir_tests::{MIGRATOR, MODEL, Options, Platform, error_code};
use serde_json::{Value, json};
use sqlx::PgPool;

async fn post_raw(p: &Platform, path: &str, token: &str, body: &'static str) -> (u16, Value) {
    let response = p
        .http
        .post(p.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn malformed_and_invalid_bodies_get_typed_errors(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let token = p.tenant_token("acme");
    let cases: &[(&'static str, u16, &str)] = &[
        ("{", 400, "bad_request"),
        ("not json", 400, "bad_request"),
        ("[]", 422, "invalid_request"),
        (r#"{"model": 5, "rate": 1, "tier": "standard", "term": "hourly"}"#, 422, "invalid_request"),
        (r#"{"model": "m", "rate": "ten", "tier": "standard", "term": "hourly"}"#, 422, "invalid_request"),
        (r#"{"model": "m", "rate": -1, "tier": "standard", "term": "hourly"}"#, 422, "invalid_request"),
        (r#"{"model": "m", "rate": 1e40, "tier": "standard", "term": "hourly"}"#, 422, "invalid_request"),
        (
            r#"{"model": "m", "rate": 99999999999999999999999, "tier": "standard", "term": "hourly"}"#,
            422,
            "invalid_request",
        ),
        (r#"{"model": "m", "rate": 1.5, "tier": "standard", "term": "hourly"}"#, 422, "invalid_request"),
        (r#"{"model": "m", "rate": 0, "tier": "standard", "term": "hourly"}"#, 422, "invalid_request"),
        (
            r#"{"model": "smollm2-135m-instruct", "rate": 4294967295, "tier": "standard", "term": "hourly"}"#,
            422,
            "invalid_request",
        ),
        (r#"{"model": "m", "rate": 1, "tier": "gold", "term": "hourly"}"#, 422, "invalid_request"),
        (r#"{"model": "m", "rate": 1, "tier": "standard", "term": "forever"}"#, 422, "invalid_request"),
        (
            r#"{"model": "m", "rate": 1, "tier": "standard", "term": "hourly", "starts_at": "yesterday"}"#,
            422,
            "invalid_request",
        ),
        (
            r#"{"model": "m", "rate": 1, "tier": "standard", "term": "hourly", "starts_at": "2027-13-45T00:00:00Z"}"#,
            422,
            "invalid_request",
        ),
        (
            r#"{"model": "smollm2-135m-instruct", "rate": 1, "tier": "standard", "term": "hourly", "starts_at": "1999-01-01T00:00:00Z"}"#,
            422,
            "invalid_request",
        ),
        (
            r#"{"model": "smollm2-135m-instruct", "rate": 1, "tier": "standard", "term": "hourly", "starts_at": "2027-01-01T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"}"#,
            422,
            "invalid_request",
        ),
        (
            r#"{"model": "smollm2-135m-instruct", "rate": 1, "tier": "standard", "term": "month", "starts_at": "2027-01-01T00:00:00Z", "ends_at": "2027-01-15T00:00:00Z"}"#,
            422,
            "invalid_request",
        ),
        (r#"{"model": "bad\u0000model", "rate": 1, "tier": "standard", "term": "hourly"}"#, 422, "invalid_request"),
        (r#"{"model": "no-such-model", "rate": 1, "tier": "standard", "term": "hourly"}"#, 404, "not_found"),
        (
            r#"{"model": "smollm2-135m-instruct", "rate": 1, "tier": "standard", "term": "hourly", "colour": "red"}"#,
            422,
            "invalid_request",
        ),
        (r#"{"rate": 1, "tier": "standard", "term": "hourly"}"#, 422, "invalid_request"),
    ];
    for path in ["/v1/reservations", "/v1/reservations/quote"] {
        for (body, status, code) in cases {
            let (got, answer) = post_raw(&p, path, &token, body).await;
            assert_eq!((got, error_code(&answer)), (*status, *code), "{path} {body}: {answer}");
        }
    }
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM contracts.reservations").fetch_one(&pool).await.expect("count");
    assert_eq!(rows, 0, "nothing was written");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn odd_requests_get_json_errors(pool: PgPool) {
    let p = Platform::start_with(pool, Options { body_limit_bytes: 4096, ..Options::default() }).await;
    let token = p.tenant_token("acme");

    let huge = format!(r#"{{"model": "{}", "rate": 1, "tier": "standard", "term": "hourly"}}"#, "x".repeat(10_000));
    let response = p
        .http
        .post(p.url("/v1/reservations"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(error_code(&response.json().await.expect("json")), "payload_too_large");

    let response = p.http.post(p.url("/v1/reservations")).bearer_auth(&token).body("{}").send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 415, "no JSON content type");

    let (status, body) = p.call(Method::GET, "/v1/reservations/not-a-uuid", &token, None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) =
        p.call(Method::GET, "/v1/reservations/00000000-0000-0000-0000-000000000000", &token, None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = p.call(Method::GET, "/v1/no-such-thing", &token, None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = p.call(Method::DELETE, "/v1/reservations", &token, None).await;
    assert_eq!((status, error_code(&body)), (405, "method_not_allowed"));
    let (status, body) = p.call(Method::GET, "/v1/reservations?limit=-3", &token, None).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));
    let (status, body) = p.call(Method::GET, "/v1/reservations?status=bogus", &token, None).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));
    let (status, body) = p
        .call(
            Method::GET,
            "/v1/capacity?model=smollm2-135m-instruct&from=2027-01-02T00:00:00Z&to=2027-01-01T00:00:00Z",
            &token,
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));
    let (status, body) = p
        .call(
            Method::GET,
            "/v1/capacity?model=smollm2-135m-instruct&from=2027-01-01T00:00:00Z&to=2099-01-01T00:00:00Z",
            &token,
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));

    let (_, created) = p
        .call(
            Method::POST,
            "/v1/reservations",
            &token,
            Some(json!({"model": MODEL, "rate": 1, "tier": "standard", "term": "hourly"})),
        )
        .await;
    let id = created["id"].as_str().expect("id");
    let response = p
        .http
        .post(p.url(&format!("/v1/reservations/{id}/cancel")))
        .bearer_auth(&token)
        .body(r#"{"reason": "nul \u0000 byte"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 422, "a NUL byte in the reason");
    let response = p
        .http
        .post(p.url(&format!("/v1/reservations/{id}/cancel")))
        .bearer_auth(&token)
        .body("{oops")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 400);
}

/// Generated values of every JSON type, including the awkward ones.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("standard"),
            Just("hourly"),
            Just("month"),
            Just(MODEL),
            Just("2027-01-01T00:00:00Z"),
            Just("\u{0}")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(2, 16, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies shaped like a reservation request, with any field replaced.
fn reservation_like() -> impl Strategy<Value = Value> {
    (any_json(), any_json(), any_json(), any_json(), any_json(), any_json(), 0usize..7).prop_map(
        |(model, rate, tier, term, starts, ends, keep)| {
            let mut body = json!({"model": MODEL, "rate": 1, "tier": "standard", "term": "hourly"});
            let fields = [
                ("model", model),
                ("rate", rate),
                ("tier", tier),
                ("term", term),
                ("starts_at", starts),
                ("ends_at", ends),
            ];
            for (i, (name, value)) in fields.into_iter().enumerate() {
                if i != keep {
                    body[name] = value;
                }
            }
            body
        },
    )
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn generated_bodies_never_get_a_server_error(pool: PgPool) {
    let p = Platform::start(pool).await;
    let token = p.tenant_token("fuzzer");
    let admin = p.admin_token();
    let mut runner = TestRunner::new(ProptestConfig { cases: 1500, ..ProptestConfig::default() });
    let strategy = (reservation_like(), any_json(), 0usize..6);
    let mut bodies = Vec::new();
    for _ in 0..1500 {
        bodies.push(strategy.new_tree(&mut runner).expect("value").current());
    }
    for (reservation, other, target) in bodies {
        let (method, path, token, body) = match target {
            0 => (Method::POST, "/v1/reservations/quote", &token, reservation),
            1 => (Method::POST, "/v1/reservations", &token, reservation),
            2 => (Method::POST, "/admin/tenants", &admin, other),
            3 => (Method::POST, "/admin/models", &admin, other),
            4 => (Method::PATCH, "/admin/models/smollm2-135m-instruct", &admin, other),
            _ => (Method::PUT, "/admin/catalog", &admin, other),
        };
        let (status, answer) = p.call(method, path, token, Some(body.clone())).await;
        assert!(status < 500, "{path} {body} -> {status} {answer}");
        if status >= 400 {
            error_code(&answer);
        }
    }
}
