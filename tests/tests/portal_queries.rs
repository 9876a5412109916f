//! What the portal's tables and charts ask the services for: tenants found
//! by part of their id, one page at a time with the total; reservations
//! sorted by a column in either direction, paged by offset, counted; the
//! reservations holding capacity now per model and tier; and a model's usage
//! over time in buckets.

use chrono::{Duration, DurationRound, Utc};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_tests::billing_support::{record, usage};
use reservoir_tests::{MIGRATOR, MODEL, Platform};
use sqlx::PgPool;
use tonic::Code;

/// A reserved request's contract (metering takes the id as given).
const CONTRACT: &str = "6f1c2a3b-0000-4000-8000-000000000001";

fn order(tenant: &str, rate: u32, tier: pb::Tier, starts_in: Duration) -> pb::CreateReservationRequest {
    pb::CreateReservationRequest {
        order: Some(pb::QuoteRequest {
            tenant_id: tenant.into(),
            model: MODEL.into(),
            rate_tokens_per_s: rate,
            tier: tier.into(),
            term: pb::Term::Hourly.into(),
            starts_at: Some(timestamp(Utc::now() + starts_in)),
            ends_at: None,
        }),
        idempotency_key: format!("{tenant}-{rate}"),
        allow_burst: None,
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tenants_are_searched_and_paged_with_their_total(pool: PgPool) {
    let p = Platform::start(pool).await;
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    for id in ["acme", "acme-labs", "beta", "Acme_Eu", "zeta"] {
        contracts.ensure_tenant(pb::EnsureTenantRequest { id: id.into() }).await.expect("tenant");
    }
    let list = |search: &str, limit: u32, offset: u32| pb::ListTenantsRequest { search: search.into(), limit, offset };
    let found = contracts.list_tenants(list("acme", 0, 0)).await.expect("search").into_inner();
    let ids: Vec<&str> = found.tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["Acme_Eu", "acme", "acme-labs"], "any case, in id order");
    assert_eq!(found.total, 3);
    let page = contracts.list_tenants(list("", 2, 2)).await.expect("page").into_inner();
    assert_eq!((page.tenants.len(), page.total), (2, 5));
    assert_eq!(page.tenants[0].id, "acme-labs", "the third in id order");
    // LIKE's wildcards are matched as themselves.
    let wild = contracts.list_tenants(list("_", 0, 0)).await.expect("underscore").into_inner();
    assert_eq!(wild.tenants.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["Acme_Eu"]);
    assert_eq!(contracts.list_tenants(list("%", 0, 0)).await.expect("percent").into_inner().total, 0);

    let acme = contracts.get_tenant(pb::GetTenantRequest { id: "acme".into() }).await.expect("get").into_inner();
    assert_eq!(acme.id, "acme");
    let missing = contracts.get_tenant(pb::GetTenantRequest { id: "nobody".into() }).await.expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound);
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM contracts.tenants").fetch_one(&p.pool).await.expect("n");
    assert_eq!(created, 5, "reading a tenant creates none");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn reservations_sort_by_any_column_page_by_offset_and_count(pool: PgPool) {
    let p = Platform::start(pool).await;
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    for (tenant, rate, tier, starts_in) in [
        ("carol", 30, pb::Tier::Standard, Duration::hours(3)),
        ("alice", 10, pb::Tier::Premium, Duration::hours(1)),
        ("bob", 20, pb::Tier::Standard, Duration::hours(2)),
        ("alice", 40, pb::Tier::Enterprise, Duration::seconds(-1)),
    ] {
        contracts.ensure_tenant(pb::EnsureTenantRequest { id: tenant.into() }).await.expect("tenant");
        let starts_in = if starts_in < Duration::zero() { Duration::zero() } else { starts_in };
        contracts.create_reservation(order(tenant, rate, tier, starts_in)).await.expect("reserve");
    }
    let list = |sort: pb::ReservationSort, ascending: bool, offset: u32| pb::ListReservationsRequest {
        sort: sort.into(),
        ascending,
        offset,
        limit: 2,
        with_total: true,
        ..Default::default()
    };
    let rates = |reply: pb::ListReservationsResponse| -> (Vec<u32>, Option<u64>) {
        (reply.reservations.iter().map(|r| r.rate_tokens_per_s).collect(), reply.total)
    };
    let by_rate = contracts.list_reservations(list(pb::ReservationSort::Rate, false, 0)).await.expect("rate");
    assert_eq!(rates(by_rate.into_inner()), (vec![40, 30], Some(4)));
    let second = contracts.list_reservations(list(pb::ReservationSort::Rate, false, 2)).await.expect("page 2");
    assert_eq!(rates(second.into_inner()), (vec![20, 10], Some(4)));
    let ascending = contracts.list_reservations(list(pb::ReservationSort::Rate, true, 0)).await.expect("ascending");
    assert_eq!(rates(ascending.into_inner()).0, vec![10, 20]);
    let by_tenant = contracts.list_reservations(list(pb::ReservationSort::Tenant, true, 0)).await.expect("tenant");
    let tenants: Vec<String> = by_tenant.into_inner().reservations.into_iter().map(|r| r.tenant_id).collect();
    assert_eq!(tenants, ["alice", "alice"]);
    let by_start = contracts.list_reservations(list(pb::ReservationSort::StartsAt, false, 0)).await.expect("start");
    assert_eq!(rates(by_start.into_inner()).0, vec![30, 20], "latest start first");

    // Filters count too; without with_total there is no count.
    let alice = pb::ListReservationsRequest { tenant_id: "alice".into(), with_total: true, ..Default::default() };
    assert_eq!(contracts.list_reservations(alice).await.expect("alice").into_inner().total, Some(2));
    let plain = pb::ListReservationsRequest::default();
    assert_eq!(contracts.list_reservations(plain).await.expect("plain").into_inner().total, None);

    // Keyset paging belongs to the default order only; an unknown order is refused.
    let first = contracts.list_reservations(list(pb::ReservationSort::Unspecified, false, 0)).await.expect("first");
    let last_id = first.into_inner().reservations[1].id.clone();
    let mixed = pb::ListReservationsRequest { page_after: last_id, ..list(pb::ReservationSort::Rate, false, 0) };
    assert_eq!(contracts.list_reservations(mixed).await.expect_err("mixed").code(), Code::InvalidArgument);
    let unknown = pb::ListReservationsRequest { sort: 99, ..Default::default() };
    let refused = contracts.list_reservations(unknown).await.expect_err("unknown sort");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("sort"), "{}", refused.message());

    // What holds capacity now: alice's enterprise contract alone has started.
    let summary = contracts
        .summarize_reservations(pb::SummarizeReservationsRequest { active_at: None })
        .await
        .expect("summary")
        .into_inner();
    assert_eq!(summary.rows.len(), 1, "{summary:?}");
    let row = &summary.rows[0];
    assert_eq!(
        (row.model.as_str(), row.tier(), row.contracts, row.rate_tokens_per_s),
        (MODEL, pb::Tier::Enterprise, 1, 40)
    );
    let later = pb::SummarizeReservationsRequest { active_at: Some(timestamp(Utc::now() + Duration::hours(4))) };
    let later = contracts.summarize_reservations(later).await.expect("later").into_inner();
    let total: u64 = later.rows.iter().map(|r| r.rate_tokens_per_s).sum();
    assert_eq!(total, 100, "every contract has started four hours from now");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_models_usage_comes_in_buckets_over_time(pool: PgPool) {
    let p = Platform::start(pool).await;
    let mut metering = MeteringServiceClient::new(p.internal_channel(&p.metering).await);
    let hour = Utc::now().duration_trunc(Duration::hours(1)).expect("hour") - Duration::hours(3);
    record(
        &mut metering,
        vec![
            usage("r1", "acme", "", pb::PriorityClass::Spot, 100, hour + Duration::minutes(5)),
            usage("r2", "beta", "", pb::PriorityClass::Spot, 50, hour + Duration::minutes(50)),
            usage("r3", "acme", CONTRACT, pb::PriorityClass::Reserved, 7, hour + Duration::minutes(65)),
        ],
    )
    .await;
    let series = |bucket_s: u32| pb::UsageSeriesRequest {
        model: MODEL.into(),
        from: Some(timestamp(hour)),
        to: Some(timestamp(hour + Duration::hours(3))),
        bucket_s,
    };
    let buckets = metering.usage_series(series(3600)).await.expect("series").into_inner().buckets;
    let seen: Vec<(i64, u64, &str, &str)> = buckets
        .iter()
        .map(|b| {
            let hours = (b.start.as_ref().map_or(0, |s| s.seconds) - hour.timestamp()) / 3600;
            (hours, b.requests, b.weighted_tokens.as_str(), b.reserved_weighted_tokens.as_str())
        })
        .collect();
    assert_eq!(seen, [(0, 2, "150", "0"), (1, 1, "7", "7")], "every tenant together, empty hours left out");
    // The same record again counts once.
    let again = usage("r1", "acme", "", pb::PriorityClass::Spot, 100, hour + Duration::minutes(5));
    let answer = metering.record_usage(pb::RecordUsageRequest { records: vec![again] }).await.expect("again");
    assert_eq!(answer.into_inner().results[0].status(), pb::RecordStatus::Duplicate);
    let buckets = metering.usage_series(series(3600)).await.expect("series").into_inner().buckets;
    assert_eq!(buckets[0].weighted_tokens, "150", "a duplicate adds nothing");
    let daily = metering.usage_series(series(86_400)).await.expect("daily").into_inner().buckets;
    let total: u64 = daily.iter().map(|b| b.requests).sum();
    assert_eq!(total, 3, "a day's buckets add up the same records");
    for bad in [59, 1_800, 86_401] {
        assert_eq!(metering.usage_series(series(bad)).await.expect_err("bucket").code(), Code::InvalidArgument);
    }
    let too_many = pb::UsageSeriesRequest { from: Some(timestamp(hour - Duration::days(100))), ..series(3600) };
    assert_eq!(metering.usage_series(too_many).await.expect_err("buckets").code(), Code::InvalidArgument);
}
