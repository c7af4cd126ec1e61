//! The verifier's counters and their Prometheus text rendering.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tally_proto::metrics_http::sample;
use tally_proto::telemetry::{Histogram, RpcMetrics, header};

use crate::outcome::{Outcome, Source};
use crate::verifier::Verifier;

/// Counters bumped by the check and stream paths.
#[derive(Debug)]
pub struct Counters {
    /// Latency per served RPC (Check, Status, ext_authz), recorded by the server's `RpcLayer`.
    pub rpc: Arc<RpcMetrics>,
    /// Latency of the Verify calls made to the authority.
    pub verify_latency: Histogram,
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    pub cache_hits: AtomicU64,
    /// Cache hits answered by the token memo (a subset of `cache_hits`).
    pub memo_hits: AtomicU64,
    pub descendant_hits: AtomicU64,
    pub negative_hits: AtomicU64,
    pub local: AtomicU64,
    pub authority_answers: AtomicU64,
    pub authority_verifies: AtomicU64,
    /// Checks denied because `max_authority_calls` Verify calls were in flight.
    pub authority_shed: AtomicU64,
    /// Checks denied because the breaker was open (the authority out of reach).
    pub authority_breaker: AtomicU64,
    pub revocations_applied: AtomicU64,
    /// Check-port connections whose TLS handshake failed (shared with the accept loop).
    pub tls_refused: Arc<AtomicU64>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            rpc: Arc::new(RpcMetrics::for_services(&["tally.v1.Verifier", "envoy.service.auth.v3.Authorization"])),
            verify_latency: Histogram::default(),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            memo_hits: AtomicU64::new(0),
            descendant_hits: AtomicU64::new(0),
            negative_hits: AtomicU64::new(0),
            local: AtomicU64::new(0),
            authority_answers: AtomicU64::new(0),
            authority_verifies: AtomicU64::new(0),
            authority_shed: AtomicU64::new(0),
            authority_breaker: AtomicU64::new(0),
            revocations_applied: AtomicU64::new(0),
            tls_refused: Arc::default(),
        }
    }
}

impl Counters {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, o: &Outcome) {
        Self::bump(if o.allowed { &self.allowed } else { &self.denied });
        Self::bump(match o.source {
            Source::Cache => &self.cache_hits,
            Source::Descendant => &self.descendant_hits,
            Source::NegativeCache => &self.negative_hits,
            Source::Authority => &self.authority_answers,
            Source::Local => &self.local,
        });
    }
}

impl Verifier {
    /// Verify calls made to the authority.
    pub fn authority_verifies(&self) -> u64 {
        self.counters.authority_verifies.load(Ordering::Relaxed)
    }

    /// Checks denied at once because the most Verify calls were in flight.
    pub fn authority_shed(&self) -> u64 {
        self.counters.authority_shed.load(Ordering::Relaxed)
    }

    /// Latency histograms per served RPC (what the server layer records into).
    pub fn rpc_metrics(&self) -> Arc<RpcMetrics> {
        self.counters.rpc.clone()
    }

    /// Prometheus text exposition.
    pub fn render_metrics(&self) -> String {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let pos = self.sync.position();
        let mut out = String::new();
        let checks = [("allowed", load(&c.allowed)), ("denied", load(&c.denied))];
        out.push_str("# HELP tally_verifier_checks_total Checks answered, by outcome.\n# TYPE tally_verifier_checks_total counter\n");
        for (outcome, n) in checks {
            out.push_str(&format!("tally_verifier_checks_total{{outcome=\"{outcome}\"}} {n}\n"));
        }
        out.push_str("# HELP tally_verifier_answers_total Checks answered, by source.\n# TYPE tally_verifier_answers_total counter\n");
        for (source, n) in [
            ("cache", load(&c.cache_hits)),
            ("descendant", load(&c.descendant_hits)),
            ("negative_cache", load(&c.negative_hits)),
            ("authority", load(&c.authority_answers)),
            ("local", load(&c.local)),
        ] {
            out.push_str(&format!("tally_verifier_answers_total{{source=\"{source}\"}} {n}\n"));
        }
        sample(
            &mut out,
            "tally_verifier_memo_hits_total",
            "counter",
            "Cache answers given by the token memo (tokens presented again), without decoding.",
            load(&c.memo_hits),
        );
        sample(
            &mut out,
            "tally_verifier_authority_verifies_total",
            "counter",
            "Verify calls made to the authority.",
            load(&c.authority_verifies),
        );
        sample(
            &mut out,
            "tally_verifier_authority_shed_total",
            "counter",
            "Checks denied at once (authority unavailable) because the most Verify calls were in flight.",
            load(&c.authority_shed),
        );
        sample(
            &mut out,
            "tally_verifier_authority_breaker_total",
            "counter",
            "Checks denied at once (authority unavailable) because the last Verify calls failed to reach the authority.",
            load(&c.authority_breaker),
        );
        sample(
            &mut out,
            "tally_verifier_revocations_applied_total",
            "counter",
            "Revocations applied from the stream.",
            load(&c.revocations_applied),
        );
        sample(&mut out, "tally_verifier_cache_entries", "gauge", "Cached prefixes.", self.cache.len());
        sample(
            &mut out,
            "tally_verifier_revoked_ids",
            "gauge",
            "Revoked ids and keys held as a deny list.",
            self.revoked.len(),
        );
        sample(
            &mut out,
            "tally_verifier_cache_evictions_total",
            "counter",
            "Entries evicted for capacity.",
            self.cache.evictions(),
        );
        sample(&mut out, "tally_verifier_applied_seq", "gauge", "Last applied revocation seq.", pos.applied_seq);
        sample(
            &mut out,
            "tally_verifier_stream_lag",
            "gauge",
            "Head seq seen minus applied seq.",
            pos.head_seen.saturating_sub(pos.applied_seq),
        );
        let age = self.sync.silence().map_or(-1.0, |d| d.as_secs_f64());
        sample(
            &mut out,
            "tally_verifier_last_contact_age_seconds",
            "gauge",
            "Seconds since the authority was last heard from.",
            age,
        );
        sample(
            &mut out,
            "tally_verifier_fail_closed",
            "gauge",
            "1 while failing closed.",
            u8::from(self.sync.fail_closed()),
        );
        sample(
            &mut out,
            "tally_verifier_resets_total",
            "counter",
            "Cache flushes on reset, epoch change or gap.",
            self.sync.resets(),
        );
        sample(
            &mut out,
            "tally_verifier_tls_handshakes_refused_total",
            "counter",
            "Check-port connections whose TLS handshake failed or timed out.",
            load(&c.tls_refused),
        );
        let verify = "tally_verifier_authority_verify_duration_seconds";
        header(&mut out, verify, "Round trip of the Verify calls made to the authority (answered or failed).");
        c.verify_latency.render(&mut out, verify, "");
        c.rpc.render(&mut out, "tally_verifier_rpc_duration_seconds", "Time to answer an RPC, by method.");
        out
    }
}
