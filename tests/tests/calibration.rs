//! Calibration measures a model's capacity, prefill rate and token weights
//! on this pool and records them with the model: the tenant's catalog and
//! `/v1/models` show them, and usage is weighted by them (admission and
//! metering read the same row).

use reservoir_engine::test_support::{TinySpec, letter_tokenizer, tiny_model};
use reservoir_platform::calibrate::Calibration;
use reservoir_tests::{MIGRATOR, MODEL, Options, Platform};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgPool;

fn decimal(v: &Value) -> Decimal {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a decimal string: {v}"))
}

/// `entry` shows the measured weights and prefill rate.
fn shows(entry: &Value, measured: &Calibration) {
    assert_eq!(decimal(&entry["prompt_weight"]), measured.prompt_weight, "{entry}");
    assert_eq!(decimal(&entry["completion_weight"]), Decimal::ONE, "{entry}");
    assert_eq!(entry["prefill_tokens_per_s"], json!(measured.prefill_tokens_per_s), "{entry}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn calibration_records_measured_weights_that_the_apis_show_and_usage_uses(pool: PgPool) {
    let p = Platform::start_with(pool, Options { workers: 1, ..Options::default() }).await;
    let admin = p.admin_token();
    // A weight no calibration measures: one that recorded nothing fails below.
    let patch = json!({"prompt_weight": "999", "completion_weight": "7"});
    let (status, _) = p.call(reqwest::Method::PATCH, &format!("/admin/models/{MODEL}"), &admin, Some(patch)).await;
    assert_eq!(status, 200);

    let spec = TinySpec::default();
    let (model, tokenizer) = (tiny_model(&spec).expect("tiny model"), letter_tokenizer(spec.vocab).expect("tokenizer"));
    let id = MODEL.parse().expect("model id");
    let measured =
        reservoir_platform::calibrate::calibrate(&p.pool, &id, model, tokenizer, 64, 1).await.expect("calibrated");
    assert_eq!(measured.completion_weight, Decimal::ONE, "a generated token is the unit of capacity");
    assert!(measured.prompt_weight > Decimal::ZERO && measured.prompt_weight < Decimal::from(999), "{measured:?}");
    assert!(measured.tokens_per_s > 0 && measured.prefill_tokens_per_s > 0, "{measured:?}");
    // Measured where chat traffic's work sits, as far as the model's context allows.
    assert!(measured.at.decode_context > 0 && measured.at.prompt_tokens > 0, "{measured:?}");
    assert!(measured.at.decode_context < spec.ctx_len && measured.at.prompt_tokens < spec.ctx_len, "{measured:?}");

    let tenant = p.tenant_token("sizer");
    let (status, catalog) = p.call(reqwest::Method::GET, "/v1/catalog", &tenant, None).await;
    assert_eq!(status, 200, "{catalog}");
    let weights = catalog["weights"].as_array().expect("weights").iter().find(|w| w["model"] == MODEL).cloned();
    shows(&weights.unwrap_or_else(|| panic!("the catalog shows {MODEL}'s weights: {catalog}")), &measured);

    p.workers_when(|w| w.iter().any(|w| w.healthy)).await;
    let (status, models) = p.call(reqwest::Method::GET, "/v1/models", &tenant, None).await;
    assert_eq!(status, 200, "{models}");
    let listed = models["data"].as_array().expect("data").iter().find(|m| m["id"] == MODEL).cloned();
    shows(&listed.unwrap_or_else(|| panic!("{MODEL} is served: {models}")), &measured);
    let (_, admin_models) = p.call(reqwest::Method::GET, "/admin/models", &admin, None).await;
    let row = admin_models["models"].as_array().expect("models").iter().find(|m| m["id"] == MODEL).cloned();
    assert_eq!(row.expect("the model")["capacity"], json!(measured.tokens_per_s), "capacity in the same unit");

    // The first request after calibration: the scheduler learns the weights
    // now, and the usage record is weighted by them.
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "abc"}], "max_tokens": 3});
    let response = p.http.post(p.url("/v1/chat/completions")).bearer_auth(&tenant).json(&body).send().await;
    let response = response.expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let request_id = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let (prompt, completion, weighted): (i32, i32, Decimal) = reservoir_tests::recorded(
        &p.pool,
        "SELECT prompt_tokens, completion_tokens, weighted_tokens FROM metering.usage_records WHERE request_id = $1",
        &request_id,
    )
    .await;
    assert!(prompt > 0 && completion > 0, "{prompt} {completion}");
    assert_eq!(weighted, Decimal::from(prompt) * measured.prompt_weight + Decimal::from(completion));
}
