//! Service-to-service authentication: a shared secret (`internal.token`)
//! that every internal gRPC call carries as `authorization: Bearer <token>`.
//! When a service is configured with one, it refuses calls without it
//! (UNAUTHENTICATED), except `grpc.health.v1`, which container and load
//! balancer probes call bare, and server reflection, which only describes
//! the (public) proto files, so `grpcurl list` works. Without one, the service trusts its network,
//! as every internal port did before: keep such ports on the loopback.
//!
//! Clients attach the token with `InternalToken` as a tonic interceptor;
//! servers check it with `RequireInternalToken`, a tower layer (`grpc::serve`
//! puts it in front of every route).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Services open without the token: health probes and reflection.
const OPEN_PREFIXES: [&str; 3] =
    ["/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

/// The shared secret, or none (no check, no header).
#[derive(Clone, Default)]
pub struct InternalToken(Option<Arc<Secret>>);

struct Secret {
    token: Box<str>,
    /// `Bearer <token>`, built once for every call to carry; `None` when the
    /// token cannot be a header value (every call then fails with a clear
    /// error instead of going out without it).
    header: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for InternalToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "InternalToken(set)" } else { "InternalToken(none)" })
    }
}

/// A channel whose every call carries the internal token.
pub type InternalChannel = InterceptedService<Channel, InternalToken>;

impl InternalToken {
    /// An empty or absent token means none.
    pub fn new(token: Option<&str>) -> Self {
        InternalToken(
            token.filter(|t| !t.is_empty()).map(|t| {
                Arc::new(Secret { token: t.into(), header: MetadataValue::try_from(format!("Bearer {t}")).ok() })
            }),
        )
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// `channel` with this token attached to every call.
    pub fn attach(&self, channel: Channel) -> InternalChannel {
        InterceptedService::new(channel, self.clone())
    }

    /// Whether a request with this `authorization` header may pass.
    fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(expected) = &self.0 else { return true };
        let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else { return false };
        bool::from(given.ct_eq(expected.token.as_bytes()))
    }
}

impl Interceptor for InternalToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(secret) = &self.0 {
            let value = secret
                .header
                .clone()
                .ok_or_else(|| Status::internal("the internal token is not a valid header value"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// Tower layer: refuses requests without the internal token.
#[derive(Clone, Debug)]
pub struct RequireInternalToken(pub InternalToken);

impl<S> tower::Layer<S> for RequireInternalToken {
    type Service = CheckToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckToken { inner, token: self.0.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct CheckToken<S> {
    inner: S,
    token: InternalToken,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for CheckToken<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let open = OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix));
        let authorization = request.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        if open || self.token.admits(authorization) {
            return Box::pin(self.inner.call(request));
        }
        let refused = Status::unauthenticated("this internal service needs the platform's internal token").into_http();
        Box::pin(std::future::ready(Ok(refused)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let token = InternalToken::new(Some("s3cret"));
        assert!(token.admits(Some(b"Bearer s3cret")));
        assert!(!token.admits(Some(b"Bearer s3cre")));
        assert!(!token.admits(Some(b"Bearer s3cret!")));
        assert!(!token.admits(Some(b"s3cret")));
        assert!(!token.admits(None));
        assert!(InternalToken::new(None).admits(None), "no token configured: no check");
        assert!(!InternalToken::new(Some("")).is_set(), "an empty token is none");
    }
}
