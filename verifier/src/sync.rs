//! Where the verifier stands with the revocation stream: epoch, applied seq,
//! last contact, and whether the applied seq keeps up with the head the
//! authority announces. The cache is trusted only while `usable()`: synced
//! since the last reset (and since the last stall), and heard from the
//! authority within the silence threshold. Time is the clock's: a check
//! passes its one reading to `usable`; the rest read the clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;

/// The stream position and contact state.
#[derive(Debug)]
pub struct SyncState {
    pos: Mutex<Position>,
    /// Caught up with the head at least once since the last reset.
    synced: AtomicBool,
    /// Silent past the threshold: cache dropped and unused.
    fail_closed: AtomicBool,
    resets: AtomicU64,
    clock: Arc<dyn Clock>,
    born: Instant,
    /// Milliseconds since `born` of the last contact, plus one (0: never).
    last_contact: AtomicU64,
    /// Woken whenever `synced` or `fail_closed` changes (readiness follows at once).
    changed: tokio::sync::Notify,
    /// Whether the applied seq keeps up with the announced head.
    lag: Mutex<Lag>,
}

/// Watches that events come to fill the difference between the head the
/// authority announces (heartbeats, resets) and the applied seq. Heartbeats
/// alone count as contact, so an authority that announces a head and never
/// sends the events up to it (a second process that wrote the same database,
/// a bug in its fan-out) would otherwise leave the verifier "synced" behind
/// the log for as long as its heartbeats keep coming.
#[derive(Debug, Default)]
struct Lag {
    /// Since when the applied seq has been below the announced head, and the
    /// applied seq then. Restarted whenever an event is applied (something
    /// came to fill the difference) and when a stream opens (it gets the
    /// whole bound to deliver); cleared once the applied seq reaches the head.
    behind: Option<(Instant, u64)>,
    /// The applied seq at the last stall; cleared once caught up.
    stalled_at: Option<u64>,
}

/// What a stall (behind the announced head, no event for the whole bound) calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The first at this position: stop answering from the cache and
    /// resubscribe from the applied seq (the authority replays from its
    /// database, which holds what its live stream missed).
    Resubscribe,
    /// Again at the position of the previous stall, on a later stream: the
    /// authority cannot deliver what it announces from there, so start over.
    Reset,
}

/// Position in the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub applied_seq: u64,
    pub digest: Vec<u8>,
    pub head_seen: u64,
}

