//! A tower [`Layer`] that lets a request through only when the local
//! verifier says its bearer token allows it.
//!
//! For each request it takes the bundle from `Authorization: Bearer …` (an
//! HTTP header, or gRPC metadata, which is the same thing on the wire),
//! builds the request context (method → action through the service's
//! [`ActionMap`], path → resource, the service's name, the peer's address),
//! calls the verifier, and either passes the request on with an
//! [`Authorized`] extension or answers itself:
//!
//! | situation | HTTP | gRPC |
//! |---|---|---|
//! | no or unreadable bearer | 401 | `UNAUTHENTICATED` |
//! | token malformed, forged, revoked, expired… | 401 | `UNAUTHENTICATED` |
//! | valid token that does not allow the request, unmapped action | 403 | `PERMISSION_DENIED` |
//! | verifier unreachable, slow, or cut off from the authority | 503 | `UNAVAILABLE` |
//! | a request field past its bound (`tally_token::FieldLimits`) | 400 | `INVALID_ARGUMENT` |
//!
//! The rules (bearer, methods, answers) are `tally_token::http_auth`, which
//! the verifier's Envoy adapter shares.
//!
//! It fails closed: nothing reaches the service unless the verifier allowed it.

mod actions;
mod reject;

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, Response};
use http_body_util::{Either, Full};
use tally_token::{FieldLimits, RequestFields, http_auth};
use tower_layer::Layer;
use tower_service::Service;

pub use actions::{ActionMap, GrpcActions, HttpActions};
pub use reject::Refusal;

use crate::types::{Check, Decision};
use crate::verifier::VerifierClient;

/// What the layer learned about an allowed request's token; handlers read
/// it from the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub org: Option<String>,
    pub subject: Option<String>,
    /// Hex family id: log this, never the token.
    pub family: Option<String>,
    /// The action the request was checked for.
    pub action: String,
}

type Resource = dyn Fn(&Parts) -> Option<String> + Send + Sync;
type ClientIp = dyn Fn(&Parts) -> Option<IpAddr> + Send + Sync;

#[derive(Clone)]
struct Config {
    service: Option<String>,
    org: Option<String>,
    actions: Arc<dyn ActionMap>,
    resource: Arc<Resource>,
    client_ip: Arc<ClientIp>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config").field("service", &self.service).field("org", &self.org).finish_non_exhaustive()
    }
}

/// The layer. Build it once with the verifier client and the service's
/// mappings; it is cheap to clone.
#[derive(Debug, Clone)]
pub struct TallyAuthLayer {
    verifier: VerifierClient,
    config: Arc<Config>,
}

impl TallyAuthLayer {
    /// Checks requests with `verifier`. Defaults: [`HttpActions`], the
    /// resource is the path without its leading `/`, no service name, the
    /// client address from tonic's connection info when present.
    pub fn new(verifier: VerifierClient) -> Self {
        let config = Config {
            service: None,
            org: None,
            actions: Arc::new(HttpActions),
            resource: Arc::new(|parts: &Parts| Some(parts.uri.path().trim_start_matches('/').to_owned())),
            client_ip: Arc::new(tonic_peer_ip),
        };
        Self { verifier, config: Arc::new(config) }
    }

    /// The configuration to change (copied first when a clone shares it).
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// This service's name, for `service = NAME` caveats.
    pub fn service_name(mut self, name: &str) -> Self {
        self.config_mut().service = Some(name.to_owned());
        self
    }

    /// The org this service belongs to: only tokens of that org are allowed
    /// (a token of another org is refused, 403, `wrong_org`). A service of a
    /// multi-tenant deployment sets it; without it, the verifier's `--org`
    /// applies, if it has one.
    pub fn org(mut self, org: &str) -> Self {
        self.config_mut().org = Some(org.to_owned());
        self
    }

    /// How requests map to actions.
    pub fn actions(mut self, actions: impl ActionMap) -> Self {
        self.config_mut().actions = Arc::new(actions);
        self
    }

    /// How requests map to resources (`None`: no resource supplied, so
    /// tokens with `resource = …` caveats are refused).
    pub fn resource(mut self, f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.config_mut().resource = Arc::new(f);
        self
    }

    /// How to find the client's address, for `client-ip in …` caveats (for
    /// axum: its `ConnectInfo<SocketAddr>` extension).
    pub fn client_ip(mut self, f: impl Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static) -> Self {
        self.config_mut().client_ip = Arc::new(f);
        self
    }
}

impl<S> Layer<S> for TallyAuthLayer {
    type Service = TallyAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TallyAuth { inner, verifier: self.verifier.clone(), config: self.config.clone() }
    }
}

/// The service the layer wraps around the application.
#[derive(Debug, Clone)]
pub struct TallyAuth<S> {
    inner: S,
    verifier: VerifierClient,
    config: Arc<Config>,
}

