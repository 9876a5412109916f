//! End to end through REST -> gRPC -> PostgreSQL: quote, reserve, read,
//! idempotent retries, cancellation rules, tenant isolation, capacity.

use reqwest::Method;
use reservoir_tests::{MIGRATOR, MODEL, MODEL_SELLABLE, Platform, error_code};
use serde_json::json;
use sqlx::PgPool;

fn hourly(rate: u32) -> serde_json::Value {
    json!({"model": MODEL, "rate": rate, "tier": "standard", "term": "hourly"})
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn quote_shows_its_breakdown_and_is_reproducible(pool: PgPool) {
    let p = Platform::start(pool).await;
    let token = p.tenant_token("acme");
    let body = json!({"model": MODEL, "rate": 150, "tier": "premium", "term": "month",
                      "starts_at": "2027-03-01T00:00:00Z"});
    let (status, quote) = p.call(Method::POST, "/v1/reservations/quote", &token, Some(body.clone())).await;
    assert_eq!(status, 200, "{quote}");
    // 100 x 0.0100 + 50 x 0.0090 = 1.45 per hour; x1.5 premium; x0.80 month = 1.74.
    assert_eq!(quote["base_price_per_hour"], "1.45");
    assert_eq!(quote["tier_multiplier"], "1.5");
    assert_eq!(quote["term_discount"], "0.20");
    assert_eq!(
        quote["price_per_hour"].as_str().and_then(|s| s.parse::<rust_decimal::Decimal>().ok()),
        Some(rust_decimal_macros::dec!(1.74))
    );
    assert_eq!(quote["catalog_version"], 1);
    assert_eq!(quote["ends_at"], "2027-04-01T00:00:00Z");
    // March has 744 hours: 1.74 x 744 = 1294.56.
    assert_eq!(quote["total_for_term_rounded"]["amount"], "1294.56");
    assert_eq!(quote["total_for_term_rounded"]["currency"], "USD");
    assert_eq!(quote["rate_tiers"].as_array().map(Vec::len), Some(2));
    let (_, again) = p.call(Method::POST, "/v1/reservations/quote", &token, Some(body)).await;
    assert_eq!(quote, again, "same catalog version and inputs, same quote");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn reserve_read_list_and_retry_with_the_same_key(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let token = p.tenant_token("acme");
    let send = |key: &'static str, body: serde_json::Value| {
        let request =
            p.http.post(p.url("/v1/reservations")).bearer_auth(&token).header("Idempotency-Key", key).json(&body);
        async move {
            let response = request.send().await.expect("sent");
            (response.status().as_u16(), response.json::<serde_json::Value>().await.expect("json"))
        }
    };
    let (status, first) = send("k-1", hourly(40)).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "active");
    assert_eq!(first["rate"], 40);
    assert_eq!(first["tenant"], "acme");
    assert_eq!(first["ends_at"], serde_json::Value::Null);
    assert_eq!(first["price"]["per_hour"], json!({"amount": "0.4", "currency": "USD"}));

    let (status, retry) = send("k-1", hourly(40)).await;
    assert_eq!(status, 201);
    assert_eq!(retry, first, "a retry answers the same reservation");
    let (status, conflict) = send("k-1", hourly(41)).await;
    assert_eq!(status, 409, "{conflict}");
    assert!(conflict["error"]["message"].as_str().unwrap_or("").contains("Idempotency-Key"));
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM contracts.reservations").fetch_one(&pool).await.expect("count");
    assert_eq!(rows, 1, "retries and conflicts write nothing");

    let id = first["id"].as_str().expect("id");
    let (status, read) = p.call(Method::GET, &format!("/v1/reservations/{id}"), &token, None).await;
    assert_eq!((status, &read), (200, &first));
    let (status, list) = p.call(Method::GET, "/v1/reservations?status=active", &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["reservations"], json!([first]));
    let (status, list) = p.call(Method::GET, "/v1/reservations?status=cancelled", &token, None).await;
    assert_eq!((status, list["reservations"].as_array().map(Vec::len)), (200, Some(0)));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tenants_see_only_their_own_reservations(pool: PgPool) {
    let p = Platform::start(pool).await;
    let a = p.tenant_token("tenant-a");
    let b = p.tenant_token("tenant-b");
    let (_, reservation) = p.call(Method::POST, "/v1/reservations", &a, Some(hourly(10))).await;
    let id = reservation["id"].as_str().expect("id");
    for (method, path) in
        [(Method::GET, format!("/v1/reservations/{id}")), (Method::POST, format!("/v1/reservations/{id}/cancel"))]
    {
        let (status, body) = p.call(method, &path, &b, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
    let (_, list) = p.call(Method::GET, "/v1/reservations", &b, None).await;
    assert_eq!(list["reservations"], json!([]));
    let (status, _) = p.call(Method::GET, &format!("/v1/reservations/{id}"), &a, None).await;
    assert_eq!(status, 200, "still there for its owner");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cancelling_follows_the_term_rules(pool: PgPool) {
    let p = Platform::start(pool).await;
    let token = p.tenant_token("acme");
    let admin = p.admin_token();

    let (_, hourly_r) = p.call(Method::POST, "/v1/reservations", &token, Some(hourly(10))).await;
    let id = hourly_r["id"].as_str().expect("id");
    let (status, cancelled) = p.call(Method::POST, &format!("/v1/reservations/{id}/cancel"), &token, None).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (status, again) = p.call(Method::POST, &format!("/v1/reservations/{id}/cancel"), &token, None).await;
    assert_eq!((status, error_code(&again)), (409, "conflict"));

    let month = json!({"model": MODEL, "rate": 10, "tier": "enterprise", "term": "month"});
    let (status, month_r) = p.call(Method::POST, "/v1/reservations", &token, Some(month)).await;
    assert_eq!(status, 201, "{month_r}");
    let id = month_r["id"].as_str().expect("id");
    let (status, refused) = p.call(Method::POST, &format!("/v1/reservations/{id}/cancel"), &token, None).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap_or("").contains("cannot be cancelled before it ends"));

    let (status, no_reason) =
        p.call(Method::POST, &format!("/admin/reservations/{id}/cancel"), &admin, Some(json!({"reason": " "}))).await;
    assert_eq!((status, error_code(&no_reason)), (422, "invalid_request"));
    let (status, by_admin) = p
        .call(
            Method::POST,
            &format!("/admin/reservations/{id}/cancel"),
            &admin,
            Some(json!({"reason": "customer moved region"})),
        )
        .await;
    assert_eq!(status, 200, "{by_admin}");
    assert_eq!(by_admin["status"], "cancelled");
    assert_eq!(by_admin["cancel_reason"], "customer moved region");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn capacity_is_a_step_function_of_what_is_sold(pool: PgPool) {
    let p = Platform::start(pool).await;
    let token = p.tenant_token("acme");
    let body = json!({"model": MODEL, "rate": 300, "tier": "standard", "term": "hourly",
                      "starts_at": "2027-03-01T10:00:00Z", "ends_at": "2027-03-01T12:00:00Z"});
    let (status, _) = p.call(Method::POST, "/v1/reservations", &token, Some(body)).await;
    assert_eq!(status, 201);
    let path = format!("/v1/capacity?model={MODEL}&from=2027-03-01T09:00:00Z&to=2027-03-01T13:00:00Z");
    let (status, capacity) = p.call(Method::GET, &path, &token, None).await;
    assert_eq!(status, 200, "{capacity}");
    assert_eq!(capacity["sellable"], MODEL_SELLABLE);
    assert_eq!(
        capacity["steps"],
        json!([
            {"from": "2027-03-01T09:00:00Z", "to": "2027-03-01T10:00:00Z", "reserved": 0, "free": 900},
            {"from": "2027-03-01T10:00:00Z", "to": "2027-03-01T12:00:00Z", "reserved": 300, "free": 600},
            {"from": "2027-03-01T12:00:00Z", "to": "2027-03-01T13:00:00Z", "reserved": 0, "free": 900},
        ])
    );
    let (status, body) = p.call(Method::GET, "/v1/capacity?model=no-such-model", &token, None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_pool_is_not_oversold_one_request_at_a_time(pool: PgPool) {
    let p = Platform::start(pool).await;
    let token = p.tenant_token("acme");
    let (status, _) = p.call(Method::POST, "/v1/reservations", &token, Some(hourly(MODEL_SELLABLE - 5))).await;
    assert_eq!(status, 201);
    let (status, refused) = p.call(Method::POST, "/v1/reservations", &token, Some(hourly(6))).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["details"]["available_tokens_per_s"], 5);
    assert!(refused["error"]["message"].as_str().unwrap_or("").contains("5 weighted tokens/s"));
    let (status, _) = p.call(Method::POST, "/v1/reservations", &token, Some(hourly(5))).await;
    assert_eq!(status, 201, "exactly what is left still sells");
}
