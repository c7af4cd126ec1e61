//! The authority's metrics: what the request paths and the writer record,
//! and the state read at each scrape, registered in the registry a running
//! authority serves on `--metrics-listen`. A leaf: the rest of the crate
//! records into these and hands over the state; nothing here reads the
//! authority.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tally_service::metrics::{Scraped, collect_counter, collect_gauge, latency_histogram};
use tally_service::telemetry::RpcMetrics;

/// What the request paths record. A clone of a metric shares its value.
#[derive(Debug)]
pub struct Metrics {
    pub verify: Counter,
    pub mint: Counter,
    pub revoke: Counter,
    pub refused: Counter,
    /// Latency per RPC, recorded by the server's `RpcLayer`.
    pub rpc: RpcMetrics,
    /// Requests being handled now (their message read and admitted).
    pub in_flight: Gauge,
    /// Requests whose message is being read now.
    pub reading: Gauge,
    /// Requests refused at admission (no slot, or a client's anonymous share used up).
    pub shed: Counter,
    /// Requests that ran past the per-RPC timeout.
    pub rpc_timeouts: Counter,
    /// Requests whose message did not arrive within the read timeout.
    pub read_timeouts: Counter,
    /// Anonymous Revoke calls refused by the per-address rate limit.
    pub rate_limited: Counter,
    /// Subscribe calls refused at the subscriber cap.
    pub subscribe_refused: Counter,
    /// Registry look-ups (Revoke by family) the remembered rows could not answer.
    pub registry_reads: Counter,
    /// Connections whose TLS handshake failed or timed out (the accept loop counts them).
    pub tls_refused: Counter,
    /// Time of each group commit; the writer records into a clone.
    pub commit_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            verify: Counter::default(),
            mint: Counter::default(),
            revoke: Counter::default(),
            refused: Counter::default(),
            rpc: RpcMetrics::for_services(&["tally.v1.Authority"]),
            in_flight: Gauge::default(),
            reading: Gauge::default(),
            shed: Counter::default(),
            rpc_timeouts: Counter::default(),
            read_timeouts: Counter::default(),
            rate_limited: Counter::default(),
            subscribe_refused: Counter::default(),
            registry_reads: Counter::default(),
            tls_refused: Counter::default(),
            commit_duration: latency_histogram(),
        }
    }
}

/// The authority's state at a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub log_head_seq: u64,
    pub log_retained_from: u64,
    pub subscribers: u64,
    pub fanout_catchups: u64,
    pub commits: u64,
    pub committed_changes: u64,
}

impl Metrics {
    /// Registers every metric in `registry`, the state as `snapshot` reads it
    /// at each scrape (`None`: the authority is gone, nothing to show).
    /// Names are those of the text format less a counter's `_total`; the
    /// registry ends each help with a period.
    pub fn register(&self, registry: &mut Registry, snapshot: impl Fn() -> Option<Snapshot> + Send + Sync + 'static) {
        let counters = [
            ("tally_authority_verify", "Verify calls served", &self.verify),
            ("tally_authority_mint", "Tokens minted", &self.mint),
            ("tally_authority_revoke", "Revoke calls that committed", &self.revoke),
            ("tally_authority_refused", "Requests refused by authorization", &self.refused),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "tally_authority_in_flight",
            "Requests being handled, their message read (health checks not counted)",
            self.in_flight.clone(),
        );
        registry.register("tally_authority_reading", "Requests whose message is being read", self.reading.clone());
        let counters = [
            (
                "tally_authority_shed",
                "Requests refused at admission: UNAVAILABLE when no slot was free, RESOURCE_EXHAUSTED when one address had too many requests without credentials",
                &self.shed,
            ),
            (
                "tally_authority_read_timeouts",
                "Requests whose message did not arrive within the read timeout (DEADLINE_EXCEEDED)",
                &self.read_timeouts,
            ),
            (
                "tally_authority_rate_limited",
                "Anonymous Revoke calls refused by the per-address rate limit (RESOURCE_EXHAUSTED)",
                &self.rate_limited,
            ),
            (
                "tally_authority_rpc_timeouts",
                "Requests that ran past the per-RPC timeout (DEADLINE_EXCEEDED)",
                &self.rpc_timeouts,
            ),
            (
                "tally_authority_subscribe_refused",
                "Subscribe calls refused at the subscriber cap (RESOURCE_EXHAUSTED)",
                &self.subscribe_refused,
            ),
            (
                "tally_authority_tls_handshakes_refused",
                "Connections whose TLS handshake failed or timed out",
                &self.tls_refused,
            ),
            (
                "tally_authority_registry_reads",
                "Revoke-by-family look-ups the memory of recent mints could not answer, each a database read (families minted long ago, or never)",
                &self.registry_reads,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "tally_authority_commit_duration_seconds",
            "Time the single writer took for each group commit counted in tally_authority_commits_total, from BEGIN to the end of COMMIT (its fsync included)",
            self.commit_duration.clone(),
        );
        self.rpc.register(
            registry,
            "tally_authority_rpc_duration_seconds",
            "Time to answer an RPC, by method (Subscribe: to open the stream)",
        );
        registry.register_collector(Box::new(Scraped::new(snapshot, write_state)));
    }
}

/// The state metrics, read at each scrape.
fn write_state(e: &mut DescriptorEncoder, s: Snapshot) -> fmt::Result {
    collect_gauge(e, "tally_authority_log_head_seq", "Last revocation sequence number.", s.log_head_seq)?;
    collect_gauge(e, "tally_authority_log_retained_from", "Oldest retained revocation seq.", s.log_retained_from)?;
    collect_gauge(e, "tally_authority_subscribers", "Revocation stream subscribers connected.", s.subscribers)?;
    collect_counter(
        e,
        "tally_authority_fanout_catchups",
        "Subscribers that caught up from the database.",
        s.fanout_catchups,
    )?;
    collect_counter(e, "tally_authority_commits", "Group commits of the single writer (one fsync each).", s.commits)?;
    collect_counter(
        e,
        "tally_authority_committed_changes",
        "Requests to the writer those commits carried (revocations, mints, audit rows, key changes; one that failed in its savepoint too); divided by commits, the mean group size.",
        s.committed_changes,
    )
}
