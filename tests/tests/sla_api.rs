//! The SLA over HTTP: the tenant's `/v1/sla`, `/v1/credits` and webhooks,
//! the admin's incidents, maintenance, period close and credit export, and
//! the public status page (HTML, JSON, Atom) with no tenant on it.

use chrono::{Duration, Utc};
use reqwest::Method;
use reservoir_domain::Period;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_tests::sla_support::{WINDOW, reserve, window_of};
use reservoir_tests::{MIGRATOR, MODEL, Platform};
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "MIGRATOR")]
async fn tenants_admins_and_the_public_see_the_same_measurements(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let month = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let start = month.start();
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let contract = reserve(&mut contracts, "secretive-tenant", pb::Tier::Enterprise, start).await;
    let mut metering = MeteringServiceClient::new(p.internal_channel(&p.metering).await);
    let outage = start + Duration::hours(2);
    for k in 0..3 {
        let batch = window_of("secretive-tenant", &contract.id, outage + Duration::seconds(WINDOW * k), 10);
        metering.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("recorded");
    }
    let closing = month.end() + Duration::minutes(90);
    p.sla.tick(start + Duration::hours(4)).await.expect("tick");
    p.sla.tick(closing).await.expect("tick closes the month after its grace");

    let tenant = p.tenant_token("secretive-tenant");
    let other = p.tenant_token("someone-else");
    let admin = p.admin_token();
    let period = month.to_string();

    // The tenant's SLA: three bad windows, one incident.
    let (status, body) = p.call(Method::GET, &format!("/v1/sla?period={period}"), &tenant, None).await;
    assert_eq!(status, 200, "{body}");
    let c = &body["contracts"][0];
    assert_eq!(c["contract_id"], contract.id.as_str());
    assert_eq!(c["tier"], "enterprise");
    assert_eq!(c["bad_windows"], 3);
    assert_eq!(c["closed"], true);
    assert_eq!(c["bad"][0]["reasons"], json!(["platform_errors", "ttft_missed", "throughput_short"]));
    assert_eq!(c["incidents"][0]["status"], "resolved");
    let (_, theirs) = p.call(Method::GET, &format!("/v1/sla?period={period}"), &other, None).await;
    assert_eq!(theirs["contracts"], json!([]), "another tenant sees nothing of it");
    let (status, error) = p.call(Method::GET, "/v1/sla", &tenant, None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("invalid_request")));
    let (status, _) = p.call(Method::GET, "/v1/sla?period=2026-13", &tenant, None).await;
    assert_eq!(status, 422);

    // Three bad windows of a month are below enterprise's 99.99%: 10%.
    let (status, credits) = p.call(Method::GET, "/v1/credits", &tenant, None).await;
    assert_eq!(status, 200);
    let credit = &credits["credits"][0];
    assert_eq!((credit["period"].as_str(), credit["share"].as_str()), (Some(period.as_str()), Some("0.1")));
    assert_eq!(credit["evidence"].as_array().map(Vec::len), Some(3));

    // Finance's export: RFC 4180 CSV with a header row, and JSON lines.
    let export = |format: &str| {
        p.http
            .get(p.url(&format!("/admin/exports/sla-credits?period={period}&format={format}")))
            .bearer_auth(&admin)
            .send()
    };
    let csv = export("csv").await.expect("sent");
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str().expect("type").starts_with("text/csv"));
    let csv = csv.text().await.expect("body");
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert!(lines[0].starts_with("credit_id,period,tenant_id,contract_id,model,tier,availability"));
    assert!(lines[1].contains(&format!(",{},", credit["amount"].as_str().expect("amount"))), "{csv}");
    assert_eq!(lines.len(), 3, "header, one credit, and the final CRLF");
    let jsonl = export("jsonl").await.expect("sent").text().await.expect("body");
    let parsed: Vec<serde_json::Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0]["amount"], credit["amount"]);
    let (status, _) =
        p.call(Method::GET, &format!("/admin/exports/sla-credits?period={period}&format=xls"), &admin, None).await;
    assert_eq!(status, 422, "an unknown format is refused");
    let (status, _) =
        p.call(Method::GET, &format!("/admin/exports/sla-credits?period={period}&format=csv"), &tenant, None).await;
    assert_eq!(status, 403);

    // Admins: the pool incident takes a public update and a postmortem.
    let (status, incidents) = p.call(Method::GET, "/admin/sla/incidents?scope=pool", &admin, None).await;
    assert_eq!(status, 200);
    let pool_incident = incidents["incidents"][0]["id"].as_str().expect("a pool incident").to_owned();
    let update = json!({"message": "Workers restarted; we are watching."});
    let (status, _) =
        p.call(Method::POST, &format!("/admin/sla/incidents/{pool_incident}/updates"), &admin, Some(update)).await;
    assert_eq!(status, 200);
    let postmortem = json!({"postmortem": "A bad deploy; rolled back."});
    let (status, body) = p
        .call(Method::PUT, &format!("/admin/sla/incidents/{pool_incident}/postmortem"), &admin, Some(postmortem))
        .await;
    assert_eq!((status, body["postmortem"].as_str()), (200, Some("A bad deploy; rolled back.")));
    let contract_incident = c["incidents"][0]["id"].as_str().expect("id");
    let (status, _) = p
        .call(
            Method::POST,
            &format!("/admin/sla/incidents/{contract_incident}/updates"),
            &admin,
            Some(json!({"message": "x"})),
        )
        .await;
    assert_eq!(status, 422, "a contract's incident is not public");
    let (status, _) = p.call(Method::GET, "/admin/sla/incidents", &tenant, None).await;
    assert_eq!(status, 403);

    // Maintenance is scheduled ahead, never backdated.
    let ahead = Utc::now() + Duration::days(1);
    let planned = json!({"model": MODEL, "from": ahead, "to": ahead + Duration::hours(1), "note": "Kernel upgrade"});
    let (status, created) = p.call(Method::POST, "/admin/maintenance", &admin, Some(planned)).await;
    assert_eq!(status, 201, "{created}");
    let backdated = json!({"model": MODEL, "from": Utc::now() - Duration::hours(2), "to": Utc::now(), "note": "oops"});
    let (status, _) = p.call(Method::POST, "/admin/maintenance", &admin, Some(backdated)).await;
    assert_eq!(status, 422);

    // The public page: no token, no tenant.
    let page = p.http.get(p.url("/status.json")).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    let page_text = page.text().await.expect("body");
    assert!(!page_text.contains("secretive-tenant") && !page_text.contains(&contract.id), "{page_text}");
    let page: serde_json::Value = serde_json::from_str(&page_text).expect("json");
    let model = page["models"].as_array().expect("models").iter().find(|m| m["model"] == MODEL).expect("model").clone();
    assert_eq!(model["daily"].as_array().map(Vec::len), Some(90));
    assert_eq!(model["maintenance"][0]["note"], "Kernel upgrade");
    assert_eq!(model["incidents"][0]["postmortem"], "A bad deploy; rolled back.");
    let html = p.http.get(p.url("/status")).send().await.expect("sent");
    assert!(html.headers()["content-type"].to_str().expect("type").starts_with("text/html"));
    let html = html.text().await.expect("body");
    assert!(html.contains("name=\"viewport\"") && html.contains(MODEL) && html.contains("Workers restarted"));
    assert!(!html.contains("secretive-tenant"));
    let feed = p.http.get(p.url("/status/feed.atom")).send().await.expect("sent").text().await.expect("body");
    assert!(feed.contains("<feed") && feed.contains(&format!("urn:reservoir:incident:{pool_incident}")), "{feed}");

    // Webhook endpoints: created with a secret shown once, listed without.
    let (status, hook) =
        p.call(Method::POST, "/v1/webhooks", &tenant, Some(json!({"url": "http://127.0.0.1:9/hook"}))).await;
    assert_eq!(status, 201, "{hook}");
    assert!(hook["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")));
    let (_, listed) = p.call(Method::GET, "/v1/webhooks", &tenant, None).await;
    assert_eq!(listed["endpoints"][0]["id"], hook["id"]);
    assert!(listed["endpoints"][0].get("secret").is_none());
    let (status, _) = p.call(Method::POST, "/v1/webhooks", &tenant, Some(json!({"url": "ftp://example.com"}))).await;
    assert_eq!(status, 422);
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().expect("id"));
    assert_eq!(p.call(Method::DELETE, &path, &other, None).await.0, 404, "not another tenant's");
    assert_eq!(p.call(Method::DELETE, &path, &tenant, None).await.0, 200);
    assert_eq!(p.call(Method::DELETE, &path, &tenant, None).await.0, 404);
}
