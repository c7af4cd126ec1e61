//! Where the verifier stands with the revocation stream: epoch, applied seq,
//! last contact. The cache is trusted only while `usable()`: synced since the
//! last reset, and heard from the authority within the silence threshold.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The stream position and contact state.
#[derive(Debug)]
pub struct SyncState {
    pos: Mutex<Position>,
    /// Caught up with the head at least once since the last reset.
    synced: AtomicBool,
    /// Silent past the threshold: cache dropped and unused.
    fail_closed: AtomicBool,
    resets: AtomicU64,
    born: Instant,
    /// Milliseconds since `born` of the last contact, plus one (0: never).
    last_contact: AtomicU64,
    /// Woken whenever `synced` or `fail_closed` changes (readiness follows at once).
    changed: tokio::sync::Notify,
}

/// Position in the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub applied_seq: u64,
    pub digest: Vec<u8>,
    pub head_seen: u64,
}

impl Default for SyncState {
    fn default() -> Self {
        Self {
            pos: Mutex::default(),
            synced: AtomicBool::new(false),
            fail_closed: AtomicBool::new(false),
            resets: AtomicU64::new(0),
            born: Instant::now(),
            last_contact: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl SyncState {
    /// May the cache answer (and be filled) now? Synced, not failing closed,
    /// and heard from within `threshold`, checked here too so the cut-off does
    /// not wait for the watchdog's next tick.
    pub fn usable(&self, threshold: Duration) -> bool {
        self.synced.load(Ordering::Acquire)
            && !self.fail_closed.load(Ordering::Acquire)
            && self.silence().is_some_and(|s| s <= threshold)
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn fail_closed(&self) -> bool {
        self.fail_closed.load(Ordering::Acquire)
    }

    pub fn set_synced(&self, synced: bool) {
        if self.synced.swap(synced, Ordering::AcqRel) != synced {
            self.changed.notify_waiters();
        }
    }

    /// Enters (true) or leaves fail-closed; returns the previous value.
    pub fn set_fail_closed(&self, on: bool) -> bool {
        let was = self.fail_closed.swap(on, Ordering::AcqRel);
        if was != on {
            self.changed.notify_waiters();
        }
        was
    }

    /// Resolves at the next change of `synced` or `fail_closed` (call
    /// `enable()` on it before reading the state, so no change is missed).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    pub fn position(&self) -> Position {
        self.pos.lock().expect("sync lock").clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut Position)) {
        f(&mut self.pos.lock().expect("sync lock"));
    }

    /// Records contact with the authority now.
    pub fn touch(&self) {
        self.last_contact.fetch_max(self.born.elapsed().as_millis() as u64 + 1, Ordering::AcqRel);
    }

    /// Records an event the authority sent at `sent_at_ms` (its clock; 0 or
    /// less: unknown) that arrived at `now_ms` (ours). Whatever it took beyond
    /// `skew` to arrive is taken off the contact time: the event tells what
    /// the authority knew when it sent it, so a link that delivers late is as
    /// stale as one that is silent. Contact never moves backwards.
    pub fn touch_sent(&self, sent_at_ms: i64, now_ms: i64, skew: Duration) {
        let late = if sent_at_ms > 0 { now_ms.saturating_sub(sent_at_ms) - skew.as_millis() as i64 } else { 0 };
        let at = self.born.elapsed().saturating_sub(Duration::from_millis(late.max(0) as u64));
        self.last_contact.fetch_max(at.as_millis() as u64 + 1, Ordering::AcqRel);
    }

    /// Time since the last contact; `None` before the first.
    pub fn silence(&self) -> Option<Duration> {
        match self.last_contact.load(Ordering::Acquire) {
            0 => None,
            t => Some(self.born.elapsed().saturating_sub(Duration::from_millis(t - 1))),
        }
    }

    pub fn count_reset(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
    }

    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_millis(500);

    /// A state that has existed for a minute, so contact can be backdated.
    fn aged() -> SyncState {
        SyncState { born: Instant::now().checked_sub(Duration::from_secs(60)).unwrap(), ..SyncState::default() }
    }

    #[test]
    fn a_late_message_counts_as_contact_when_it_was_sent() {
        let s = aged();
        assert_eq!(s.silence(), None);
        s.set_synced(true);
        // Sent 3 s ago (by the authority's clock), 0.5 s of which is allowed skew.
        s.touch_sent(1_000_000 - 3_000, 1_000_000, SKEW);
        let silence = s.silence().unwrap();
        assert!(silence >= Duration::from_millis(2_500) && silence < Duration::from_millis(2_600), "{silence:?}");
        assert!(!s.usable(Duration::from_secs(1)));
        assert!(s.usable(Duration::from_secs(3)));
    }

    #[test]
    fn on_time_unknown_and_future_sends_count_as_contact_now() {
        for sent_at in [1_000_000 - 400, 0, 1_000_000 + 60_000] {
            let s = aged();
            s.touch_sent(sent_at, 1_000_000, SKEW);
            assert!(s.silence().unwrap() < Duration::from_millis(100), "sent at {sent_at}");
        }
    }

    #[test]
    fn contact_never_moves_backwards() {
        let s = aged();
        s.touch();
        s.touch_sent(1_000_000 - 60_000, 1_000_000, SKEW); // a very late straggler
        assert!(s.silence().unwrap() < Duration::from_millis(100));
    }
}
