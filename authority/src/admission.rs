//! Admission in front of every authority RPC, as a tower layer
//! on the gRPC server: who gets capacity, and when.
//!
//! A request is classed by its bearer header before anything else is read:
//! **authenticated** (a live token of Tally's API: the system org's, its
//! signature good, its key active, not revoked, not expired; what it may do
//! is decided per call) or **anonymous** (no bearer, or one that is not such
//! a token: holders revoking their own tokens, and everything that will be
//! refused). The two never share capacity:
//!
//! * an authenticated request takes one of `max_in_flight` slots only once
//!   its whole message has been read (within `read_timeout`), so requests
//!   that send headers and never a body hold nothing an operator's Revoke or
//!   a verifier's Verify needs;
//! * an anonymous request is admitted at its headers into a budget of its
//!   own: at most `max_anonymous` at once, at most `max_anonymous_per_client`
//!   from one client address (an IPv6 client by its /64), for as long as it
//!   is read and handled (a holder's own revocations are also rate-limited
//!   per client address, by the Revoke call itself).
//!
//! Past a bound a request is answered at once (UNAVAILABLE when the server
//! is full, RESOURCE_EXHAUSTED when one client asks for too much); nothing
//! queues. Every call has a deadline (`rpc_timeout`, DEADLINE_EXCEEDED). A
//! request's message is read here in full (at most [`MAX_MESSAGE_BYTES`]
//! plus its frame), so a handler only ever runs on a complete request; when
//! a client goes away, its stream is reset and whatever this layer holds for
//! it is dropped with it. A streaming call (Subscribe) holds its slot and its
//! deadline only until its response starts; streams have their own cap
//! (`Settings::max_subscribers`). Health checks pass untouched, so an
//! overloaded authority is not also restarted by its probes. Streams per
//! connection are bounded by the server (`max_streams_per_connection`).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use crate::authority::Authority;
use crate::metrics::Metrics;

/// Authenticated requests handled at once, across all connections.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Anonymous requests admitted at once (being read or handled).
pub const DEFAULT_MAX_ANONYMOUS: usize = 256;
/// Anonymous requests admitted at once from one client address: a holder
/// revokes its token once, so even a NAT full of holders needs few.
pub const DEFAULT_MAX_ANONYMOUS_PER_CLIENT: usize = 16;
/// HTTP/2 streams a connection may have open at once. A verifier sends its
/// Verify calls over one connection, at most 128 at a time by default.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// Longest a request's message may take to arrive, once its headers have.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a unary call (or a stream's setup) may take, reading included.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request message the service decodes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// gRPC's frame around a message: a compression flag and a 4-byte length.
const FRAME_BYTES: usize = 5;
/// Paths exempt from admission.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
/// Tally's own RPCs: each takes one request message, read here in full
/// (reflection's stream of requests is passed through as it comes).
const TALLY_PREFIX: &str = "/tally.v1.Authority/";

/// The server's admission limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Authenticated requests handled at once; more are answered UNAVAILABLE.
    pub max_in_flight: usize,
    /// Anonymous requests admitted at once; more are answered UNAVAILABLE.
    pub max_anonymous: usize,
    /// Anonymous requests admitted at once from one client address; more
    /// are answered RESOURCE_EXHAUSTED.
    pub max_anonymous_per_client: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Longest a request's message may take to arrive (DEADLINE_EXCEEDED).
    pub read_timeout: Duration,
    /// Deadline of each call, reading included (DEADLINE_EXCEEDED).
    pub rpc_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_anonymous: DEFAULT_MAX_ANONYMOUS,
            max_anonymous_per_client: DEFAULT_MAX_ANONYMOUS_PER_CLIENT,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            read_timeout: DEFAULT_READ_TIMEOUT,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
        }
    }
}

/// The layer; one admission state shared by every connection's service.
#[derive(Debug, Clone)]
pub(crate) struct AdmissionLayer {
    admission: Arc<Admission>,
}

