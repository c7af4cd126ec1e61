//! The authority as its metrics see it: registering them with the state each
//! scrape reads, and the counts tests read.

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::authority::Authority;
use crate::metrics::Snapshot;

impl Authority {
    /// Registers this authority's metrics in `registry`. The state metrics
    /// read it at each scrape through a weak reference: the registry does not
    /// keep the authority alive.
    /// Every metric carries the `replica` label (`Settings::replica`), so
    /// the replicas of one database are told apart.
    pub fn register_metrics(self: &Arc<Self>, registry: &mut Registry) {
        let authority = Arc::downgrade(self);
        let labelled = registry.sub_registry_with_label(("replica".into(), self.replica().to_owned().into()));
        self.metrics.register(labelled, move || authority.upgrade().map(|a| a.snapshot()));
    }

    /// The state the metrics show.
    fn snapshot(&self) -> Snapshot {
        let head = self.head();
        let (commits, committed_changes) = self.commits();
        Snapshot {
            log_head_seq: head.seq,
            log_retained_from: head.retained_from,
            subscribers: self.subscribers(),
            fanout_catchups: self.catch_ups(),
            commits,
            committed_changes,
        }
    }

    /// Verify calls served (any verdict).
    pub fn verify_count(&self) -> u64 {
        self.metrics.verify.get()
    }

    /// Revoke-by-family look-ups that read the registry from the database.
    pub fn registry_reads(&self) -> u64 {
        self.metrics.registry_reads.get()
    }
}
