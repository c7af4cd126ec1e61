//! The authority's counters, rendered as Prometheus text on `--metrics-listen`.
//! Plain atomics: no global registry, so several authorities in one test
//! process count separately.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tally_proto::metrics_http::sample;
use tally_proto::telemetry::{RpcMetrics, header};

use crate::authority::Authority;

/// Counters bumped by the request paths.
#[derive(Debug)]
pub struct Counters {
    pub verify: AtomicU64,
    pub mint: AtomicU64,
    pub revoke: AtomicU64,
    pub refused: AtomicU64,
    /// Latency per RPC, recorded by the server's `RpcLayer`.
    pub rpc: Arc<RpcMetrics>,
    /// Requests being handled now (their message read and admitted).
    pub in_flight: AtomicU64,
    /// Requests whose message is being read now.
    pub reading: AtomicU64,
    /// Requests refused at admission (no slot, or a client's anonymous share used up).
    pub shed: AtomicU64,
    /// Requests that ran past the per-RPC timeout.
    pub rpc_timeouts: AtomicU64,
    /// Requests whose message did not arrive within the read timeout.
    pub read_timeouts: AtomicU64,
    /// Anonymous Revoke calls refused by the per-address rate limit.
    pub rate_limited: AtomicU64,
    /// Subscribe calls refused at the subscriber cap.
    pub subscribe_refused: AtomicU64,
    /// Registry look-ups (Revoke by family) the remembered rows could not answer.
    pub registry_reads: AtomicU64,
    /// Connections whose TLS handshake failed or timed out (shared with the accept loop).
    pub tls_refused: Arc<AtomicU64>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            verify: AtomicU64::new(0),
            mint: AtomicU64::new(0),
            revoke: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            rpc: Arc::new(RpcMetrics::for_services(&["tally.v1.Authority"])),
            in_flight: AtomicU64::new(0),
            reading: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            rpc_timeouts: AtomicU64::new(0),
            read_timeouts: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            subscribe_refused: AtomicU64::new(0),
            registry_reads: AtomicU64::new(0),
            tls_refused: Arc::default(),
        }
    }
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Authority {
    /// Latency histograms per RPC (what the server layer records into).
    pub fn rpc_metrics(&self) -> Arc<RpcMetrics> {
        self.counters.rpc.clone()
    }

    /// Verify calls served (any verdict).
    pub fn verify_count(&self) -> u64 {
        self.counters.verify.load(Ordering::Relaxed)
    }

    /// Revoke-by-family look-ups that read the registry from the database.
    pub fn registry_reads(&self) -> u64 {
        self.counters.registry_reads.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition of the authority's state and counters.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let head = self.head();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        sample(
            &mut out,
            "tally_authority_verify_total",
            "counter",
            "Verify calls served.",
            load(&self.counters.verify),
        );
        sample(&mut out, "tally_authority_mint_total", "counter", "Tokens minted.", load(&self.counters.mint));
        sample(
            &mut out,
            "tally_authority_revoke_total",
            "counter",
            "Revoke calls that committed.",
            load(&self.counters.revoke),
        );
        sample(
            &mut out,
            "tally_authority_refused_total",
            "counter",
            "Requests refused by authorization.",
            load(&self.counters.refused),
        );
        sample(
            &mut out,
            "tally_authority_in_flight",
            "gauge",
            "Requests being handled, their message read (health checks not counted).",
            load(&self.counters.in_flight),
        );
        sample(
            &mut out,
            "tally_authority_reading",
            "gauge",
            "Requests whose message is being read.",
            load(&self.counters.reading),
        );
        sample(
            &mut out,
            "tally_authority_shed_total",
            "counter",
            "Requests refused at admission: UNAVAILABLE when no slot was free, RESOURCE_EXHAUSTED when one address had too many requests without credentials.",
            load(&self.counters.shed),
        );
        sample(
            &mut out,
            "tally_authority_read_timeouts_total",
            "counter",
            "Requests whose message did not arrive within the read timeout (DEADLINE_EXCEEDED).",
            load(&self.counters.read_timeouts),
        );
        sample(
            &mut out,
            "tally_authority_rate_limited_total",
            "counter",
            "Anonymous Revoke calls refused by the per-address rate limit (RESOURCE_EXHAUSTED).",
            load(&self.counters.rate_limited),
        );
        sample(
            &mut out,
            "tally_authority_rpc_timeouts_total",
            "counter",
            "Requests that ran past the per-RPC timeout (DEADLINE_EXCEEDED).",
            load(&self.counters.rpc_timeouts),
        );
        sample(
            &mut out,
            "tally_authority_subscribe_refused_total",
            "counter",
            "Subscribe calls refused at the subscriber cap (RESOURCE_EXHAUSTED).",
            load(&self.counters.subscribe_refused),
        );
        sample(
            &mut out,
            "tally_authority_tls_handshakes_refused_total",
            "counter",
            "Connections whose TLS handshake failed or timed out.",
            load(&self.counters.tls_refused),
        );
        sample(&mut out, "tally_authority_log_head_seq", "gauge", "Last revocation sequence number.", head.seq);
        sample(
            &mut out,
            "tally_authority_log_retained_from",
            "gauge",
            "Oldest retained revocation seq.",
            head.retained_from,
        );
        sample(
            &mut out,
            "tally_authority_subscribers",
            "gauge",
            "Revocation stream subscribers connected.",
            self.subscribers(),
        );
        sample(
            &mut out,
            "tally_authority_fanout_catchups_total",
            "counter",
            "Subscribers that caught up from the database.",
            self.catch_ups(),
        );
        sample(
            &mut out,
            "tally_authority_registry_reads_total",
            "counter",
            "Revoke-by-family look-ups the memory of recent mints could not answer, each a database read (families minted long ago, or never).",
            self.registry_reads(),
        );
        let (commits, committed_changes) = self.commits();
        sample(
            &mut out,
            "tally_authority_commits_total",
            "counter",
            "Group commits of the single writer (one fsync each).",
            commits,
        );
        sample(
            &mut out,
            "tally_authority_committed_changes_total",
            "counter",
            "Requests to the writer those commits carried (revocations, mints, audit rows, key changes; one that failed in its savepoint too); divided by commits, the mean group size.",
            committed_changes,
        );
        let commit = "tally_authority_commit_duration_seconds";
        header(
            &mut out,
            commit,
            "Time the single writer took for each group commit counted in tally_authority_commits_total, from BEGIN to the end of COMMIT (its fsync included).",
        );
        self.commit_duration().render(&mut out, commit, "");
        self.counters.rpc.render(
            &mut out,
            "tally_authority_rpc_duration_seconds",
            "Time to answer an RPC, by method (Subscribe: to open the stream).",
        );
        out
    }
}
