//! Overload protection in front of every authority RPC, as a tower layer on
//! the gRPC server: a cap on requests in flight across all connections (a
//! storm of verifiers opens many), beyond which a request is answered
//! UNAVAILABLE at once instead of queueing; and a per-RPC deadline
//! (DEADLINE_EXCEEDED). A streaming call (Subscribe) holds its slot and its
//! deadline only until its response starts: the stream itself is neither
//! timed nor counted here; streams have their own cap
//! (`Settings::max_subscribers`). Health checks pass untouched, so an
//! overloaded authority is not also restarted by its probes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use crate::authority::Authority;
use crate::metrics::Counters;

/// Requests in flight at once, across all connections.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Longest a unary call (or a stream's setup) may take.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Paths exempt from the limits.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The server's request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight at once; more are answered UNAVAILABLE.
    pub max_in_flight: usize,
    /// Deadline of each call.
    pub rpc_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_in_flight: DEFAULT_MAX_IN_FLIGHT, rpc_timeout: DEFAULT_RPC_TIMEOUT }
    }
}

/// The layer; one semaphore shared by every connection's service.
#[derive(Debug, Clone)]
pub(crate) struct LimitLayer {
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    timeout: Duration,
    authority: Arc<Authority>,
}

impl LimitLayer {
    pub(crate) fn new(limits: Limits, authority: Arc<Authority>) -> Self {
        let max_in_flight = limits.max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Self { slots: Arc::new(Semaphore::new(max_in_flight)), max_in_flight, timeout: limits.rpc_timeout, authority }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited { inner, limits: self.clone() }
    }
}

/// The service the layer makes.
#[derive(Debug, Clone)]
pub(crate) struct Limited<S> {
    inner: S,
    limits: LimitLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> Service<http::Request<B>> for Limited<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Call the service that was polled ready; keep a clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if req.uri().path().starts_with(HEALTH_PREFIX) {
            return Box::pin(inner.call(req));
        }
        let Ok(slot) = self.limits.slots.clone().try_acquire_owned() else {
            Counters::bump(&self.limits.authority.counters.shed);
            let status = Status::unavailable(format!(
                "authority overloaded: {} requests in flight; retry with backoff",
                self.limits.max_in_flight
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let (timeout, authority) = (self.limits.timeout, self.limits.authority.clone());
        let slot = Slot::taken(slot, authority.clone());
        Box::pin(async move {
            let _slot = slot;
            match tokio::time::timeout(timeout, inner.call(req)).await {
                Ok(answer) => answer,
                Err(_) => {
                    Counters::bump(&authority.counters.rpc_timeouts);
                    let status = Status::deadline_exceeded(format!("the authority did not finish within {timeout:?}"));
                    Ok(status.into_http())
                }
            }
        })
    }
}

/// A held slot, counted in the in-flight gauge until dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    authority: Arc<Authority>,
}

impl Slot {
    fn taken(permit: OwnedSemaphorePermit, authority: Arc<Authority>) -> Self {
        authority.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { _permit: permit, authority }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.authority.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
