//! Operator pages that change capacity and SLA records, over real HTTP: a
//! capacity change is confirmed first and refused, naming the contracts in
//! the way, when it would leave sold capacity uncovered; maintenance is
//! scheduled and cancelled; closing a month is confirmed first.

use chrono::{Duration, Utc};
use reservoir_domain::Period;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_tests::portal_support::{csrf, page, post, session, sign_in};
use reservoir_tests::sla_support::reserve;
use reservoir_tests::{MIGRATOR, MODEL, Platform};
use sqlx::PgPool;

async fn admin(p: &Platform) -> String {
    session(&sign_in(p, "/admin/sign-in", &p.admin_token(), false).await.2)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn capacity_changes_are_confirmed_and_never_uncover_sold_capacity(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let next = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let sold = reserve(&mut contracts, "acme", pb::Tier::Premium, next.start()).await;
    let cookie = admin(&p).await;

    let (status, _, body) = page(&p, "/admin/ui/capacity", &cookie).await;
    assert_eq!(status, 200);
    assert!(body.contains(MODEL) && body.contains("last 30 days"), "{body}");
    assert_eq!(page(&p, &format!("/admin/ui/capacity/confirm?model={MODEL}"), &cookie).await.0, 422, "no change");
    let (status, _, ask) = page(&p, &format!("/admin/ui/capacity/confirm?model={MODEL}&capacity=10"), &cookie).await;
    assert_eq!(status, 200);
    assert!(ask.contains("Change smollm2-135m-instruct?") && ask.contains(">1000<") && ask.contains(">10<"), "{ask}");
    let token = csrf(&ask);

    // 10 tokens/s less 10% headroom is 9 on sale: less than the 10 sold.
    let form = [("csrf", token.as_str()), ("model", MODEL), ("capacity", "10"), ("headroom", "")];
    let (status, _, refused) = post(&p, "/admin/ui/capacity", &cookie, &form).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused.contains(&sold.id), "the refusal names the contract in the way: {refused}");
    let form = [("csrf", token.as_str()), ("model", MODEL), ("capacity", "2000"), ("headroom", "0.2")];
    let (status, location, _) = post(&p, "/admin/ui/capacity", &cookie, &form).await;
    assert_eq!(status, 303);
    assert!(page(&p, &location, &cookie).await.2.contains("capacity 2000 tokens/s, headroom 0.2, 1600 on sale"));
    let forged = [("csrf", "x"), ("model", MODEL), ("capacity", "3000"), ("headroom", "")];
    assert_eq!(post(&p, "/admin/ui/capacity", &cookie, &forged).await.0, 403);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn maintenance_is_scheduled_and_cancelled_and_closing_a_month_asks_first(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let cookie = admin(&p).await;
    let (status, _, body) = page(&p, "/admin/ui/sla", &cookie).await;
    assert_eq!(status, 200);
    assert!(body.contains("No incidents.") && body.contains("None scheduled."), "{body}");
    let token = csrf(&body);
    let period = Period::containing(Utc::now()).expect("month").to_string();

    let from = (Utc::now() + Duration::days(2)).format("%Y-%m-%dT%H:%M").to_string();
    let to = (Utc::now() + Duration::days(2) + Duration::hours(2)).format("%Y-%m-%dT%H:%M").to_string();
    let form = [
        ("csrf", token.as_str()),
        ("model", MODEL),
        ("from", from.as_str()),
        ("to", to.as_str()),
        ("note", "driver upgrade"),
        ("period", period.as_str()),
    ];
    let (status, location, _) = post(&p, "/admin/ui/sla/maintenance", &cookie, &form).await;
    assert_eq!(status, 303);
    let (_, _, listed) = page(&p, &location, &cookie).await;
    assert!(listed.contains("Maintenance of smollm2-135m-instruct scheduled") && listed.contains("driver upgrade"));
    let bad = [
        ("csrf", token.as_str()),
        ("model", MODEL),
        ("from", "soon"),
        ("to", to.as_str()),
        ("period", period.as_str()),
    ];
    assert_eq!(post(&p, "/admin/ui/sla/maintenance", &cookie, &bad).await.0, 422);

    let id: String =
        sqlx::query_scalar("SELECT id::text FROM sla.maintenance").fetch_one(&pool).await.expect("scheduled");
    let cancel = format!("/admin/ui/sla/maintenance/{id}/cancel");
    let (status, location, _) =
        post(&p, &cancel, &cookie, &[("csrf", token.as_str()), ("period", period.as_str())]).await;
    assert_eq!(status, 303);
    assert!(page(&p, &location, &cookie).await.2.contains("cancelled"));

    // Closing a month asks first; a month not over yet is refused with the service's reason.
    let (_, _, ask) = page(&p, &format!("/admin/ui/sla/close?period={period}"), &cookie).await;
    assert!(ask.contains(&format!("Close {period}?")), "{ask}");
    let (status, _, refused) =
        post(&p, "/admin/ui/sla/close", &cookie, &[("csrf", token.as_str()), ("period", period.as_str())]).await;
    assert!((400..500).contains(&status), "{status}: {refused}");
    // Last month, once the SLA job has measured up to now, closes.
    p.sla.tick(Utc::now()).await.expect("the SLA job measures");
    let last = Period::containing(Utc::now()).expect("month").previous().expect("last").to_string();
    let (status, location, _) =
        post(&p, "/admin/ui/sla/close", &cookie, &[("csrf", token.as_str()), ("period", last.as_str())]).await;
    assert_eq!(status, 303);
    assert!(page(&p, &location, &cookie).await.2.contains(&format!("{last} closed: 0 contracts")));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_catalog_edit_is_reviewed_then_published_as_a_new_version(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let cookie = admin(&p).await;
    let (status, _, shown) = page(&p, "/admin/ui/catalog", &cookie).await;
    assert_eq!(status, 200);
    assert!(shown.contains("Version 1,") && shown.contains("0.0100") && shown.contains("and above"), "{shown}");
    assert!(shown.contains("What a weighted token is") && shown.contains(&format!("<td>{MODEL}</td>")), "{shown}");
    let token = csrf(&shown);

    // The edit starts from the document the JSON API gives.
    let current: serde_json::Value = p
        .http
        .get(p.url("/admin/catalog"))
        .bearer_auth(p.admin_token())
        .send()
        .await
        .expect("catalog")
        .json()
        .await
        .expect("json");
    let mut edited = current["catalog"].clone();
    edited["models"][MODEL]["reservation"]["tiers"][0]["unit_price"] = serde_json::json!("0.0125");
    let document = edited.to_string();

    let (status, _, refused) =
        post(&p, "/admin/ui/catalog/review", &cookie, &[("csrf", token.as_str()), ("document", "{\"currency\": 5}")])
            .await;
    assert_eq!(status, 422);
    assert!(refused.contains("Not a catalog"), "{refused}");
    let (status, _, review) =
        post(&p, "/admin/ui/catalog/review", &cookie, &[("csrf", token.as_str()), ("document", document.as_str())])
            .await;
    assert_eq!(status, 200, "{review}");
    assert!(review.contains("Publish as version 2?") && review.contains("0.0125"), "{review}");
    let versions = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM contracts.catalog_versions").fetch_one(&pool);
    assert_eq!(versions().await.expect("n"), 1, "reviewing publishes nothing");

    let (status, location, _) =
        post(&p, "/admin/ui/catalog", &cookie, &[("csrf", token.as_str()), ("document", document.as_str())]).await;
    assert_eq!(status, 303);
    assert!(page(&p, &location, &cookie).await.2.contains("Published catalog version 2"));
    assert_eq!(versions().await.expect("n"), 2, "version 1 stays as it was");
    let forged = [("csrf", "x"), ("document", document.as_str())];
    assert_eq!(post(&p, "/admin/ui/catalog", &cookie, &forged).await.0, 403);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_tenant_orders_for_itself_whatever_the_form_says(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let cookie = session(&sign_in(&p, "/console/sign-in", &p.tenant_token("acme"), false).await.2);
    let query = "tenant=mallory&model=smollm2-135m-instruct&rate=5&tier=standard&term=hourly";
    let (status, _, quote) = page(&p, &format!("/console/contracts/quote?{query}"), &cookie).await;
    assert_eq!(status, 200, "{quote}");
    assert!(quote.contains("Quote for acme") && !quote.contains("mallory"), "{quote}");
    let form = [
        ("csrf", csrf(&quote)),
        ("idempotency_key", "k1".to_owned()),
        ("tenant", "mallory".to_owned()),
        ("model", MODEL.to_owned()),
        ("rate", "5".to_owned()),
        ("tier", "standard".to_owned()),
        ("term", "hourly".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location, _) = post(&p, "/console/contracts", &cookie, &form).await;
    assert_eq!((status, location.as_str()), (303, "/console"));
    let owners: Vec<String> =
        sqlx::query_scalar("SELECT tenant_id FROM contracts.reservations").fetch_all(&pool).await.expect("owners");
    assert_eq!(owners, ["acme"]);
    assert_eq!(page(&p, "/admin/ui/contracts/new", &cookie).await.0, 403, "the operator's form is not the tenant's");
}
