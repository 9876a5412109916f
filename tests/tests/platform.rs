//! The platform's own surfaces: health, readiness, the OpenAPI document and
//! the API explorer, gRPC health and reflection.

use reservoir_tests::{MIGRATOR, Platform};
use sqlx::PgPool;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use utoipa::OpenApi;

#[sqlx::test(migrator = "MIGRATOR")]
async fn health_and_readiness(pool: PgPool) {
    let p = Platform::start(pool).await;
    let healthz = p.http.get(p.url("/healthz")).send().await.expect("sent");
    assert_eq!(healthz.status().as_u16(), 200);
    let readyz = p.http.get(p.url("/readyz")).send().await.expect("sent");
    assert_eq!(readyz.status().as_u16(), 200);
    assert_eq!(readyz.json::<serde_json::Value>().await.expect("json")["status"], "ready");

    // With the database gone, the platform is alive but not ready.
    p.pool.close().await;
    let readyz = p.http.get(p.url("/readyz")).send().await.expect("sent");
    assert_eq!(readyz.status().as_u16(), 503);
    let healthz = p.http.get(p.url("/healthz")).send().await.expect("sent");
    assert_eq!(healthz.status().as_u16(), 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn grpc_health_and_reflection_answer(pool: PgPool) {
    let p = Platform::start(pool).await;
    let channel =
        tonic::transport::Endpoint::from_shared(p.contracts.clone()).expect("url").connect().await.expect("connect");
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: "reservoir.v1.ContractService".into() })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(futures_util::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = stream.message().await.expect("message").expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"reservoir.v1.ContractService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_api_explorer_and_document_are_served(pool: PgPool) {
    let p = Platform::start(pool).await;
    let docs = p.http.get(p.url("/docs/")).send().await.expect("sent");
    assert_eq!(docs.status().as_u16(), 200);
    let page = docs.text().await.expect("text");
    assert!(page.contains("swagger-ui"), "the explorer page is served from the binary");
    let document: serde_json::Value =
        p.http.get(p.url("/openapi.json")).send().await.expect("sent").json().await.expect("json");
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/v1/reservations"]["post"].is_object());
}

/// The committed `openapi/openapi.json` must be what the code generates.
/// Run with `UPDATE_OPENAPI=1` to rewrite it.
#[test]
fn committed_openapi_document_is_current() {
    let generated = reservoir_gateway::ApiDoc::openapi().to_pretty_json().expect("json") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p reservoir-tests --test platform` and commit it"
    );
}
