//! The SLA job end to end over the real services: usage records go into
//! metering, contracts into the contracts service; the job (with the test's
//! clock) classifies windows, opens and resolves incidents, delivers signed
//! webhooks and, when the month closes, credits exactly once.
//!
//! The contracts start at the beginning of next month, so the month is
//! whole whatever day the test runs.

use chrono::{Duration, Utc};
use reservoir_domain::{Period, round_half_even};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_proto::v1::sla_service_client::SlaServiceClient;
use reservoir_tests::sla_support::{WINDOW, reserve, window_of};
use reservoir_tests::webhooks::{receiver, verify};
use reservoir_tests::{MIGRATOR, Platform};
use rust_decimal::Decimal;
use sqlx::PgPool;

async fn table(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT w::text FROM sla.windows w ORDER BY contract_id, window_start")
        .fetch_all(pool)
        .await
        .expect("rows")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_windows_make_an_incident_a_signed_webhook_and_exactly_one_credit(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let month = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let start = month.start();
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let breached = reserve(&mut contracts, "breached", pb::Tier::Premium, start).await;
    let healthy = reserve(&mut contracts, "healthy", pb::Tier::Standard, start).await;

    let mut sla = SlaServiceClient::new(p.internal_channel(&p.sla_url).await);
    let (url, received) = receiver().await;
    let hook = sla
        .create_webhook(pb::CreateWebhookRequest { tenant_id: "breached".into(), url })
        .await
        .expect("hook")
        .into_inner();
    assert!(hook.secret.starts_with("whsec_"));

    // An hour in: one hour of windows with half the requests failed (bad),
    // the healthy contract served in full at the same time.
    let mut metering = MeteringServiceClient::new(p.internal_channel(&p.metering).await);
    let outage = start + Duration::hours(1);
    for k in 0..12 {
        let w = outage + Duration::seconds(WINDOW * k);
        let mut batch = window_of("breached", &breached.id, w, 5);
        batch.extend(window_of("healthy", &healthy.id, w, 0));
        metering.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("recorded");
    }
    // Good traffic before and after.
    for w in [outage - Duration::seconds(WINDOW), outage + Duration::seconds(WINDOW * 12)] {
        let batch = window_of("breached", &breached.id, w, 0);
        metering.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("recorded");
    }

    let now = start + Duration::hours(3);
    p.sla.tick(now).await.expect("tick");
    let rows = table(&pool).await;
    // Run again at the same time: the same rows, no second incident.
    p.sla.tick(now).await.expect("tick again");
    assert_eq!(table(&pool).await, rows, "recomputing writes the same rows");

    let answer = sla
        .get_contract_sla(pb::GetContractSlaRequest { tenant_id: "breached".into(), period: month.to_string() })
        .await
        .expect("sla")
        .into_inner();
    assert_eq!(answer.contracts.len(), 1, "a tenant sees its own contracts only");
    let c = &answer.contracts[0];
    assert_eq!(c.bad.len(), 12);
    assert!(
        c.bad.iter().all(|w| w.reasons.contains(&(pb::BadReason::PlatformErrors as i32)) && w.platform_errors == 5)
    );
    assert_eq!(c.incidents.len(), 1, "consecutive bad windows are one incident");
    let incident = &c.incidents[0];
    assert_eq!(incident.status(), pb::IncidentStatus::Resolved);
    assert_eq!(incident.started_at, Some(timestamp(outage)));
    assert_eq!(incident.resolved_at, Some(timestamp(outage + Duration::seconds(WINDOW * 12))));
    let kinds: Vec<_> = incident.timeline.iter().map(|u| u.kind()).collect();
    assert_eq!(kinds, vec![pb::UpdateKind::Opened, pb::UpdateKind::Resolved]);

    // One contract of the model's two was bad: a pool incident too (half).
    let pools = sla
        .list_incidents(pb::ListIncidentsRequest { scope: pb::IncidentScope::Pool.into(), ..Default::default() })
        .await
        .expect("pool incidents")
        .into_inner()
        .incidents;
    assert_eq!(pools.len(), 1);
    assert!(pools[0].tenant_id.is_empty() && pools[0].contract_id.is_empty(), "no tenant on a pool incident");

    // The webhooks arrive, signed with the endpoint's secret.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while received.lock().expect("lock").len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let deliveries = received.lock().expect("lock").clone();
    let types: Vec<String> = deliveries
        .iter()
        .map(|(signature, id, body)| {
            assert!(verify(&hook.secret, signature, body), "signature {signature}");
            let event: serde_json::Value = serde_json::from_slice(body).expect("json");
            assert_eq!(event["id"].as_str(), Some(id.as_str()));
            assert_eq!(event["data"]["incident"]["contract_id"].as_str(), Some(breached.id.as_str()));
            event["type"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(types, vec!["incident.opened", "incident.resolved"]);

    // A record that arrives late makes one window of the healthy contract
    // bad: it is measured at the next run, with an incident of its own.
    let late_window = start + Duration::minutes(30);
    let batch = window_of("healthy", &healthy.id, late_window, 10);
    metering.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("recorded");
    let closing = month.end() + Duration::minutes(30);
    p.sla.tick(closing).await.expect("tick after the month");
    let healthy_incidents = sla
        .list_incidents(pb::ListIncidentsRequest { tenant_id: "healthy".into(), ..Default::default() })
        .await
        .expect("incidents")
        .into_inner()
        .incidents;
    assert_eq!(healthy_incidents.len(), 1, "the late bad window is on record");
    assert_eq!(healthy_incidents[0].started_at, Some(timestamp(late_window)));

    // Within the grace the month is not closed; two closers race.
    let credits = |tenant: &str| pb::ListCreditsRequest { tenant_id: tenant.into(), period: month.to_string() };
    assert!(sla.list_credits(credits("breached")).await.expect("credits").into_inner().credits.is_empty());
    let (a, b) = tokio::join!(
        reservoir_sla_service::close::close_period(&p.sla, month, "closer-a", closing),
        reservoir_sla_service::close::close_period(&p.sla, month, "closer-b", closing),
    );
    let (a, b) = (a.expect("closed"), b.expect("closed"));
    assert_eq!(a.credits_issued_now + b.credits_issued_now, 1, "one credit however many close");
    let again =
        reservoir_sla_service::close::close_period(&p.sla, month, "admin", closing).await.expect("closed again");
    assert_eq!((again.credits_issued_now, again.credits_total), (0, 1));
    // Over gRPC (the wall clock's now): a month that has not ended is refused.
    let early = sla
        .close_period(pb::ClosePeriodRequest { period: month.to_string(), closed_by: "admin".into() })
        .await
        .expect_err("not ended");
    assert_eq!(early.code(), tonic::Code::FailedPrecondition);

    let issued = sla.list_credits(credits("breached")).await.expect("credits").into_inner().credits;
    assert_eq!(issued.len(), 1);
    let credit = &issued[0];
    // The month has days x 288 windows; 12 bad is above 99.0% and below
    // premium's 99.95%: 10% of the fee, which is the whole month's price.
    let windows = (month.end() - month.start()).num_seconds() / WINDOW;
    assert_eq!(credit.evidence.len(), 12);
    assert_eq!(credit.share, "0.1");
    let availability: Decimal = credit.availability.parse().expect("decimal");
    let exact = Decimal::from(windows - 12) / Decimal::from(windows);
    assert!((availability - exact).abs() < Decimal::new(1, 6), "{availability} vs {exact}");
    let total: Decimal = breached.total_for_term.as_deref().expect("total").parse().expect("decimal");
    assert_eq!(credit.fee.parse::<Decimal>().expect("fee"), total);
    let expected = round_half_even(total * Decimal::new(1, 1), 2);
    assert_eq!(credit.amount.parse::<Decimal>().expect("amount"), expected, "to the cent");
    assert_eq!(credit.amount.split('.').nth(1).map(str::len), Some(2), "written to the cent");
    assert!(sla.list_credits(credits("healthy")).await.expect("credits").into_inner().credits.is_empty());

    // The credit reached the tenant's endpoint too.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while received.lock().expect("lock").len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let last = received.lock().expect("lock").last().cloned().expect("a delivery");
    let event: serde_json::Value = serde_json::from_slice(&last.2).expect("json");
    assert_eq!(event["type"], "credit.issued");
    assert_eq!(event["data"]["credit"]["amount"].as_str(), Some(credit.amount.as_str()));
}
