//! Billing over HTTP as an operator and a tenant use it: an SLA credit on
//! the invoice citing its record, holds and the grace period, signed
//! `invoice.finalized` and `credit_note.issued` webhooks, credit notes
//! bounded by what is left, voids, exports, and a tenant billed in yen.

use chrono::{Duration, Utc};
use reservoir_billing_service::run;
use reservoir_domain::Period;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_proto::v1::sla_service_client::SlaServiceClient;
use reservoir_tests::sla_support::{WINDOW, reserve, window_of};
use reservoir_tests::webhooks::{receiver, verify};
use reservoir_tests::{MIGRATOR, Platform};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgPool;

async fn call(p: &Platform, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = p.http.request(method, p.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn text(p: &Platform, path: &str, token: &str) -> (u16, String) {
    let response = p.http.get(p.url(path)).bearer_auth(token).send().await.expect("sent");
    (response.status().as_u16(), response.text().await.expect("text"))
}

/// Events of `kind` the receiver got, waiting up to 20 s for `count`.
async fn events(received: &reservoir_tests::webhooks::Received, secret: &str, kind: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got: Vec<Value> = received
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|(signature, id, body)| {
                let event: Value = serde_json::from_slice(body).ok()?;
                (event["type"] == kind).then(|| {
                    assert!(verify(secret, signature, body), "signed: {signature}");
                    assert_eq!(event["id"].as_str(), Some(id.as_str()));
                    event
                })
            })
            .collect();
        if got.len() >= count || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_operator_runs_holds_finalizes_credits_and_exports_a_month(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let admin = p.admin_token();
    let month = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let start = month.start();
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let contract = reserve(&mut contracts, "acme", pb::Tier::Premium, start).await;
    let mut sla = SlaServiceClient::new(p.internal_channel(&p.sla_url).await);
    let (url, received) = receiver().await;
    let hook = sla.create_webhook(pb::CreateWebhookRequest { tenant_id: "acme".into(), url }).await.expect("hook");
    let secret = hook.into_inner().secret;

    // An hour of bad windows: the SLA credits 10% of the month's fee.
    let mut metering = MeteringServiceClient::new(p.internal_channel(&p.metering).await);
    for k in 0..12 {
        let batch = window_of("acme", &contract.id, start + Duration::hours(1) + Duration::seconds(WINDOW * k), 5);
        metering.record_usage(pb::RecordUsageRequest { records: batch }).await.expect("recorded");
    }
    let closing = month.end() + Duration::minutes(90);
    p.sla.tick(closing).await.expect("sla tick");
    reservoir_sla_service::close::close_period(&p.sla, month, "test", closing).await.expect("sla closed");
    let credits = sla
        .list_credits(pb::ListCreditsRequest { tenant_id: "acme".into(), period: month.to_string() })
        .await
        .expect("credits")
        .into_inner()
        .credits;
    assert_eq!(credits.len(), 1);
    let credit = &credits[0];

    // A month that has not ended cannot be run.
    let (status, body) =
        call(&p, reqwest::Method::POST, &format!("/admin/billing/periods/{month}/run"), &admin, None).await;
    assert_eq!(status, 409, "{body}");
    let b = &p.billing;
    let now = month.end() + Duration::hours(2);
    run::run_period(&b.pool, &b.peers, month, "test", Duration::hours(24), now).await.expect("run");

    let (status, list) = call(&p, reqwest::Method::GET, "/admin/invoices?search=acm&status=draft", &admin, None).await;
    assert_eq!(status, 200, "{list}");
    let id = list["invoices"][0]["id"].as_str().expect("a draft").to_owned();
    let (_, invoice) = call(&p, reqwest::Method::GET, &format!("/admin/invoices/{id}"), &admin, None).await;
    let credit_line = invoice["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["kind"] == "sla_credit")
        .unwrap_or_else(|| panic!("an SLA credit line: {invoice}"))
        .clone();
    assert_eq!(credit_line["source"], format!("sla_credit:{}", credit.id), "the line cites the credit record");
    assert_eq!(credit_line["amount"].as_str(), Some(format!("-{}", credit.amount).as_str()));

    // Held, it survives its grace period as a draft; released, it finalizes.
    let (status, held) = call(
        &p,
        reqwest::Method::POST,
        &format!("/admin/invoices/{id}/hold"),
        &admin,
        Some(json!({"reason": "checking the outage"})),
    )
    .await;
    assert_eq!((status, held["held"].as_bool()), (200, Some(true)), "{held}");
    let after_grace = now + Duration::hours(25);
    b.tick(after_grace).await.expect("tick");
    let (_, still) = call(&p, reqwest::Method::GET, &format!("/admin/invoices/{id}"), &admin, None).await;
    assert_eq!(still["status"], "draft");
    let (status, _) = call(&p, reqwest::Method::POST, &format!("/admin/invoices/{id}/release"), &admin, None).await;
    assert_eq!(status, 200);
    b.tick(after_grace).await.expect("tick");
    let (_, done) = call(&p, reqwest::Method::GET, &format!("/admin/invoices/{id}"), &admin, None).await;
    assert_eq!(done["status"], "finalized", "{done}");
    let number = done["number"].as_str().expect("number").to_owned();
    let total: Decimal = done["total"].as_str().and_then(|t| t.parse().ok()).expect("total");
    let finalized = events(&received, &secret, "invoice.finalized", 1).await;
    assert_eq!(finalized.len(), 1, "one signed invoice.finalized");
    assert_eq!(finalized[0]["data"]["invoice"]["number"], number.as_str());

    // Credit notes: never more than what is left; a key answers once.
    let over = json!({"amount": (total + Decimal::new(1, 2)).to_string(), "reason": "too much"});
    let path = format!("/admin/invoices/{id}/credit-notes");
    let (status, body) = call(&p, reqwest::Method::POST, &path, &admin, Some(over)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("at most")), "{body}");
    let note = json!({"amount": "1.00", "reason": "goodwill", "idempotency_key": "n1"});
    let (status, first) = call(&p, reqwest::Method::POST, &path, &admin, Some(note.clone())).await;
    assert_eq!(status, 201, "{first}");
    let (_, again) = call(&p, reqwest::Method::POST, &path, &admin, Some(note)).await;
    assert_eq!(first["id"], again["id"], "the same key, the same note");
    let notes = events(&received, &secret, "credit_note.issued", 1).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["data"]["credit_note"]["amount"], "1.00");
    // An invoice with a credit note is corrected with notes, not voided.
    let (status, body) =
        call(&p, reqwest::Method::POST, &format!("/admin/invoices/{id}/void"), &admin, Some(json!({"reason": "x"})))
            .await;
    assert_eq!(status, 409, "{body}");

    // Exports: CSV with a header row and JSON lines.
    for (what, header) in [
        ("invoices", "invoice_id,number,tenant_id,period"),
        ("invoice-lines", "invoice_id,invoice_number,tenant_id,period"),
        ("credit-notes", "credit_note_id,invoice_id,invoice_number"),
        ("sla-credits", "credit_id,period,tenant_id"),
    ] {
        let (status, csv) = text(&p, &format!("/admin/exports/{what}?period={month}&format=csv"), &admin).await;
        assert_eq!(status, 200, "{what}: {csv}");
        assert!(csv.starts_with(header), "{what}: {csv}");
        assert!(csv.lines().count() >= 2, "{what} has rows: {csv}");
        let (status, jsonl) = text(&p, &format!("/admin/exports/{what}?period={month}&format=jsonl"), &admin).await;
        assert_eq!(status, 200);
        for line in jsonl.lines() {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"));
        }
    }
    let (_, csv) = text(&p, &format!("/admin/exports/invoices?period={month}&format=csv"), &admin).await;
    assert!(csv.contains(&number));

    // The tenant reads its invoice and balance; an admin URL refuses it.
    let tenant = p.tenant_token("acme");
    let (status, mine) = call(&p, reqwest::Method::GET, "/v1/invoices", &tenant, None).await;
    assert_eq!((status, mine["invoices"][0]["number"].as_str()), (200, Some(number.as_str())));
    let (status, balance) = call(&p, reqwest::Method::GET, "/v1/credit-balance", &tenant, None).await;
    assert_eq!((status, balance["balance"].as_str()), (200, Some("0.00")), "{balance}");
    let (status, _) = call(&p, reqwest::Method::GET, "/admin/invoices", &tenant, None).await;
    assert_eq!(status, 403);
    // A tenant with no finalized invoice yet holds zero, in its currency.
    let (_, none) = call(&p, reqwest::Method::GET, "/v1/credit-balance", &p.tenant_token("newcomer"), None).await;
    assert_eq!((none["balance"].as_str(), none["currency"].as_str()), (Some("0.00"), Some("USD")), "{none}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_tenant_billed_in_yen_gets_a_yen_invoice(pool: PgPool) {
    let p = Platform::start(pool.clone()).await;
    let admin = p.admin_token();
    // The catalog gains a yen price list: reservation 2 yen per token/s per
    // hour (one tier), on-demand 30 and spot 8 yen per million.
    let (_, catalog) = call(&p, reqwest::Method::GET, "/admin/catalog", &admin, None).await;
    let mut document = catalog["catalog"].clone();
    let one = |price: &str, mode: &str| json!({"mode": mode, "tiers": [{"unit_price": price}]});
    document["other_currencies"] = json!({"JPY": {reservoir_tests::MODEL: {
        "reservation": one("2", "graduated"),
        "on_demand_per_million": one("30", "graduated"),
        "spot_per_million": one("8", "volume"),
    }}});
    let (status, body) = call(&p, reqwest::Method::PUT, "/admin/catalog", &admin, Some(document)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        call(&p, reqwest::Method::POST, "/admin/tenants", &admin, Some(json!({"id": "yen-co", "currency": "JPY"})))
            .await;
    assert_eq!(status, 201, "{body}");

    let month = Period::containing(Utc::now()).expect("month").next().expect("next month");
    let mut contracts = ContractServiceClient::new(p.internal_channel(&p.contracts).await);
    let contract = reserve(&mut contracts, "yen-co", pb::Tier::Standard, month.start()).await;
    assert_eq!(contract.currency, "JPY");
    let b = &p.billing;
    let now = month.end() + Duration::hours(2);
    run::run_period(&b.pool, &b.peers, month, "test", Duration::hours(24), now).await.expect("run");
    let (_, list) = call(&p, reqwest::Method::GET, "/v1/invoices", &p.tenant_token("yen-co"), None).await;
    let invoice = &list["invoices"][0];
    assert_eq!(invoice["currency"], "JPY", "{list}");
    // 10 tokens/s x 2 yen x 0.80 (month discount) = 16 yen an hour, whole month.
    let hours = (month.end() - month.start()).num_hours();
    assert_eq!(invoice["total"].as_str(), Some((16 * hours).to_string().as_str()), "no minor unit: {invoice}");
}
