//! The contracts service's gRPC edge: enums that say nothing (UNSPECIFIED, or
//! a number no build knows) are INVALID_ARGUMENT naming the field, and the
//! typed quote and catalog carry exact decimal strings.

use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_runtime::InternalChannel;
use reservoir_tests::{MIGRATOR, MODEL, Platform};
use sqlx::PgPool;
use tonic::Code;

fn order(tier: i32, term: i32) -> pb::QuoteRequest {
    pb::QuoteRequest {
        tenant_id: "acme".into(),
        model: MODEL.into(),
        rate_tokens_per_s: 150,
        tier,
        term,
        starts_at: Some(pb_time("2027-03-01T00:00:00Z")),
        ends_at: None,
    }
}

fn pb_time(rfc3339: &str) -> prost_types::Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("instant").to_utc();
    reservoir_proto::time::timestamp(t)
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, needle: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(needle), "{:?} should mention {needle:?}", status.message());
}

async fn client(p: &Platform) -> ContractServiceClient<InternalChannel> {
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    contracts.ensure_tenant(pb::EnsureTenantRequest { id: "acme".into() }).await.expect("tenant");
    contracts
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unspecified_tiers_terms_and_statuses_are_refused(pool: PgPool) {
    let p = Platform::start(pool).await;
    let mut contracts = client(&p).await;
    let (premium, month) = (pb::Tier::Premium.into(), pb::Term::Month.into());

    assert_invalid(contracts.quote(order(0, month)).await, "invalid tier: a value is required");
    assert_invalid(contracts.quote(order(premium, 0)).await, "invalid term: a value is required");
    assert_invalid(contracts.quote(order(7, month)).await, "standard, premium, enterprise");
    let reserve = |tier, term| pb::CreateReservationRequest {
        order: Some(order(tier, term)),
        idempotency_key: String::new(),
        allow_burst: None,
    };
    assert_invalid(contracts.create_reservation(reserve(premium, 0)).await, "term");

    // In a list filter UNSPECIFIED means any status; an unknown one is refused.
    let list = |status| pb::ListReservationsRequest { tenant_id: "acme".into(), status, ..Default::default() };
    contracts.create_reservation(reserve(premium, month)).await.expect("reserve");
    let all = contracts.list_reservations(list(0)).await.expect("any status").into_inner().reservations;
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].tier(), all[0].term()), (pb::Tier::Premium, pb::Term::Month));
    assert_eq!(all[0].status(), pb::ReservationStatus::Scheduled, "it starts in 2027");
    let active = contracts.list_reservations(list(pb::ReservationStatus::Active.into())).await.expect("active");
    assert!(active.into_inner().reservations.is_empty());
    assert_invalid(contracts.list_reservations(list(9)).await, "status");

    // Pages: newest first, each after the last id of the one before.
    for key in ["second", "third"] {
        let mut again = reserve(premium, month);
        again.idempotency_key = key.into();
        contracts.create_reservation(again).await.expect("reserve");
    }
    let page = |page_after: String| pb::ListReservationsRequest { limit: 2, page_after, ..list(0) };
    let first = contracts.list_reservations(page(String::new())).await.expect("page").into_inner().reservations;
    assert_eq!(first.len(), 2);
    let rest = contracts.list_reservations(page(first[1].id.clone())).await.expect("page").into_inner().reservations;
    assert_eq!(rest.len(), 1, "a short page is the last");
    let mut ids: Vec<String> = first.iter().chain(&rest).map(|r| r.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every reservation once");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_quote_is_typed_and_exact(pool: PgPool) {
    let p = Platform::start(pool).await;
    let mut contracts = client(&p).await;
    let reply = contracts.quote(order(pb::Tier::Premium.into(), pb::Term::Month.into())).await.expect("quote");
    let quote = reply.into_inner().quote.expect("a quote");
    // 100 x 0.0100 + 50 x 0.0090 = 1.45 per hour; x1.5 premium; x0.80 month.
    assert_eq!((quote.tier(), quote.term()), (pb::Tier::Premium, pb::Term::Month));
    assert_eq!(quote.base_price_per_hour, "1.45");
    assert_eq!((quote.tier_multiplier.as_str(), quote.term_discount.as_str()), ("1.5", "0.20"));
    assert_eq!(quote.rate_tiers[0].unit_price, "0.0100", "catalog numbers keep their text");
    assert_eq!(quote.price_per_hour_rounded, "1.74");
    assert_eq!(quote.total_for_term_rounded.as_deref(), Some("1294.56"));
    assert_eq!(quote.ends_at, Some(pb_time("2027-04-01T00:00:00Z")));
    let domain = reservoir_pricing::Quote::try_from(quote.clone()).expect("reads back");
    assert_eq!(pb::Quote::from(&domain), quote, "proto -> domain -> proto is the identity");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_typed_catalog_is_checked_at_the_edge(pool: PgPool) {
    let p = Platform::start(pool).await;
    let mut contracts = client(&p).await;
    let current = contracts.get_catalog(pb::GetCatalogRequest { version: 0 }).await.expect("catalog").into_inner();
    let document = current.document.expect("a document");
    assert_eq!(document.version, current.version);
    let publish = |document| pb::PublishCatalogRequest { document, published_by: "ops".into() };

    assert_invalid(contracts.publish_catalog(publish(None)).await, "document is required");
    let mut no_mode = document.clone();
    if let Some(t) = no_mode.models[0].spot_per_million.as_mut() {
        t.mode = pb::TierMode::Unspecified.into();
    }
    assert_invalid(contracts.publish_catalog(publish(Some(no_mode))).await, "spot_per_million.mode is required");
    let mut twice = document.clone();
    twice.term_discounts.push(twice.term_discounts[0].clone());
    assert_invalid(contracts.publish_catalog(publish(Some(twice))).await, "term_discounts lists hourly twice");
    let mut no_tier = document.clone();
    no_tier.tier_multipliers[0].tier = pb::Tier::Unspecified.into();
    assert_invalid(contracts.publish_catalog(publish(Some(no_tier))).await, "tier_multipliers.tier");
    // The pricing rules still hold behind the shape checks.
    let mut above_one = document.clone();
    above_one.term_discounts[1].discount = "1.5".into();
    assert_invalid(contracts.publish_catalog(publish(Some(above_one))).await, "term_discounts");

    // What is published comes back as sent, with the next version.
    let published = contracts.publish_catalog(publish(Some(document.clone()))).await.expect("published");
    let published = published.into_inner();
    assert_eq!(published.version, current.version + 1);
    let back = published.document.expect("a document");
    assert_eq!(pb::CatalogDocument { version: document.version, ..back }, document);
}
