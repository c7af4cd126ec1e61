//! A tower layer for tonic servers: per RPC, the OpenTelemetry server span
//! (child of the caller's W3C trace context, only while exporting) and a
//! latency sample in the method's histogram. Method labels come from the
//! services' descriptors, so hostile paths cannot mint new series: anything
//! else is counted as `other`.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use prost::Message;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, Span};

use super::otel;
use crate::metrics::{Labelled, latency_histogram};

/// `(service, /service/method)` of every method in tally-proto's descriptor
/// sets, decoded once per process (a verifier or authority built per test or
/// fuzz input must not decode them again).
static METHODS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let mut methods = Vec::new();
    for set in [tally_proto::FILE_DESCRIPTOR_SET, tally_proto::ENVOY_FILE_DESCRIPTOR_SET] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else { continue };
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                methods.extend(service.method.iter().map(|m| (full.clone(), format!("/{full}/{}", m.name()))));
            }
        }
    }
    methods
});

/// One latency histogram per method of the served services, and one for
/// any other path (`other`). Clones share the histograms.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    /// Labelled `package.Service/Method`, sorted; `other` last.
    methods: Labelled<Histogram>,
}

/// The label of requests to no known method.
const OTHER: &str = "other";

impl RpcMetrics {
    /// Histograms for every method of `services` (full names such as
    /// `tally.v1.Authority`, from tally-proto's descriptor sets).
    pub fn for_services(services: &[&str]) -> Self {
        let mut methods: Vec<String> = METHODS
            .iter()
            .filter(|(service, _)| services.contains(&service.as_str()))
            .map(|(_, path)| path[1..].to_owned())
            .collect();
        methods.sort();
        methods.push(OTHER.to_owned());
        Self { methods: Labelled::new("method", methods.into_iter().map(|m| (m, latency_histogram()))) }
    }

    /// Registers the histograms in `registry` as `name`, labelled `method`.
    pub fn register(&self, registry: &mut Registry, name: &str, help: &str) {
        registry.register(name, help, self.methods.clone());
    }

    /// The histogram slot of a request path (`/package.Service/Method`);
    /// `None`: not a known method.
    fn slot(&self, path: &str) -> Option<usize> {
        let known = &self.methods.series()[..self.methods.series().len() - 1];
        let method = path.strip_prefix('/')?;
        known.binary_search_by(|(m, _)| m.as_str().cmp(method)).ok()
    }

    /// The method name of a slot.
    fn method(&self, slot: usize) -> &str {
        &self.methods.series()[slot].0
    }

    fn histogram(&self, slot: Option<usize>) -> &Histogram {
        let series = self.methods.series();
        &series[slot.unwrap_or(series.len() - 1)].1
    }
}

/// Wraps a tonic server's routes: see the module docs.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: RpcMetrics,
}

impl RpcLayer {
    /// Records into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner, metrics: self.metrics.clone() }
    }
}

/// The service [`RpcLayer`] makes.
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, B, R> Service<http::Request<B>> for RpcService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let slot = self.metrics.slot(req.uri().path());
        let span = match slot {
            Some(i) if otel::enabled() => {
                let method = self.metrics.method(i);
                let span = tracing::info_span!(
                    "rpc",
                    otel.name = method,
                    otel.kind = "server",
                    rpc.system = "grpc",
                    rpc.method = method,
                );
                otel::set_parent(&span, req.headers());
                span
            }
            _ => Span::none(),
        };
        let start = Instant::now();
        let future = span.in_scope(|| self.inner.call(req));
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                let response = future.await;
                metrics.histogram(slot).observe(start.elapsed().as_secs_f64());
                response
            }
            .instrument(span),
        )
    }
}