struct Admission {
    limits: Limits,
    /// Slots of authenticated requests whose message was read.
    slots: Arc<Semaphore>,
    /// The anonymous budget.
    anonymous: Arc<Semaphore>,
    /// Anonymous requests admitted per client address.
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    authority: Arc<Authority>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl AdmissionLayer {
    pub(crate) fn new(limits: Limits, authority: Arc<Authority>) -> Self {
        let permits = |n: usize| Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS)));
        let admission = Admission {
            slots: permits(limits.max_in_flight),
            anonymous: permits(limits.max_anonymous),
            per_client: Arc::default(),
            limits,
            authority,
        };
        Self { admission: Arc::new(admission) }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Admitted<S> {
        Admitted { inner, admission: self.admission.clone() }
    }
}

/// The service the layer makes.
#[derive(Debug, Clone)]
pub(crate) struct Admitted<S> {
    inner: S,
    admission: Arc<Admission>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// How a request was admitted.
enum Ticket {
    /// A slot is taken once its message is read.
    Authenticated,
    /// Holds its share of the anonymous budget until answered.
    Anonymous { _budget: OwnedSemaphorePermit, _client: ClientShare },
}

impl<S> Service<http::Request<Body>> for Admitted<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // Call the service that was polled ready; keep a clone for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        if req.uri().path().starts_with(HEALTH_PREFIX) {
            let mut inner = inner;
            return Box::pin(inner.call(req));
        }
        let admission = self.admission.clone();
        match admission.ticket(&req) {
            Ok(ticket) => Box::pin(admission.run(inner, req, ticket)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

impl Admission {
    fn metrics(&self) -> &Metrics {
        &self.authority.metrics
    }

    /// Classes a request by its bearer header and admits an anonymous one
    /// into its budget, or refuses it at once.
    fn ticket(&self, req: &http::Request<Body>) -> Result<Ticket, Status> {
        let bearer =
            req.headers().get(http::header::AUTHORIZATION).and_then(|v| crate::authorizer::bearer_text(v.as_bytes()));
        if bearer.is_some_and(|b| self.authority.is_api_credential(b)) {
            return Ok(Ticket::Authenticated);
        }
        let client = client_key(connection_peer(req));
        let Some(share) = ClientShare::take(&self.per_client, client, self.limits.max_anonymous_per_client) else {
            self.metrics().shed.inc();
            return Err(Status::resource_exhausted(format!(
                "too many requests without credentials from this address (at most {} at once)",
                self.limits.max_anonymous_per_client
            )));
        };
        let Ok(budget) = self.anonymous.clone().try_acquire_owned() else {
            self.metrics().shed.inc();
            return Err(Status::unavailable("authority busy with requests without credentials; retry with backoff"));
        };
        Ok(Ticket::Anonymous { _budget: budget, _client: share })
    }

    /// Reads the request, takes its slot and calls the service, all within
    /// the call's deadline.
    async fn run<S>(
        self: Arc<Self>,
        inner: S,
        req: http::Request<Body>,
        ticket: Ticket,
    ) -> Result<S::Response, S::Error>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>> + Send,
        S::Future: Send,
    {
        let deadline = self.limits.rpc_timeout;
        match tokio::time::timeout(deadline, self.clone().admit_and_call(inner, req, ticket)).await {
            Ok(answer) => answer,
            Err(_) => {
                self.metrics().rpc_timeouts.inc();
                Ok(Status::deadline_exceeded(format!("the authority did not finish within {deadline:?}")).into_http())
            }
        }
    }

    async fn admit_and_call<S>(
        self: Arc<Self>,
        mut inner: S,
        req: http::Request<Body>,
        ticket: Ticket,
    ) -> Result<S::Response, S::Error>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>>,
    {
        let req = if req.uri().path().starts_with(TALLY_PREFIX) {
            match self.read(req).await {
                Ok(req) => req,
                Err(status) => return Ok(status.into_http()),
            }
        } else {
            req
        };
        let _slot = match ticket {
            Ticket::Authenticated => match self.slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    self.metrics().shed.inc();
                    let status = Status::unavailable(format!(
                        "authority overloaded: {} requests in flight; retry with backoff",
                        self.limits.max_in_flight
                    ));
                    return Ok(status.into_http());
                }
            },
            // Its budget is held already, and dropped with the ticket.
            Ticket::Anonymous { .. } => None,
        };
        let _ticket = ticket;
        let _in_flight = Raised::enter(&self.metrics().in_flight);
        inner.call(req).await
    }

    /// The request with its whole body read (within the read deadline and
    /// the message bound), so the handler gets a complete request.
    async fn read(&self, req: http::Request<Body>) -> Result<http::Request<Body>, Status> {
        let _reading = Raised::enter(&self.metrics().reading);
        let (parts, body) = req.into_parts();
        let limit = MAX_MESSAGE_BYTES + FRAME_BYTES;
        let timeout = self.limits.read_timeout;
        let body = match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(Status::out_of_range(format!("request larger than {limit} bytes")));
            }
            Ok(Err(_)) => return Err(Status::cancelled("the request ended before its message arrived")),
            Err(_) => {
                self.metrics().read_timeouts.inc();
                return Err(Status::deadline_exceeded(format!(
                    "the request's message did not arrive within {timeout:?}"
                )));
            }
        };
        Ok(http::Request::from_parts(parts, Body::new(Full::new(body))))
    }
}

