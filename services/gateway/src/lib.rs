//! The gateway: the tenant REST API, the admin API, JWT authentication and
//! the OpenAPI document with an offline API explorer at `/docs`. It holds no
//! data of its own: every call goes to the gRPC services behind it.

pub mod api;
pub mod auth;
pub mod error;
mod extract;
mod metrics;
mod openai;
mod openapi;
mod portal;
mod revocation;
mod routes;
mod state;

use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use reservoir_runtime::InternalToken;
use reservoir_runtime::Shutdown;
use reservoir_runtime::config::AuthConfig;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::transport::Endpoint;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use openapi::ApiDoc;
pub use state::AppState;

use crate::error::ApiError;

/// The `[gateway]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// Where the gateway reaches the contracts service.
    pub contracts_url: String,
    /// Where the gateway reaches the scheduler service.
    pub scheduler_url: String,
    /// Where the gateway reads usage (MeteringService).
    pub metering_url: String,
    /// Where the gateway reads SLA figures, credits and the status page (SlaService).
    pub sla_url: String,
    /// Where the gateway reads and acts on invoices (BillingService).
    pub billing_url: String,
    /// Largest request body accepted, in bytes (413 beyond).
    pub body_limit_bytes: usize,
    /// Requests per second each authenticated caller may send (429 beyond).
    pub rate_limit: RateLimit,
    /// Encrypts portal session cookies; 64 bytes or more. Unset: a random
    /// key per process (sessions end when the gateway restarts, and several
    /// gateways cannot share them).
    pub session_secret: Option<String>,
    /// How long a portal session lasts.
    pub session_ttl_s: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained requests per second per caller.
    pub requests_per_s: u32,
    /// Requests a caller may send at once after a quiet spell.
    pub burst: u32,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            contracts_url: "http://127.0.0.1:50051".into(),
            scheduler_url: "http://127.0.0.1:50071".into(),
            metering_url: "http://127.0.0.1:50081".into(),
            sla_url: "http://127.0.0.1:50091".into(),
            billing_url: "http://127.0.0.1:50101".into(),
            body_limit_bytes: 256 * 1024,
            rate_limit: RateLimit { requests_per_s: 100, burst: 200 },
            session_secret: None,
            session_ttl_s: 8 * 3600,
        }
    }
}

pub struct Server {
    listener: TcpListener,
    router: Router,
}

/// Binds the gateway's port and connects (lazily) to the services behind it.
/// Tokens are verified as `auth` says; `internal_token` goes with every call
/// to the services behind the gateway.
pub async fn build(
    settings: &GatewaySettings,
    auth: &AuthConfig,
    internal_token: InternalToken,
) -> anyhow::Result<Server> {
    let verifier = auth::Verifier::from_config(auth)?;
    let channel = Endpoint::from_shared(settings.contracts_url.clone())
        .context("gateway.contracts_url")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    let scheduler = Endpoint::from_shared(settings.scheduler_url.clone())
        .context("gateway.scheduler_url")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    let metering = Endpoint::from_shared(settings.metering_url.clone())
        .context("gateway.metering_url")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    let sla = Endpoint::from_shared(settings.sla_url.clone())
        .context("gateway.sla_url")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    // A period run rates every tenant's month: minutes, not seconds.
    let billing = Endpoint::from_shared(settings.billing_url.clone())
        .context("gateway.billing_url")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(600))
        .connect_lazy();
    let limiter = state::CallerLimiter::new(settings.rate_limit)?;
    let downstream = state::Downstream { contracts: channel, scheduler, metering, sla, billing, token: internal_token };
    let session_key = match &settings.session_secret {
        Some(secret) => axum_extra::extract::cookie::Key::try_from(secret.as_bytes())
            .map_err(|_| anyhow::anyhow!("gateway.session_secret must be at least 64 bytes"))?,
        None => axum_extra::extract::cookie::Key::generate(),
    };
    let mut state = AppState::new(downstream, verifier, limiter);
    state.session_key = session_key;
    state.session_ttl_s = settings.session_ttl_s;
    state.signer = auth::Signer::from_config(auth)?.map(std::sync::Arc::new);
    let listener = TcpListener::bind(settings.listen).await?;
    Ok(Server { listener, router: router(state, settings.body_limit_bytes) })
}

