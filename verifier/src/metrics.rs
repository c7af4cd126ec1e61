//! The verifier's metrics: what the check and stream paths record, and the
//! state read at each scrape, registered in the registry a running verifier
//! serves on `--metrics-listen`. A leaf: the rest of the crate records into
//! these and hands over the state; nothing here reads the verifier.

use std::fmt;
use std::time::Duration;

use crate::outcome::Source;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tally_service::metrics::{Labelled, Scraped, collect_counter, collect_gauge, latency_histogram};
use tally_service::telemetry::RpcMetrics;

/// What the check and stream paths record. A clone of a metric shares its value.
#[derive(Debug)]
pub struct Metrics {
    /// Latency per served RPC (Check, Status, ext_authz), recorded by the server's `RpcLayer`.
    pub rpc: RpcMetrics,
    /// Latency of the Verify calls made to the authority.
    pub verify_latency: Histogram,
    pub allowed: Counter,
    pub denied: Counter,
    pub cache_hits: Counter,
    /// Cache hits answered by the token memo (a subset of `cache_hits`).
    pub memo_hits: Counter,
    pub descendant_hits: Counter,
    pub negative_hits: Counter,
    pub local: Counter,
    pub authority_answers: Counter,
    pub authority_verifies: Counter,
    /// Checks denied because `max_authority_calls` Verify calls were in flight.
    pub authority_shed: Counter,
    /// Checks denied because the breaker was open (the authority out of reach).
    pub authority_breaker: Counter,
    pub revocations_applied: Counter,
    /// Check-port connections whose TLS handshake failed (the accept loop counts them).
    pub tls_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            rpc: RpcMetrics::for_services(&["tally.v1.Verifier", "envoy.service.auth.v3.Authorization"]),
            verify_latency: latency_histogram(),
            allowed: Counter::default(),
            denied: Counter::default(),
            cache_hits: Counter::default(),
            memo_hits: Counter::default(),
            descendant_hits: Counter::default(),
            negative_hits: Counter::default(),
            local: Counter::default(),
            authority_answers: Counter::default(),
            authority_verifies: Counter::default(),
            authority_shed: Counter::default(),
            authority_breaker: Counter::default(),
            revocations_applied: Counter::default(),
            tls_refused: Counter::default(),
        }
    }
}

/// The verifier's state at a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub cache_entries: usize,
    pub revoked_ids: usize,
    pub cache_evictions: u64,
    pub applied_seq: u64,
    pub stream_lag: u64,
    /// Time since the authority was last heard from (`None`: never).
    pub last_contact_age: Option<Duration>,
    pub fail_closed: bool,
    pub resets: u64,
    /// Position in `--authority` of the authority in use (0: the preferred).
    pub authority_in_use: usize,
}

impl Metrics {
    /// Counts one answered check.
    pub fn count(&self, allowed: bool, source: Source) {
        if allowed { &self.allowed } else { &self.denied }.inc();
        match source {
            Source::Cache => &self.cache_hits,
            Source::Descendant => &self.descendant_hits,
            Source::NegativeCache => &self.negative_hits,
            Source::Authority => &self.authority_answers,
            Source::Local => &self.local,
        }
        .inc();
    }

    /// Registers every metric in `registry`, the state as `snapshot` reads it
    /// at each scrape (`None`: the verifier is gone, nothing to show).
    /// Names are those of the text format less a counter's `_total`; the
    /// registry ends each help with a period.
    pub fn register(&self, registry: &mut Registry, snapshot: impl Fn() -> Option<Snapshot> + Send + Sync + 'static) {
        let outcomes = [("allowed", &self.allowed), ("denied", &self.denied)];
        let checks = Labelled::new("outcome", outcomes.map(|(o, c)| (o.to_owned(), c.clone())));
        registry.register("tally_verifier_checks", "Checks answered, by outcome", checks);
        let sources = [
            ("cache", &self.cache_hits),
            ("descendant", &self.descendant_hits),
            ("negative_cache", &self.negative_hits),
            ("authority", &self.authority_answers),
            ("local", &self.local),
        ];
        let answers = Labelled::new("source", sources.map(|(s, c)| (s.to_owned(), c.clone())));
        registry.register("tally_verifier_answers", "Checks answered, by source", answers);
        let counters = [
            (
                "tally_verifier_memo_hits",
                "Cache answers given by the token memo (tokens presented again), without decoding",
                &self.memo_hits,
            ),
            ("tally_verifier_authority_verifies", "Verify calls made to the authority", &self.authority_verifies),
            (
                "tally_verifier_authority_shed",
                "Checks denied at once (authority unavailable) because the most Verify calls were in flight",
                &self.authority_shed,
            ),
            (
                "tally_verifier_authority_breaker",
                "Checks denied at once (authority unavailable) because the last Verify calls failed to reach the authority",
                &self.authority_breaker,
            ),
            ("tally_verifier_revocations_applied", "Revocations applied from the stream", &self.revocations_applied),
            (
                "tally_verifier_tls_handshakes_refused",
                "Check-port connections whose TLS handshake failed or timed out",
                &self.tls_refused,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "tally_verifier_authority_verify_duration_seconds",
            "Round trip of the Verify calls made to the authority (answered or failed)",
            self.verify_latency.clone(),
        );
        self.rpc.register(registry, "tally_verifier_rpc_duration_seconds", "Time to answer an RPC, by method");
        registry.register_collector(Box::new(Scraped::new(snapshot, write_state)));
    }
}

/// The state metrics, read at each scrape.
fn write_state(e: &mut DescriptorEncoder, s: Snapshot) -> fmt::Result {
    collect_gauge(e, "tally_verifier_cache_entries", "Cached prefixes.", s.cache_entries)?;
    collect_gauge(e, "tally_verifier_revoked_ids", "Revoked ids and keys held as a deny list.", s.revoked_ids)?;
    collect_counter(e, "tally_verifier_cache_evictions", "Entries evicted for capacity.", s.cache_evictions)?;
    collect_gauge(e, "tally_verifier_applied_seq", "Last applied revocation seq.", s.applied_seq)?;
    collect_gauge(e, "tally_verifier_stream_lag", "Head seq seen minus applied seq.", s.stream_lag)?;
    let age = s.last_contact_age.map_or(-1.0, |d| d.as_secs_f64());
    collect_gauge(
        e,
        "tally_verifier_last_contact_age_seconds",
        "Seconds since the authority was last heard from.",
        age,
    )?;
    collect_gauge(e, "tally_verifier_fail_closed", "1 while failing closed.", i64::from(s.fail_closed))?;
    collect_gauge(
        e,
        "tally_verifier_authority_in_use",
        "Position in --authority of the authority in use (0: the first, preferred).",
        s.authority_in_use,
    )?;
    collect_counter(e, "tally_verifier_resets", "Cache flushes on reset, epoch change or gap.", s.resets)
}
