//! Serving a gRPC service the Reservoir way: next to it `grpc.health.v1`
//! (reporting SERVING for the named services) and server reflection, so that
//! `grpcurl` works against every service; graceful shutdown on the token.

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use crate::Shutdown;
use crate::internal_auth::{InternalToken, RequireInternalToken};

/// Serves `routes` plus health and reflection on `listener` until `shutdown`.
/// `service_names` are the fully qualified names reported as SERVING. With
/// an internal token set, every call but health checks must carry it.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    service_names: &[&str],
    token: &InternalToken,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in service_names {
        reporter.set_service_status(*name, tonic_health::ServingStatus::Serving).await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(reservoir_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let routes = routes.add_service(health).add_service(reflection);
    let names: Vec<String> = service_names.iter().map(|s| (*s).to_owned()).collect();
    // Streamed tokens are small writes: without TCP_NODELAY, Nagle's
    // algorithm holds one back until the peer's (delayed, up to 40 ms) ACK
    // of the previous segment, which put 40 ms into every first token.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(RequireInternalToken(token.clone()))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.wait().await;
            // Tell health checkers first, so balancers stop sending new work.
            for name in &names {
                reporter.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
            }
        })
        .await?;
    Ok(())
}

/// How long a client waits to connect to another service.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A lazily connecting channel to another service, with deadlines: connecting
/// takes at most `CONNECT_TIMEOUT`, and a call waits at most `call_timeout`
/// for its answer (for a streaming call, for the stream to start), so a
/// service that hangs never hangs its callers.
pub fn client_channel(url: &str, call_timeout: std::time::Duration) -> anyhow::Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(call_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}