/// The peer of a request's connection, plain or TLS.
fn connection_peer(req: &http::Request<Body>) -> Option<SocketAddr> {
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| ext.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|t| t.get_ref().remote_addr()))
}

/// The client a request comes from, as its address (IPv4-mapped IPv6 as
/// IPv4; other IPv6 addresses by their /64, which one subscriber usually
/// holds whole); unknown transports and in-process callers share one key.
pub(crate) fn client_key(peer: Option<SocketAddr>) -> IpAddr {
    match peer.map(|a| a.ip().to_canonical()) {
        Some(IpAddr::V6(v6)) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        Some(v4) => v4,
        None => IpAddr::from([0, 0, 0, 0]),
    }
}

/// One anonymous request's share of its client's allowance; the count is
/// given back on drop, and a client with none left is forgotten, so the map
/// holds only clients with requests admitted.
struct ClientShare {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl ClientShare {
    fn take(map: &Arc<Mutex<HashMap<IpAddr, usize>>>, client: IpAddr, max: usize) -> Option<Self> {
        let mut counts = map.lock().expect("client map lock");
        let count = counts.entry(client).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self { map: map.clone(), client })
    }
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        let mut counts = self.map.lock().expect("client map lock");
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// A gauge raised by one while held.
struct Raised<'a>(&'a Gauge);

impl<'a> Raised<'a> {
    fn enter(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_and_is_forgotten_when_done() {
        let map = Arc::default();
        let client = IpAddr::from([10, 0, 0, 1]);
        let first = ClientShare::take(&map, client, 2).unwrap();
        let second = ClientShare::take(&map, client, 2).unwrap();
        assert!(ClientShare::take(&map, client, 2).is_none(), "past the share");
        assert!(ClientShare::take(&map, IpAddr::from([10, 0, 0, 2]), 2).is_some(), "another client has its own");
        drop(first);
        let third = ClientShare::take(&map, client, 2).unwrap();
        drop((second, third));
        assert!(map.lock().unwrap().is_empty(), "no client with nothing admitted is remembered");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let key = |addr: &str| {
            let mut req = http::Request::new(Body::empty());
            let addr: SocketAddr = addr.parse().unwrap();
            req.extensions_mut().insert(TcpConnectInfo { local_addr: None, remote_addr: Some(addr) });
            client_key(connection_peer(&req))
        };
        assert_eq!(key("[2001:db8:1:2:aaaa::1]:5"), key("[2001:db8:1:2:bbbb::9]:7"));
        assert_ne!(key("[2001:db8:1:2::1]:5"), key("[2001:db8:1:3::1]:5"));
        assert_eq!(key("[::ffff:10.1.2.3]:5"), IpAddr::from([10, 1, 2, 3]));
        assert_eq!(key("10.1.2.3:5"), IpAddr::from([10, 1, 2, 3]));
        assert_eq!(client_key(connection_peer(&http::Request::new(Body::empty()))), IpAddr::from([0, 0, 0, 0]));
    }
}
