//! Shared state of the gateway and the authentication extractors.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use std::num::NonZeroU32;

use crate::RateLimit;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reservoir_domain::TenantId;
use reservoir_proto::v1::EnsureTenantRequest;
use reservoir_proto::v1::billing_service_client::BillingServiceClient;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_proto::v1::scheduler_service_client::SchedulerServiceClient;
use reservoir_proto::v1::sla_service_client::SlaServiceClient;
use reservoir_runtime::{InternalChannel, InternalToken};
use tonic::transport::Channel;

use crate::auth::{Caller, Signer, Verifier};
use crate::error::ApiError;
use crate::revocation::Revocations;

/// Tenants this process has already provisioned; past this many it simply
/// forgets them (provisioning is idempotent, so forgetting costs one call).
const KNOWN_TENANTS_MAX: usize = 100_000;

/// How long provisioning a tenant may take.
const PROVISION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Per-caller request rate limit, keyed by the token's subject.
pub struct CallerLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

/// Past this many remembered callers, idle ones are forgotten.
const LIMITER_KEYS_MAX: usize = 100_000;

impl CallerLimiter {
    pub fn new(limit: RateLimit) -> anyhow::Result<Self> {
        let per_second = NonZeroU32::new(limit.requests_per_s)
            .ok_or_else(|| anyhow::anyhow!("gateway.rate_limit.requests_per_s must be at least 1"))?;
        let burst = NonZeroU32::new(limit.burst)
            .ok_or_else(|| anyhow::anyhow!("gateway.rate_limit.burst must be at least 1"))?;
        Ok(Self { limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)) })
    }

    fn check(&self, caller: &str) -> Result<(), ApiError> {
        if self.limiter.len() > LIMITER_KEYS_MAX {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&caller.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut error =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; slow down");
            error.retry_after_s = Some(wait.as_secs() + 1);
            error
        })
    }
}

/// Channels to the services behind the gateway.
pub struct Downstream {
    pub contracts: Channel,
    pub scheduler: Channel,
    pub metering: Channel,
    pub sla: Channel,
    pub billing: Channel,
    /// Sent with every call behind the gateway (health checks need none).
    pub token: InternalToken,
}

#[derive(Clone)]
pub struct AppState {
    pub contracts: ContractServiceClient<InternalChannel>,
    pub verifier: Arc<Verifier>,
    pub metering: MeteringServiceClient<InternalChannel>,
    pub scheduler: SchedulerServiceClient<InternalChannel>,
    pub sla: SlaServiceClient<InternalChannel>,
    pub billing: BillingServiceClient<InternalChannel>,
    /// The channels, for health checks.
    pub channels: Arc<Downstream>,
    known_tenants: Arc<Mutex<HashSet<TenantId>>>,
    limiter: Arc<CallerLimiter>,
    /// The public status page's data, reused for a few seconds: the page
    /// needs no login, so every hit must not cost the SLA database queries.
    pub status_cache: Arc<Mutex<Option<(std::time::Instant, reservoir_proto::v1::StatusPage)>>>,
    /// Encrypts the portal's session cookies.
    pub session_key: axum_extra::extract::cookie::Key,
    pub session_ttl_s: u64,
    /// Signs the tokens tenants issue from the console; `None` when tokens
    /// come from an identity provider whose private key we do not hold.
    pub signer: Option<Arc<Signer>>,
    pub revocations: Arc<Revocations>,
}

impl AppState {
    pub fn new(downstream: Downstream, verifier: Verifier, limiter: CallerLimiter) -> Self {
        Self {
            contracts: ContractServiceClient::new(downstream.token.attach(downstream.contracts.clone())),
            metering: MeteringServiceClient::new(downstream.token.attach(downstream.metering.clone())),
            scheduler: SchedulerServiceClient::new(downstream.token.attach(downstream.scheduler.clone())),
            sla: SlaServiceClient::new(downstream.token.attach(downstream.sla.clone())),
            billing: BillingServiceClient::new(downstream.token.attach(downstream.billing.clone())),
            channels: Arc::new(downstream),
            verifier: Arc::new(verifier),
            known_tenants: Arc::default(),
            limiter: Arc::new(limiter),
            status_cache: Arc::default(),
            session_key: axum_extra::extract::cookie::Key::generate(),
            session_ttl_s: 8 * 3600,
            signer: None,
            revocations: Arc::default(),
        }
    }

    /// The caller `token` proves, refused when it is invalid or, for a
    /// console-issued token, revoked.
    pub(crate) async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let caller = self.verifier.verify(token)?;
        if let Some(id) = caller.token_id {
            self.token_usable(&caller.tenant()?, id).await?;
        }
        Ok(caller)
    }

    /// Ok while `tenant`'s console-issued token `id` is not revoked.
    pub(crate) async fn token_usable(&self, tenant: &TenantId, id: uuid::Uuid) -> Result<(), ApiError> {
        self.revocations.check(&self.contracts, tenant, id).await
    }

    /// Provisions a tenant the first time its valid token is seen: the
    /// identity provider is the authority on who the tenants are.
    pub(crate) async fn provision(&self, tenant: &TenantId) -> Result<(), ApiError> {
        let known = self.known_tenants.lock().map(|set| set.contains(tenant)).unwrap_or(false);
        if known {
            return Ok(());
        }
        // A short deadline: while the contracts database is down, a tenant
        // not seen yet gets its 503 in seconds (known ones are not asked).
        let mut request = tonic::Request::new(EnsureTenantRequest { id: tenant.to_string() });
        request.set_timeout(PROVISION_TIMEOUT);
        self.contracts.clone().ensure_tenant(request).await?;
        if let Ok(mut set) = self.known_tenants.lock() {
            if set.len() >= KNOWN_TENANTS_MAX {
                set.clear();
            }
            set.insert(tenant.clone());
        }
        Ok(())
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    let value = header.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
    Ok(token.trim())
}

/// A caller holding a valid tenant token; the tenant exists once this is built.
pub struct AuthTenant(pub TenantId);

impl FromRequestParts<AppState> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = state.authenticate(bearer(parts)?).await?;
        state.limiter.check(&caller.subject)?;
        let tenant = caller.tenant()?;
        state.provision(&tenant).await?;
        Ok(AuthTenant(tenant))
    }
}

/// A caller holding a valid admin token.
pub struct AuthAdmin(pub Caller);

impl FromRequestParts<AppState> for AuthAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = state.authenticate(bearer(parts)?).await?;
        state.limiter.check(&caller.subject)?;
        caller.require_admin()?;
        Ok(AuthAdmin(caller))
    }
}
