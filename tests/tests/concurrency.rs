//! The capacity ledger under concurrency: many buyers race for the last
//! slice of a pool; it fills exactly and is never oversold.

use futures_util::future::join_all;
use reqwest::Method;
use reservoir_tests::{MIGRATOR, MODEL, MODEL_SELLABLE, Platform, error_code};
use serde_json::json;
use sqlx::PgPool;

const RACERS: usize = 60;
const SLICE: u32 = 100;
const RATE: u32 = 5;

#[sqlx::test(migrator = "MIGRATOR")]
async fn racing_buyers_fill_the_last_slice_exactly(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    // Sell everything but the last slice, for the whole month ahead.
    let big = p.tenant_token("big-buyer");
    let month = json!({"model": MODEL, "rate": MODEL_SELLABLE - SLICE, "tier": "standard", "term": "month"});
    let (status, _) = p.call(Method::POST, "/v1/reservations", &big, Some(month)).await;
    assert_eq!(status, 201);

    // RACERS tenants ask for RATE each, at once: SLICE / RATE of them fit.
    let racers = (0..RACERS).map(|i| {
        let token = p.tenant_token(&format!("racer-{i}"));
        let p = &p;
        async move {
            p.call(
                Method::POST,
                "/v1/reservations",
                &token,
                Some(json!({"model": MODEL, "rate": RATE, "tier": "standard", "term": "hourly"})),
            )
            .await
        }
    });
    let answers = join_all(racers).await;

    let winners = answers.iter().filter(|(s, _)| *s == 201).count();
    let losers: Vec<_> = answers.iter().filter(|(s, _)| *s != 201).collect();
    assert_eq!(winners, (SLICE / RATE) as usize, "the slice is filled exactly");
    for (status, body) in &losers {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(error_code(body), "conflict");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("weighted tokens/s") && message.contains("free"), "{message}");
        assert!(
            body["error"]["details"]["available_tokens_per_s"].as_u64().is_some_and(|a| a < u64::from(RATE)),
            "{body}"
        );
    }

    // The database agrees: what is sold now is exactly what can be sold.
    let (sold,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(sum(rate_tokens_per_s), 0) FROM contracts.reservations \
         WHERE cancelled_at IS NULL AND starts_at <= now() AND (ends_at IS NULL OR ends_at > now())",
    )
    .fetch_one(&pool)
    .await
    .expect("sum");
    assert_eq!(sold, i64::from(MODEL_SELLABLE));
    let (status, capacity) = p.call(Method::GET, &format!("/v1/capacity?model={MODEL}"), &big, None).await;
    assert_eq!(status, 200);
    assert_eq!(capacity["steps"][0]["free"], 0, "{capacity}");
}
