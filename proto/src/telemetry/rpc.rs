//! A tower layer for tonic servers: per RPC, the OpenTelemetry server span
//! (child of the caller's W3C trace context, only while exporting) and a
//! latency sample in the method's histogram. Method labels come from the
//! services' descriptors, so hostile paths cannot mint new series: anything
//! else is counted as `other`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use prost::Message;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, Span};

use super::histogram::{Histogram, header};
use super::otel;

/// `(service, /service/method)` of every method in this crate's descriptor
/// sets, decoded once per process (a verifier or authority built per test or
/// fuzz input must not decode them again).
static METHODS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let mut methods = Vec::new();
    for set in [crate::FILE_DESCRIPTOR_SET, crate::ENVOY_FILE_DESCRIPTOR_SET] {
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

/// One latency histogram per method of the served services.
#[derive(Debug)]
pub struct RpcMetrics {
    /// `(path, histogram)` sorted by path (`/package.Service/Method`).
    methods: Vec<(String, Histogram)>,
    other: Histogram,
}

impl RpcMetrics {
    /// Histograms for every method of `services` (full names such as
    /// `tally.v1.Authority`, from this crate's descriptor sets).
    pub fn for_services(services: &[&str]) -> Self {
        let mut methods: Vec<(String, Histogram)> = METHODS
            .iter()
            .filter(|(service, _)| services.contains(&service.as_str()))
            .map(|(_, path)| (path.clone(), Histogram::default()))
            .collect();
        methods.sort_by(|a, b| a.0.cmp(&b.0));
        Self { methods, other: Histogram::default() }
    }

    /// The histogram slot for a request path (`None`: not a known method).
    fn slot(&self, path: &str) -> Option<usize> {
        self.methods.binary_search_by(|(p, _)| p.as_str().cmp(path)).ok()
    }

    fn histogram(&self, slot: Option<usize>) -> &Histogram {
        slot.map_or(&self.other, |i| &self.methods[i].1)
    }

    /// Calls recorded for a method (`package.Service/Method`), for tests and status pages.
    pub fn count(&self, method: &str) -> u64 {
        self.histogram(self.slot(&format!("/{method}"))).count()
    }

    /// Prometheus text: histogram `name` labelled `method="package.Service/Method"`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help);
        for (path, h) in &self.methods {
            h.render(out, name, &format!("method=\"{}\"", &path[1..]));
        }
        self.other.render(out, name, "method=\"other\"");
    }
}

/// Wraps a tonic server's routes: see the module docs.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: Arc<RpcMetrics>,
}

impl RpcLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<RpcMetrics>) -> Self {
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
    metrics: Arc<RpcMetrics>,
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
                let method = &self.metrics.methods[i].0[1..];
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
                metrics.histogram(slot).record(start.elapsed());
                response
            }
            .instrument(span),
        )
    }
}
