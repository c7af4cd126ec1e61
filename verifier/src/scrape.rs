//! The verifier as its metrics see it: registering them with the state each
//! scrape reads, rendering them (for tests), and the counts tests read.

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::metrics::Snapshot;
use crate::verifier::Verifier;

impl Verifier {
    /// Registers this verifier's metrics in `registry`. The state metrics
    /// read it at each scrape through a weak reference: the registry does not
    /// keep the verifier alive.
    pub fn register_metrics(self: &Arc<Self>, registry: &mut Registry) {
        let verifier = Arc::downgrade(self);
        self.metrics.register(registry, move || verifier.upgrade().map(|v| v.snapshot()));
    }

    /// The metrics now, in Prometheus' text format (what a scrape reads).
    pub fn render_metrics(&self) -> String {
        let mut registry = Registry::default();
        let snapshot = self.snapshot();
        self.metrics.register(&mut registry, move || Some(snapshot));
        tally_service::metrics::encode(&registry)
    }

    /// The state the metrics show.
    fn snapshot(&self) -> Snapshot {
        let pos = self.sync.position();
        Snapshot {
            cache_entries: self.cache.len(),
            revoked_ids: self.revoked.len(),
            cache_evictions: self.cache.evictions(),
            applied_seq: pos.applied_seq,
            stream_lag: pos.head_seen.saturating_sub(pos.applied_seq),
            last_contact_age: self.sync.silence(),
            fail_closed: self.sync.fail_closed(),
            resets: self.sync.resets(),
            authority_in_use: self.upstream.in_use().0,
        }
    }

    /// Verify calls made to the authority.
    pub fn authority_verifies(&self) -> u64 {
        self.metrics.authority_verifies.get()
    }

    /// Checks denied at once because the most Verify calls were in flight.
    pub fn authority_shed(&self) -> u64 {
        self.metrics.authority_shed.get()
    }
}
