//! The admin API: tenants, models and their capacity, catalog versions,
//! every tenant's reservations.

use reqwest::Method;
use reservoir_tests::{MIGRATOR, MODEL, Platform, error_code};
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "MIGRATOR")]
async fn tenants_and_models_are_managed_idempotently(pool: PgPool) {
    let p = Platform::start(pool).await;
    let admin = p.admin_token();
    let (status, tenant) =
        p.call(Method::POST, "/admin/tenants", &admin, Some(json!({"id": "euro-co", "currency": "EUR"}))).await;
    assert_eq!(status, 201, "{tenant}");
    assert_eq!(tenant["currency"], "EUR");
    let (status, _) =
        p.call(Method::POST, "/admin/tenants", &admin, Some(json!({"id": "euro-co", "currency": "EUR"}))).await;
    assert_eq!(status, 201, "the same tenant again is the first answer");
    let (status, body) =
        p.call(Method::POST, "/admin/tenants", &admin, Some(json!({"id": "euro-co", "currency": "USD"}))).await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, body) =
        p.call(Method::POST, "/admin/tenants", &admin, Some(json!({"id": "x", "currency": "euro"}))).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));

    let (status, model) = p
        .call(
            Method::POST,
            "/admin/models",
            &admin,
            Some(json!({"id": "llama-8b", "capacity": 2000, "headroom": "0.25"})),
        )
        .await;
    assert_eq!(status, 201, "{model}");
    assert_eq!((model["sellable"].as_u64(), model["prompt_weight"].as_str()), (Some(1500), Some("0.25")));
    let (status, body) =
        p.call(Method::POST, "/admin/models", &admin, Some(json!({"id": "llama-8b", "capacity": 10}))).await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, body) = p
        .call(Method::POST, "/admin/models", &admin, Some(json!({"id": "m2", "capacity": 10, "headroom": "1.5"})))
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));
    let (status, body) = p
        .call(Method::POST, "/admin/models", &admin, Some(json!({"id": "m2", "capacity": 10, "headroom": "lots"})))
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));
    let (_, models) = p.call(Method::GET, "/admin/models", &admin, None).await;
    let ids: Vec<_> = models["models"].as_array().expect("models").iter().map(|m| m["id"].clone()).collect();
    assert_eq!(ids, vec![json!("llama-8b"), json!(MODEL)]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn capacity_cannot_drop_below_what_is_sold(pool: PgPool) {
    let p = Platform::start(pool).await;
    let admin = p.admin_token();
    let token = p.tenant_token("acme");
    let (_, sold) = p
        .call(
            Method::POST,
            "/v1/reservations",
            &token,
            Some(json!({"model": MODEL, "rate": 600, "tier": "standard", "term": "month"})),
        )
        .await;
    let id = sold["id"].as_str().expect("id");
    // 600 sold; capacity 600 with 10% headroom sells only 540.
    let (status, refused) =
        p.call(Method::PATCH, &format!("/admin/models/{MODEL}"), &admin, Some(json!({"capacity": 600}))).await;
    assert_eq!((status, error_code(&refused)), (409, "conflict"), "{refused}");
    assert_eq!(refused["error"]["details"]["reservations"], json!([id]));
    assert!(refused["error"]["message"].as_str().unwrap_or("").contains(id));
    let (_, unchanged) = p.call(Method::GET, "/admin/models", &admin, None).await;
    assert_eq!(unchanged["models"][0]["capacity"], 1000, "nothing changed");

    let (status, lowered) =
        p.call(Method::PATCH, &format!("/admin/models/{MODEL}"), &admin, Some(json!({"capacity": 700}))).await;
    assert_eq!(status, 200, "{lowered}");
    assert_eq!(lowered["sellable"], 630);
    let (status, raised) =
        p.call(Method::PATCH, &format!("/admin/models/{MODEL}"), &admin, Some(json!({"headroom": "0"}))).await;
    assert_eq!((status, raised["sellable"].as_u64()), (200, Some(700)));
    let (status, body) = p.call(Method::PATCH, "/admin/models/no-such", &admin, Some(json!({"capacity": 1}))).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn each_catalog_edit_is_a_new_version_that_quotes(pool: PgPool) {
    let p = Platform::start(pool).await;
    let admin = p.admin_token();
    let token = p.tenant_token("acme");
    let (status, current) = p.call(Method::GET, "/v1/catalog", &token, None).await;
    assert_eq!((status, current["version"].as_i64()), (200, Some(1)));
    let builtin = serde_json::to_value(reservoir_pricing::Catalog::builtin_default()).expect("json");
    assert_eq!(current["catalog"], builtin, "the migration seeds the pricing crate's default catalog");

    let mut edited = current["catalog"].clone();
    edited["tier_multipliers"]["premium"] = json!("2.0");
    edited["version"] = json!(99);
    let (status, published) = p.call(Method::PUT, "/admin/catalog", &admin, Some(edited)).await;
    assert_eq!(status, 201, "{published}");
    assert_eq!((published["version"].as_i64(), published["created_by"].as_str()), (Some(2), Some("ops")));

    let body = json!({"model": MODEL, "rate": 100, "tier": "premium", "term": "hourly"});
    let (_, quote) = p.call(Method::POST, "/v1/reservations/quote", &token, Some(body)).await;
    assert_eq!((quote["catalog_version"].as_i64(), quote["price_per_hour"].as_str()), (Some(2), Some("2")));

    let mut broken = current["catalog"].clone();
    broken["term_discounts"]["month"] = json!("1.5");
    let (status, body) = p.call(Method::PUT, "/admin/catalog", &admin, Some(broken)).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"), "{body}");
    let (_, still) = p.call(Method::GET, "/admin/catalog", &admin, None).await;
    assert_eq!(still["version"], 2, "a refused edit publishes nothing");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn admins_list_every_tenants_reservations_with_filters(pool: PgPool) {
    let p = Platform::start(pool).await;
    let admin = p.admin_token();
    for tenant in ["a-co", "b-co"] {
        let body = json!({"model": MODEL, "rate": 10, "tier": "standard", "term": "hourly"});
        let (status, _) = p.call(Method::POST, "/v1/reservations", &p.tenant_token(tenant), Some(body)).await;
        assert_eq!(status, 201);
    }
    let (_, all) = p.call(Method::GET, "/admin/reservations", &admin, None).await;
    assert_eq!(all["reservations"].as_array().map(Vec::len), Some(2));
    let (_, only_b) = p.call(Method::GET, "/admin/reservations?tenant=b-co&status=active", &admin, None).await;
    assert_eq!(only_b["reservations"].as_array().map(Vec::len), Some(1));
    assert_eq!(only_b["reservations"][0]["tenant"], "b-co");
    let (_, none) = p.call(Method::GET, "/admin/reservations?active_at=2020-01-01T00:00:00Z", &admin, None).await;
    assert_eq!(none["reservations"], json!([]));
}
