//! A tenant reads its own usage: REST -> gateway -> metering -> PostgreSQL.

use chrono::{Duration, Utc};
use reqwest::Method;
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_tests::{MIGRATOR, Platform, error_code};
use serde_json::json;
use sqlx::PgPool;

fn record(id: &str, tenant: &str, class: &str, days_ago: i64, weighted: &str) -> pb::UsageRecord {
    let start = Utc::now() - Duration::days(days_ago) - Duration::minutes(5);
    pb::UsageRecord {
        request_id: id.into(),
        tenant_id: tenant.into(),
        contract_id: if class == "spot" { String::new() } else { "0193a3c4-0000-7000-8000-000000000002".into() },
        model: "smollm2-135m-instruct".into(),
        class: match class {
            "reserved" => pb::PriorityClass::Reserved,
            _ => pb::PriorityClass::Spot,
        }
        .into(),
        outcome: pb::Outcome::Ok.into(),
        prompt_tokens: 10,
        cached_prompt_tokens: 0,
        completion_tokens: 5,
        weighted_tokens: weighted.into(),
        demand_weighted_tokens: weighted.into(),
        queue_ms: 1,
        ttft_ms: Some(20),
        total_ms: 100,
        worker_id: "w".into(),
        started_at: Some(timestamp(start)),
        finished_at: Some(timestamp(start + Duration::seconds(1))),
        catalog_version: 1,
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tenants_read_their_own_usage_by_class_and_by_day(pool: PgPool) {
    let p = Platform::start(pool).await;
    let records = vec![
        record("u1", "acme", "reserved", 0, "7.5"),
        record("u2", "acme", "reserved", 0, "2.25"),
        record("u3", "acme", "spot", 1, "1"),
        record("u4", "someone-else", "spot", 0, "1000"),
    ];
    MeteringServiceClient::new(p.internal_channel(&p.metering).await)
        .record_usage(pb::RecordUsageRequest { records })
        .await
        .expect("record");
    let token = p.tenant_token("acme");
    let from = (Utc::now() - Duration::days(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, by_class) = p.call(Method::GET, &format!("/v1/usage?from={from}&group_by=class"), &token, None).await;
    assert_eq!(status, 200, "{by_class}");
    let rows: Vec<_> = by_class["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["class"].clone(), r["requests"].clone(), r["weighted_tokens"].clone()))
        .collect();
    assert_eq!(rows, vec![(json!("reserved"), json!(2), json!("9.75")), (json!("spot"), json!(1), json!("1"))]);

    let (status, by_day) = p.call(Method::GET, &format!("/v1/usage?from={from}&group_by=day"), &token, None).await;
    assert_eq!(status, 200, "{by_day}");
    let days = by_day["rows"].as_array().expect("rows");
    assert_eq!(days.len(), 2, "{by_day}");
    assert_eq!(days[1]["weighted_tokens"], "9.75");
    assert!(days[0]["day"].as_str().is_some_and(|d| d.ends_with("T00:00:00Z")), "{by_day}");

    let (status, body) =
        p.call(Method::GET, "/v1/usage?from=2027-01-02T00:00:00Z&to=2027-01-01T00:00:00Z", &token, None).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));
    let (status, body) = p.call(Method::GET, "/v1/usage?group_by=week", &token, None).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));
    let (status, _) = p.call(Method::GET, "/v1/usage", &p.admin_token(), None).await;
    assert_eq!(status, 403);
}
