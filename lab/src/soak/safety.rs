//! The fault tests' safety property, checked online as answers arrive:
//! no Check that started later than revoke-ack + bound for a revoked family
//! is allowed (`tests/src/history.rs` checks the same after the fact, from a
//! log of every answer; a soak cannot keep every answer, so this keeps only
//! the first acknowledgement per family and judges each allow at once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::deployment::{FAIL_CLOSED_AFTER, HEARTBEAT};

/// Scheduling slack on a shared two-core machine (the fault tests use 0.5 s).
const SLACK: Duration = Duration::from_secs(1);
/// The bound: the fail-closed threshold, one heartbeat interval, and slack.
pub(crate) const BOUND: Duration = FAIL_CLOSED_AFTER.saturating_add(HEARTBEAT).saturating_add(SLACK);
/// Violations described in full; the rest are only counted.
const DESCRIBED: usize = 20;

/// First acknowledgement per family, and the violations found.
#[derive(Debug, Default)]
pub(crate) struct Safety {
    acked: Mutex<HashMap<Arc<str>, Instant>>,
    violations: AtomicU64,
    described: Mutex<Vec<String>>,
}

impl Safety {
    /// A Revoke of `family` was acknowledged at `at` (the earliest one counts).
    pub(crate) fn acked(&self, family: &Arc<str>, at: Instant) {
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).entry(family.clone()).or_insert(at);
    }

    /// A Check of `family` that started at `started` was allowed by `region`.
    pub(crate) fn allowed(&self, family: &str, region: &str, started: Instant) {
        let acked = self.acked.lock().unwrap_or_else(|p| p.into_inner()).get(family).copied();
        let Some(acked) = acked else { return };
        if started > acked + BOUND {
            self.violations.fetch_add(1, Ordering::Relaxed);
            let mut described = self.described.lock().unwrap_or_else(|p| p.into_inner());
            if described.len() < DESCRIBED {
                described.push(format!(
                    "{region}: a check started {:?} after its family's revocation was acknowledged was allowed",
                    started - acked
                ));
            }
        }
    }

    /// Violations so far, and the first few described.
    pub(crate) fn violations(&self) -> (u64, Vec<String>) {
        let described = self.described.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (self.violations.load(Ordering::Relaxed), described)
    }
}