/// The response body: the application's, or the layer's refusal.
pub type AuthBody<B> = Either<B, Full<Bytes>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TallyAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request; the fresh one stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let config = self.config.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            match authorize(&verifier, &config, &parts).await {
                Ok(authorized) => {
                    parts.extensions.insert(authorized);
                    let resp = inner.call(Request::from_parts(parts, body)).await?;
                    Ok(resp.map(Either::Left))
                }
                Err(refusal) => Ok(refusal.response(&parts.headers).map(Either::Right)),
            }
        })
    }
}

/// The bundle from `Authorization: Bearer …` (`tally_token::http_auth::bearer`).
fn bearer(parts: &Parts) -> Result<String, Refusal> {
    let values = parts.headers.get_all(AUTHORIZATION);
    if values.iter().any(|v| v.to_str().is_err()) {
        return Err(Refusal::MissingToken("the Authorization header is not text"));
    }
    http_auth::bearer(values.iter().filter_map(|v| v.to_str().ok())).map(str::to_owned).map_err(Refusal::MissingToken)
}

async fn authorize(verifier: &VerifierClient, config: &Config, parts: &Parts) -> Result<Authorized, Refusal> {
    let bundle = bearer(parts)?;
    let Some(action) = config.actions.action(&parts.method, parts.uri.path()) else {
        return Err(Refusal::Forbidden(format!("{} {} is not open to tokens", parts.method, parts.uri.path())));
    };
    let resource = (config.resource)(parts);
    // Past a field's bound the verifier refuses the request as bad input:
    // say so here, as the Envoy adapter does, rather than call it a bad token.
    let (service, org) = (config.service.as_deref().unwrap_or(""), config.org.as_deref().unwrap_or(""));
    RequestFields::parse(&action, resource.as_deref().unwrap_or(""), service, "", "", org, &FieldLimits::default())
        .map_err(|e| Refusal::BadRequest(e.to_string()))?;
    let check = Check {
        bundle,
        action: Some(action.clone()),
        resource,
        service: config.service.clone(),
        subject: None,
        client_ip: (config.client_ip)(parts),
        org: config.org.clone(),
    };
    let decision = match verifier.check(&check).await {
        Ok(d) => d,
        Err(e) if e.code() == tonic::Code::InvalidArgument => {
            return Err(Refusal::InvalidToken(format!("invalid token: {e}")));
        }
        Err(e) => {
            tracing::warn!(error = %e, "verifier unavailable: refusing the request");
            return Err(Refusal::Unavailable(http_auth::UNAVAILABLE_MESSAGE.into()));
        }
    };
    refusal(&decision, &action)?;
    Ok(Authorized { org: decision.org, subject: decision.subject, family: decision.family, action })
}

/// The refusal a negative decision stands for (`tally_token::http_auth::refusal`).
fn refusal(d: &Decision, action: &str) -> Result<(), Refusal> {
    if d.allowed {
        return Ok(());
    }
    tracing::debug!(family = d.family.as_deref(), reason = %d.reason, action, "request refused");
    let (kind, message) = http_auth::refusal(d.reason, action, d.failed_caveat.as_deref());
    Err(Refusal::of(kind, message))
}

/// The peer's address as tonic's server records it.
fn tonic_peer_ip(parts: &Parts) -> Option<IpAddr> {
    let info = parts.extensions.get::<tonic::transport::server::TcpConnectInfo>()?;
    info.remote_addr().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Reason;

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = Request::builder().uri("/x");
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_forms() {
        let mut twice = parts(Some("Bearer tly_abc"));
        twice.headers.append(AUTHORIZATION, http::HeaderValue::from_static("Bearer tly_def"));
        assert!(matches!(bearer(&twice), Err(Refusal::MissingToken("more than one Authorization header"))));
        assert_eq!(bearer(&parts(Some("Bearer tly_abc"))).unwrap(), "tly_abc");
        assert_eq!(bearer(&parts(Some("bearer  tly_abc "))).unwrap(), "tly_abc");
        assert!(matches!(bearer(&parts(None)), Err(Refusal::MissingToken(_))));
        assert!(matches!(bearer(&parts(Some("Basic abc"))), Err(Refusal::MissingToken(_))));
        assert!(matches!(bearer(&parts(Some("Bearer "))), Err(Refusal::MissingToken(_))));
    }

    fn decision(reason: Reason) -> Decision {
        Decision {
            allowed: reason == Reason::Ok,
            reason,
            detail: String::new(),
            failed_caveat: None,
            org: None,
            subject: None,
            family: None,
            source: crate::types::Source::Local,
            expires_at_unix_ms: None,
        }
    }

    #[test]
    fn reasons_map_to_refusals() {
        assert!(refusal(&decision(Reason::Ok), "read").is_ok());
        assert!(matches!(refusal(&decision(Reason::Revoked), "read"), Err(Refusal::InvalidToken(_))));
        assert!(matches!(refusal(&decision(Reason::CaveatFailed), "read"), Err(Refusal::Forbidden(_))));
        assert!(matches!(refusal(&decision(Reason::WrongOrg), "read"), Err(Refusal::Forbidden(_))));
        assert!(matches!(refusal(&decision(Reason::AuthorityUnavailable), "read"), Err(Refusal::Unavailable(_))));
    }
}
