//! Prometheus metrics of the daemons, on `prometheus-client`: each service
//! instance registers its metrics in a `Registry` of its own (no global one,
//! so several services in one test process count apart), which [`serve`]
//! answers scrapes with in Prometheus' text format (0.0.4).
//!
//! prometheus-client's naming, which keeps the names the services always
//! had: a counter is registered without its `_total` suffix (the encoder
//! adds it, on the HELP and TYPE lines too), and the registry ends each help
//! text with a period (a collector's help is written as given).

mod http;

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

pub use http::{CONNECTION_TIMEOUT, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD_BYTES, serve};

/// Bucket upper bounds, in seconds, of every latency histogram: 50 µs to
/// 10 s, roughly 1-2.5-5 per decade.
pub const LATENCY_BUCKETS: [f64; 17] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram (seconds) with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Serves `registry` on `listener` in a task of its own until `shutdown`,
/// after saying where on stdout (scripts and tests that pass port 0 read it).
pub fn spawn(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    println!("metrics on {}", listener.local_addr()?);
    tokio::spawn(serve(listener, Arc::new(registry), async move { shutdown.cancelled().await }));
    Ok(())
}

/// Everything in `registry`, in Prometheus' text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String fails only if an encoder does, and none of the
    // services' metrics does: an error would leave a partial text.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "metrics: encoding failed");
    }
    out
}

/// A metric's series told apart by one label whose values are fixed when it
/// is made: unlike prometheus-client's `Family`, recording takes no lock and
/// finds no map (the callers hold each series' handle, or an index), and a
/// scrape lists the series in the order given.
#[derive(Debug, Clone)]
pub struct Labelled<M> {
    label: &'static str,
    series: Arc<[(String, M)]>,
}

impl<M> Labelled<M> {
    /// Series `(label value, metric)` under the label `label`.
    pub fn new(label: &'static str, series: impl IntoIterator<Item = (String, M)>) -> Self {
        Self { label, series: series.into_iter().collect() }
    }

    /// The series, in their order.
    pub fn series(&self) -> &[(String, M)] {
        &self.series
    }
}

impl<M: EncodeMetric + TypedMetric> EncodeMetric for Labelled<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        for (value, metric) in self.series.iter() {
            metric.encode(encoder.encode_family(&[(self.label, value.as_str())])?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

impl<M: TypedMetric> TypedMetric for Labelled<M> {
    const TYPE: MetricType = M::TYPE;
}

/// Metrics read from a service's state at each scrape: `snapshot` takes the
/// state (`None`: the service is gone, nothing to show) and `write` encodes
/// it with [`collect_counter`] and [`collect_gauge`].
pub struct Scraped<F, W> {
    snapshot: F,
    write: W,
}

impl<F, W> Scraped<F, W> {
    /// A collector of `write(snapshot())`.
    pub fn new(snapshot: F, write: W) -> Self {
        Self { snapshot, write }
    }
}

impl<F, W> fmt::Debug for Scraped<F, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scraped")
    }
}

impl<S, F, W> prometheus_client::collector::Collector for Scraped<F, W>
where
    F: Fn() -> Option<S> + Send + Sync + 'static,
    W: Fn(&mut DescriptorEncoder, S) -> fmt::Result + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        match (self.snapshot)() {
            Some(state) => (self.write)(&mut encoder, state),
            None => Ok(()),
        }
    }
}

/// Writes a counter read at scrape time (for a collector): `name` without
/// its `_total`, `help` as it is shown.
pub fn collect_counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// Writes a gauge read at scrape time (for a collector).
pub fn collect_gauge<N>(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> fmt::Result
where
    N: EncodeGaugeValue + fmt::Debug,
{
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::collector::Collector;
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[derive(Debug)]
    struct Sizes;

    impl Collector for Sizes {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            collect_counter(&mut encoder, "x_evictions", "Evicted.", 7)?;
            collect_gauge(&mut encoder, "x_entries", "Entries.", 3i64)?;
            collect_gauge(&mut encoder, "x_age_seconds", "Age.", -1.0f64)
        }
    }

    #[test]
    fn names_help_and_samples_are_those_the_services_always_had() {
        let mut registry = Registry::default();
        let hits = Counter::<u64>::default();
        registry.register("x_hits", "Hits", hits.clone());
        let outcome = Labelled::new("outcome", [("allowed".to_owned(), Counter::<u64>::default())]);
        outcome.series()[0].1.inc_by(2);
        registry.register("x_checks", "Checks, by outcome", outcome);
        registry.register_collector(Box::new(Sizes));
        hits.inc();
        let text = encode(&registry);
        for line in [
            "# HELP x_hits_total Hits.\n# TYPE x_hits_total counter\nx_hits_total 1\n",
            "# HELP x_checks_total Checks, by outcome.\n# TYPE x_checks_total counter\nx_checks_total{outcome=\"allowed\"} 2\n",
            "# HELP x_evictions_total Evicted.\n# TYPE x_evictions_total counter\nx_evictions_total 7\n",
            "# HELP x_entries Entries.\n# TYPE x_entries gauge\nx_entries 3\n",
            "x_age_seconds -1",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_counts_everything() {
        let mut registry = Registry::default();
        let h = Labelled::new("method", [("M".to_owned(), latency_histogram())]);
        registry.register("x_seconds", "Latency", h.clone());
        for us in [10, 60, 60, 2_000, 20_000_000] {
            h.series()[0].1.observe(Duration::from_micros(us).as_secs_f64());
        }
        let out = encode(&registry);
        let line = |le: &str| {
            let prefix = format!("x_seconds_bucket{{method=\"M\",le=\"{le}\"}} ");
            out.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {le} in {out}")).to_owned()
        };
        assert_eq!(line("5e-05"), "1");
        assert_eq!(line("0.0001"), "3");
        assert_eq!(line("0.0025"), "4");
        assert_eq!(line("10"), "4");
        assert_eq!(line("+Inf"), "5");
        assert!(out.contains("x_seconds_count{method=\"M\"} 5\n"), "{out}");
        let sum: f64 =
            out.lines().find_map(|l| l.strip_prefix("x_seconds_sum{method=\"M\"} ")).unwrap().parse().unwrap();
        assert!((sum - 20.00213).abs() < 1e-9, "{sum}");
    }
}