impl SyncState {
    /// Not synced, never in contact, time read from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            pos: Mutex::default(),
            synced: AtomicBool::new(false),
            fail_closed: AtomicBool::new(false),
            resets: AtomicU64::new(0),
            born: clock.now().mono,
            clock,
            last_contact: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
            lag: Mutex::default(),
        }
    }

    /// May the cache answer (and be filled) at `now`? Synced, not failing
    /// closed, and heard from within `threshold`, checked here too so the
    /// cut-off does not wait for the watchdog's next tick.
    pub fn usable(&self, now: Instant, threshold: Duration) -> bool {
        self.synced.load(Ordering::Acquire)
            && !self.fail_closed.load(Ordering::Acquire)
            && self.silence_at(now).is_some_and(|s| s <= threshold)
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

    /// Time since `born`, now.
    fn age(&self) -> Duration {
        self.clock.now().mono.saturating_duration_since(self.born)
    }

    /// Records contact with the authority now.
    pub fn touch(&self) {
        self.last_contact.fetch_max(self.age().as_millis() as u64 + 1, Ordering::AcqRel);
    }

    /// Records an event the authority sent at `sent_at_ms` (its clock; 0 or
    /// less: unknown) that arrived at `now_ms` (ours). Whatever it took beyond
    /// `skew` to arrive is taken off the contact time: the event tells what
    /// the authority knew when it sent it, so a link that delivers late is as
    /// stale as one that is silent. Contact never moves backwards.
    pub fn touch_sent(&self, sent_at_ms: i64, now_ms: i64, skew: Duration) {
        let late = if sent_at_ms > 0 { now_ms.saturating_sub(sent_at_ms) - skew.as_millis() as i64 } else { 0 };
        let at = self.age().saturating_sub(Duration::from_millis(late.max(0) as u64));
        self.last_contact.fetch_max(at.as_millis() as u64 + 1, Ordering::AcqRel);
    }

    /// Time since the last contact; `None` before the first.
    pub fn silence(&self) -> Option<Duration> {
        self.silence_at(self.clock.now().mono)
    }

    /// Time from the last contact to `now`; `None` before the first.
    pub fn silence_at(&self, now: Instant) -> Option<Duration> {
        match self.last_contact.load(Ordering::Acquire) {
            0 => None,
            t => Some(now.saturating_duration_since(self.born).saturating_sub(Duration::from_millis(t - 1))),
        }
    }

    /// Notes at `now` where the applied seq stands against the announced
    /// head, after a message was applied: caught up clears the watch (and the
    /// memory of a stall); behind starts it, or restarts it when an event was
    /// applied since it started.
    pub fn watch_lag(&self, now: Instant) {
        let (applied, head) = {
            let p = self.pos.lock().expect("sync lock");
            (p.applied_seq, p.head_seen)
        };
        let mut lag = self.lag.lock().expect("lag lock");
        if applied >= head {
            *lag = Lag::default();
        } else if lag.behind.is_none_or(|(_, at)| at != applied) {
            lag.behind = Some((now, applied));
        }
    }

    /// A stream opened at `now`: if behind, it gets the whole bound to
    /// deliver (the time spent reconnecting is not its fault).
    pub fn watch_lag_new_stream(&self, now: Instant) {
        let mut lag = self.lag.lock().expect("lag lock");
        if let Some((since, _)) = lag.behind.as_mut() {
            *since = now;
        }
    }

    /// Forgets the watch and any stall (a local reset starts from nothing).
    pub fn forget_lag(&self) {
        *self.lag.lock().expect("lag lock") = Lag::default();
    }

    /// When the current watch runs out after `bound`, if behind.
    pub fn stall_deadline(&self, bound: Duration) -> Option<Instant> {
        self.lag.lock().expect("lag lock").behind.map(|(since, _)| since + bound)
    }

    /// Whether, at `now`, the applied seq has stayed below the announced head
    /// with no event applied for `bound`, and what that calls for. A stall
    /// ends the watch: the next stream starts its own.
    pub fn stalled(&self, now: Instant, bound: Duration) -> Option<Stall> {
        let mut lag = self.lag.lock().expect("lag lock");
        // The applied seq now: any event applied since would have restarted the watch.
        let (since, applied) = lag.behind?;
        if now.saturating_duration_since(since) < bound {
            return None;
        }
        lag.behind = None;
        let again = lag.stalled_at == Some(applied);
        lag.stalled_at = Some(applied);
        Some(if again { Stall::Reset } else { Stall::Resubscribe })
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
    use crate::clock::SystemClock;

    const SKEW: Duration = Duration::from_millis(500);

    /// A state that has existed for a minute, so contact can be backdated.
    fn aged() -> SyncState {
        let born = Instant::now().checked_sub(Duration::from_secs(60)).unwrap();
        SyncState { born, ..SyncState::new(Arc::new(SystemClock)) }
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
        assert!(!s.usable(Instant::now(), Duration::from_secs(1)));
        assert!(s.usable(Instant::now(), Duration::from_secs(3)));
    }

    #[test]
    fn on_time_unknown_and_future_sends_count_as_contact_now() {
        for sent_at in [1_000_000 - 400, 0, 1_000_000 + 60_000] {
            let s = aged();
            s.touch_sent(sent_at, 1_000_000, SKEW);
            assert!(s.silence().unwrap() < Duration::from_millis(100), "sent at {sent_at}");
        }
    }

    const BOUND: Duration = Duration::from_secs(1);

    /// Applies what a message would: an event up to `applied`, a heartbeat announcing `head`.
    fn at(s: &SyncState, applied: u64, head: u64, now: Instant) {
        s.update(|p| {
            p.applied_seq = applied;
            p.head_seen = p.head_seen.max(head);
        });
        s.watch_lag(now);
    }

    #[test]
    fn a_head_announced_and_never_reached_stalls_then_resets_on_the_next_stream() {
        let (s, t0) = (aged(), Instant::now());
        at(&s, 8, 8, t0);
        assert_eq!(s.stall_deadline(BOUND), None, "caught up: nothing to watch");
        // Heartbeats announce 10; 9 and 10 never come.
        for i in 0..10 {
            at(&s, 8, 10, t0 + Duration::from_millis(100 * i));
        }
        assert_eq!(s.stall_deadline(BOUND), Some(t0 + BOUND), "heartbeats alone do not restart the watch");
        assert_eq!(s.stalled(t0 + BOUND - Duration::from_millis(1), BOUND), None);
        assert_eq!(s.stalled(t0 + BOUND, BOUND), Some(Stall::Resubscribe));
        assert_eq!(s.stall_deadline(BOUND), None, "the stall ended the watch");
        // The next stream: the same heartbeats, still nothing past 8.
        let t1 = t0 + 3 * BOUND;
        s.watch_lag_new_stream(t1);
        at(&s, 8, 10, t1);
        assert_eq!(s.stalled(t1 + BOUND / 2, BOUND), None);
        assert_eq!(s.stalled(t1 + BOUND, BOUND), Some(Stall::Reset));
    }

    #[test]
    fn events_that_keep_coming_behind_the_heartbeats_never_stall() {
        let (s, t0) = (aged(), Instant::now());
        // Each heartbeat runs 5 ahead; the events follow 10 ms apart, for 30 bounds.
        for i in 1..=3_000u64 {
            let now = t0 + Duration::from_millis(10 * i);
            at(&s, i, i + 5, now);
            assert_eq!(s.stalled(now, BOUND), None, "at {i}");
        }
    }

    #[test]
    fn progress_or_catching_up_after_a_stall_makes_the_next_one_a_first() {
        let (s, t0) = (aged(), Instant::now());
        at(&s, 8, 12, t0);
        assert_eq!(s.stalled(t0 + BOUND, BOUND), Some(Stall::Resubscribe));
        // The next stream delivers 9 and 10, then stops short of 12.
        let t1 = t0 + 2 * BOUND;
        s.watch_lag_new_stream(t1);
        at(&s, 10, 12, t1);
        assert_eq!(s.stalled(t1 + BOUND, BOUND), Some(Stall::Resubscribe), "not the same stall");
        // Caught up at 10 (a reset announced head 10): the memory of the stall goes too.
        let t2 = t1 + 2 * BOUND;
        s.update(|p| p.head_seen = 10);
        s.watch_lag(t2);
        at(&s, 10, 12, t2);
        assert_eq!(s.stalled(t2 + BOUND, BOUND), Some(Stall::Resubscribe));
    }

    #[test]
    fn a_new_stream_gets_the_whole_bound() {
        let (s, t0) = (aged(), Instant::now());
        at(&s, 8, 10, t0);
        // Reconnecting took longer than the bound; the new stream has not spoken yet.
        let t1 = t0 + 5 * BOUND;
        s.watch_lag_new_stream(t1);
        assert_eq!(s.stalled(t1, BOUND), None);
        assert_eq!(s.stall_deadline(BOUND), Some(t1 + BOUND));
        s.forget_lag();
        assert_eq!(s.stall_deadline(BOUND), None);
    }

    #[test]
    fn contact_never_moves_backwards() {
        let s = aged();
        s.touch();
        s.touch_sent(1_000_000 - 60_000, 1_000_000, SKEW); // a very late straggler
        assert!(s.silence().unwrap() < Duration::from_millis(100));
    }
}