pub fn router(state: AppState, body_limit_bytes: usize) -> Router {
    use routes::{admin, billing, billing_admin, health, sla, sla_admin, status, tenant, usage};
    let metrics = match metrics::GatewayMetrics::new() {
        Ok(m) => m,
        Err(e) => {
            // Only a duplicate registration fails, which the code never does.
            tracing::error!(error = %e, "metrics registry");
            return Router::new();
        }
    };
    let render = metrics.clone();
    Router::new()
        .route("/metrics", get(move || async move { render.render() }))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/reservations/quote", post(tenant::quote))
        .route("/v1/reservations", post(tenant::create).get(tenant::list))
        .route("/v1/reservations/{id}", get(tenant::get))
        .route("/v1/reservations/{id}/cancel", post(tenant::cancel))
        .route("/v1/capacity", get(tenant::capacity))
        .route("/v1/catalog", get(tenant::catalog))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/sla", get(sla::sla))
        .route("/v1/credits", get(sla::credits))
        .route("/v1/webhooks", post(sla::create_webhook).get(sla::list_webhooks))
        .route("/v1/webhooks/{id}", delete(sla::delete_webhook))
        .route("/v1/invoices", get(billing::list))
        .route("/v1/invoices/{id}", get(billing::get))
        .route("/v1/credit-balance", get(billing::credit_balance))
        .route("/admin/billing/periods/{period}/run", post(billing_admin::run_period))
        .route("/admin/invoices", get(billing_admin::list))
        .route("/admin/invoices/{id}", get(billing_admin::get))
        .route("/admin/invoices/{id}/finalize", post(billing_admin::finalize))
        .route("/admin/invoices/{id}/hold", post(billing_admin::hold))
        .route("/admin/invoices/{id}/release", post(billing_admin::release))
        .route("/admin/invoices/{id}/void", post(billing_admin::void))
        .route("/admin/invoices/{id}/credit-notes", post(billing_admin::credit_note))
        .route("/admin/credit-notes", get(billing_admin::credit_notes))
        .route("/admin/exports/invoices", get(billing_admin::export_invoices))
        .route("/admin/exports/invoice-lines", get(billing_admin::export_lines))
        .route("/admin/exports/credit-notes", get(billing_admin::export_credit_notes))
        .route("/status", get(status::status_html))
        .route("/status.json", get(status::status_json))
        .route("/status/feed.atom", get(status::status_feed))
        .route("/admin/sla/incidents", get(sla_admin::incidents))
        .route("/admin/sla/incidents/{id}/updates", post(sla_admin::add_update))
        .route("/admin/sla/incidents/{id}/postmortem", put(sla_admin::set_postmortem))
        .route("/admin/sla/periods/{period}/close", post(sla_admin::close_period))
        .route("/admin/maintenance", get(sla_admin::list_maintenance).post(sla_admin::create_maintenance))
        .route("/admin/maintenance/{id}/cancel", post(sla_admin::cancel_maintenance))
        .route("/admin/exports/sla-credits", get(sla_admin::export_credits))
        .route("/admin/webhooks", get(sla_admin::list_webhooks).post(sla_admin::create_webhook))
        .route("/admin/webhooks/{id}", delete(sla_admin::delete_webhook))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/admin/tenants", get(admin::list_tenants).post(admin::create_tenant))
        .route("/admin/models", get(admin::list_models).post(admin::create_model))
        .route("/admin/models/{id}", patch(admin::update_model))
        .route("/admin/catalog", get(admin::get_catalog).put(admin::publish_catalog))
        .route("/admin/reservations", get(admin::list_reservations))
        .route("/admin/reservations/{id}/cancel", post(admin::cancel_reservation))
        .merge(portal::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed")
        })
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .route_layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            use axum::response::IntoResponse;
            tracing::error!("a request handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(TraceLayer::new_for_http())
}

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown`, then finishes the requests in flight.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        // Streamed tokens (SSE) are small writes: with Nagle's algorithm on,
        // each could wait for the client's delayed ACK of the one before.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
            }
        });
        axum::serve(listener, self.router).with_graceful_shutdown(async move { shutdown.wait().await }).await?;
        Ok(())
    }
}
