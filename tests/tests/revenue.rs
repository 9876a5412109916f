//! The month's revenue so far, as the operators' overview shows it:
//! reservation fees accrued from the month's start to now, prorated as
//! invoices prorate them, plus the month's usage at its tiered prices, per
//! currency; kept for a few minutes, then computed again.

use chrono::{Duration, Utc};
use reservoir_domain::Period;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_tests::billing_support::{record, usage};
use reservoir_tests::portal_support::{page, session, sign_in};
use reservoir_tests::{MIGRATOR, MODEL, Platform};
use rust_decimal::Decimal;
use sqlx::PgPool;

#[sqlx::test(migrator = "MIGRATOR")]
async fn revenue_so_far_accrues_reservations_and_prices_usage(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let month = Period::containing(Utc::now()).expect("month");
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    contracts.ensure_tenant(pb::EnsureTenantRequest { id: "acme".into() }).await.expect("tenant");
    let next = month.next().expect("next month");
    let order = pb::QuoteRequest {
        tenant_id: "acme".into(),
        model: MODEL.into(),
        rate_tokens_per_s: 100,
        tier: pb::Tier::Standard.into(),
        term: pb::Term::Hourly.into(),
        starts_at: Some(reservoir_proto::time::timestamp(next.start())),
        ends_at: None,
    };
    let request = pb::CreateReservationRequest { order: Some(order), idempotency_key: "r1".into(), allow_burst: None };
    let contract = contracts.create_reservation(request).await.expect("reserve").into_inner();
    // Running since the month began (none can be made to start in the past).
    sqlx::query("UPDATE contracts.reservations SET starts_at = $2, created_at = $2 WHERE id = $1::uuid")
        .bind(&contract.id)
        .bind(month.start())
        .execute(&pool)
        .await
        .expect("start it at the month's start");
    // 3,000,000 spot tokens: 3 x 0.05 per million at the first volume tier.
    let mut metering = MeteringServiceClient::new(p.internal_channel(&p.metering).await);
    let at = month.start() + Duration::hours(1);
    let spot: Vec<pb::UsageRecord> =
        (0..3).map(|i| usage(&format!("s{i}"), "beta", "", pb::PriorityClass::Spot, 1_000_000, at)).collect();
    contracts.ensure_tenant(pb::EnsureTenantRequest { id: "beta".into() }).await.expect("tenant");
    record(&mut metering, spot).await;

    let now = month.start() + Duration::hours(10);
    let revenue = p.billing.revenue_at(now).await.expect("revenue");
    let price: Decimal = contract.price_per_hour.parse().expect("price");
    assert_eq!(revenue.period, month);
    assert_eq!(revenue.tenants, 2);
    assert_eq!(revenue.currencies.len(), 1);
    let usd = &revenue.currencies[0];
    assert_eq!(usd.reservations, (price * Decimal::from(10)).round_dp(2), "ten hours of the hourly price");
    assert_eq!(usd.usage, Decimal::new(15, 2), "3 million spot tokens at 0.05");

    // Kept while fresh, computed again after.
    let again = p.billing.revenue_at(now + Duration::minutes(2)).await.expect("kept");
    assert_eq!(again.computed_at, now);
    let later = p.billing.revenue_at(now + Duration::minutes(6)).await.expect("again");
    assert_eq!(later.computed_at, now + Duration::minutes(6));
    assert!(later.currencies[0].reservations > usd.reservations, "more hours accrued");

    // The overview shows the month so far (as of the wall clock).
    let cookie = session(&sign_in(&p, "/admin/sign-in", &p.admin_token(), false).await.2);
    let (status, _, overview) = page(&p, "/admin/ui", &cookie).await;
    assert_eq!(status, 200);
    assert!(overview.contains(&format!("Revenue of {month} so far")) && overview.contains(">USD<"), "{overview}");
}
