//! The API contract, checked from outside: Schemathesis (`scripts/test`
//! installs it with pip) reads the gateway's OpenAPI document, sends
//! requests it generates from it (valid and invalid ones) to the running
//! platform, and checks every answer against the document (`--checks all`):
//! no 5xx, and statuses, content types, headers and bodies as documented.
//! Once with a tenant's token over the tenant, inference, SLA and status
//! routes; once with an admin token over the admin routes. Each test has a
//! database of its own, so whatever the generated requests create or cancel
//! there cannot disturb another test. Options are in `schemathesis.toml`.

use reservoir_tests::{MIGRATOR, Options, Platform};
use sqlx::PgPool;

/// Test cases per operation and phase: enough to find a shape the gateway
/// does not document, few enough to keep CI short (see README).
const EXAMPLES_PER_OPERATION: u32 = 25;

/// A fixed seed: a failure found in CI is found again by the same run here.
const SEED: u32 = 20_260_101;

async fn schemathesis(p: &Platform, token: &str, select: &[&str]) {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(crate_dir.join("schemathesis.toml"))
        .arg("run")
        .arg(p.url("/openapi.json"))
        .args(["--url", &p.gateway, "--checks", "all", "--seed", &SEED.to_string()])
        .args(["--max-examples", &EXAMPLES_PER_OPERATION.to_string()])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(select)
        // Schemathesis keeps nothing between runs (no example database).
        .args(["--generation-database", "none"])
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs (scripts/test installs schemathesis)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("schemathesis {select:?} took {:?}", started.elapsed());
    assert!(output.status.success(), "schemathesis found answers the document does not describe:\n{stdout}\n{stderr}");
}

async fn platform(pool: PgPool) -> Platform {
    // One worker, so that completions are really served (and streamed).
    Platform::start_with(pool, Options { workers: 1, ..Options::default() }).await
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_tenant_and_public_answer_is_documented(pool: PgPool) {
    let p = platform(pool).await;
    schemathesis(&p, &p.tenant_token("schemathesis"), &["--exclude-path-regex", "^/admin/"]).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_admin_answer_is_documented(pool: PgPool) {
    let p = platform(pool).await;
    schemathesis(&p, &p.admin_token(), &["--include-path-regex", "^/admin/"]).await;
}

/// The schema at `reference` (`#/components/schemas/NAME`) in `doc`.
fn component<'a>(doc: &'a serde_json::Value, reference: &str) -> &'a serde_json::Value {
    let name =
        reference.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("not a component: {reference}"));
    &doc["components"]["schemas"][name]
}

/// Holds `body` to an object schema of the document: every required field
/// there, no field the schema does not name, nested references alike.
fn assert_shape(doc: &serde_json::Value, schema: &serde_json::Value, body: &serde_json::Value) {
    let schema = match schema["$ref"].as_str() {
        Some(reference) => component(doc, reference),
        None => schema,
    };
    let properties = schema["properties"].as_object().unwrap_or_else(|| panic!("not an object schema: {schema}"));
    let fields = body.as_object().unwrap_or_else(|| panic!("not an object: {body}"));
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap_or_default();
        assert!(fields.contains_key(name), "{body} lacks {name}, which {schema} requires");
    }
    for (name, value) in fields {
        let field = properties.get(name).unwrap_or_else(|| panic!("{body} sends {name}, which {schema} does not name"));
        if field["$ref"].is_string() && value.is_object() {
            assert_shape(doc, field, value);
        }
    }
}

/// 429s are rare in the Schemathesis runs (their rate limit is out of
/// reach), so the shape of each kind of 429 is checked here: OpenAI's on
/// the OpenAI routes, the REST API's elsewhere, each as its route documents.
#[sqlx::test(migrator = "MIGRATOR")]
async fn rate_limited_answers_have_their_routes_documented_shape(pool: PgPool) {
    use utoipa::OpenApi;
    let rate_limit = reservoir_gateway::RateLimit { requests_per_s: 1, burst: 1 };
    let p = Platform::start_with(pool, Options { rate_limit, ..Options::default() }).await;
    let doc = serde_json::to_value(reservoir_gateway::ApiDoc::openapi()).expect("document as JSON");
    let documented = |path: &str, status: &str| {
        &doc["paths"][path]["get"]["responses"][status]["content"]["application/json"]["schema"]
    };
    for (caller, path) in ["/v1/models", "/v1/catalog"].into_iter().enumerate() {
        // A caller per route: its first call passes, its second is limited.
        let token = p.tenant_token(&format!("limited-{caller}"));
        let (first, body) = p.call(reqwest::Method::GET, path, &token, None).await;
        assert_eq!(first, 200, "{path}: {body}");
        if path == "/v1/models" {
            // OpenAI's list, not the admin API's `{"models": [...]}`.
            assert_shape(&doc, documented(path, "200"), &body);
        }
        let (second, body) = p.call(reqwest::Method::GET, path, &token, None).await;
        assert_eq!(second, 429, "{path}: {body}");
        assert_shape(&doc, documented(path, "429"), &body);
    }
}
