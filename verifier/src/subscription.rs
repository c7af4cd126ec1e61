//! Following the authority's revocation stream: resume from the last applied
//! seq, reconnect with jittered exponential backoff, treat a reset, an epoch
//! change or a gap as "flush everything", treat heartbeats announcing a head
//! that no event comes to reach as a gap too (a stall), and fail closed when
//! the authority goes silent (a watchdog, so a black-holed connection is
//! noticed by missing heartbeats, not by a TCP error).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::clock::Now;
use crate::event::{Revocation, StreamEvent, StreamMessage, Target};
use crate::sync::Stall;
use crate::verifier::Verifier;

/// Sleeps until `at`; forever when `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// First reconnect delay (before jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest reconnect delay (before jitter).
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(crate) enum Flow {
    Continue,
    Reconnect,
}

impl Verifier {
    /// Follows the stream until `shutdown`.
    pub async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        let mut attempt: u32 = 0;
        // Without a message for this long the stream is presumed dead and redialled.
        let read_timeout = (self.settings.fail_closed_after / 2).max(Duration::from_millis(100));
        let stall_bound = stall_bound(self.settings.fail_closed_after);
        while !shutdown.is_cancelled() {
            let pos = self.sync.position();
            match self.upstream.subscribe(&pos).await {
                Ok(mut stream) => {
                    self.sync.watch_lag_new_stream(self.clock.now().mono);
                    // On a less preferred authority: back to the preferred
                    // ones after a while, at the same position (one log).
                    let failback = (self.upstream.in_use().0 > 0)
                        .then(|| tokio::time::Instant::now() + self.settings.failback_after);
                    loop {
                        let stall_at = self.sync.stall_deadline(stall_bound);
                        let msg = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = sleep_until_some(failback) => {
                                tracing::info!("trying the preferred authority again");
                                attempt = 0;
                                break;
                            }
                            // Checked on time, not only when the next message comes.
                            _ = sleep_until(stall_at) => {
                                match self.check_stall(self.clock.now().mono, stall_bound) {
                                    Flow::Reconnect => break,
                                    Flow::Continue => continue,
                                }
                            }
                            m = tokio::time::timeout(read_timeout, stream.message()) => m,
                        };
                        match msg {
                            Ok(Ok(Some(ev))) => {
                                attempt = 0;
                                if let Flow::Reconnect = self.apply_event(ev) {
                                    break;
                                }
                                if let Flow::Reconnect = self.check_stall(self.clock.now().mono, stall_bound) {
                                    break;
                                }
                            }
                            Ok(Ok(None)) => {
                                tracing::info!("revocation stream ended by the authority");
                                break;
                            }
                            Ok(Err(status)) => {
                                tracing::warn!(code = ?status.code(), "revocation stream failed");
                                break;
                            }
                            Err(_) => {
                                tracing::warn!(?read_timeout, "revocation stream silent; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), error = %why(&status), "cannot subscribe to the authority");
                    if status.code() == tonic::Code::Unauthenticated {
                        self.upstream.reload_token();
                    }
                }
            }
            attempt = attempt.saturating_add(1);
            let delay = jittered(attempt);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Acts on a stall at `now` (see `sync::Lag`): the first at a position
    /// stops answering from the cache and resubscribes from the applied seq;
    /// the same one again on the next stream resets.
    pub(crate) fn check_stall(&self, now: Instant, bound: Duration) -> Flow {
        let Some(stall) = self.sync.stalled(now, bound) else { return Flow::Continue };
        let pos = self.sync.position();
        match stall {
            Stall::Resubscribe => {
                tracing::warn!(
                    applied = pos.applied_seq,
                    head = pos.head_seen,
                    ?bound,
                    "the authority announces a head its stream does not deliver: cache unused, resubscribing from the applied seq"
                );
                // Under the lock inserts take, so none lands after this.
                let _apply = self.apply.lock().expect("apply lock");
                self.sync.set_synced(false);
            }
            Stall::Reset => {
                tracing::warn!(
                    applied = pos.applied_seq,
                    head = pos.head_seen,
                    "the authority's stream stalled behind its announced head again"
                );
                self.reset_local("stalled behind the announced head on two streams in a row");
            }
        }
        Flow::Reconnect
    }

    pub(crate) fn apply_event(&self, msg: StreamMessage) -> Flow {
        self.sync.touch_sent(msg.sent_at_ms, self.clock.now().unix_ms(), self.settings.skew);
        let flow = self.apply_message(msg.event);
        self.sync.watch_lag(self.clock.now().mono);
        flow
    }

    fn apply_message(&self, event: Option<StreamEvent>) -> Flow {
        match event {
            Some(StreamEvent::Revocation(r)) => self.apply_revocation(r),
            Some(StreamEvent::Heartbeat { head_seq, epoch }) => {
                let pos = self.sync.position();
                if !pos.epoch.is_empty() && epoch != pos.epoch {
                    self.reset_local("epoch changed under a live stream");
                    return Flow::Reconnect;
                }
                self.sync.update(|p| {
                    if p.epoch.is_empty() {
                        p.epoch = epoch;
                    }
                    p.head_seen = p.head_seen.max(head_seq);
                });
                if pos.applied_seq >= head_seq {
                    if !self.sync.synced() {
                        tracing::info!(seq = pos.applied_seq, "caught up with the revocation stream");
                    }
                    self.sync.set_synced(true);
                    // Not while the link delivers too late to count as contact.
                    let fresh = self.sync.silence().is_some_and(|s| s <= self.settings.fail_closed_after);
                    if fresh && self.sync.set_fail_closed(false) {
                        self.breaker.reset();
                        tracing::info!("authority contact restored: cache in use again");
                    }
                }
                Flow::Continue
            }
            Some(StreamEvent::Reset { epoch, head_seq, replay_after, reason }) => {
                tracing::warn!(%reason, %epoch, "revocation stream reset: flushing cache");
                self.flush_all();
                self.sync.update(|p| {
                    p.epoch = epoch;
                    p.applied_seq = replay_after;
                    p.digest = Vec::new();
                    p.head_seen = head_seq;
                });
                Flow::Continue
            }
            None => Flow::Continue,
        }
    }

    fn apply_revocation(&self, r: Revocation) -> Flow {
        let pos = self.sync.position();
        if r.seq <= pos.applied_seq {
            return Flow::Continue; // a duplicate from a resumed replay
        }
        if r.seq != pos.applied_seq + 1 {
            tracing::warn!(expected = pos.applied_seq + 1, got = r.seq, "gap in the revocation stream");
            self.reset_local("gap in the revocation stream");
            return Flow::Reconnect;
        }
        {
            let _apply = self.apply.lock().expect("apply lock");
            match r.target {
                Target::Family(family) => {
                    self.revoked.add_family(family, r.expires_at_ms);
                    self.cache.remove_family(&family);
                }
                Target::Branch { family, branch } => {
                    self.revoked.add_branch(branch, r.expires_at_ms);
                    // The entries of the family that lie on the branch are not
                    // known by signature; dropping the family is safe (its
                    // siblings re-verify once).
                    self.cache.remove_family(&family);
                }
                Target::Key(key) => {
                    self.revoked.add_key(key);
                    self.cache.remove_key_id(key);
                }
                Target::Unknown => {
                    // Not understood: it may concern anything we cached.
                    tracing::warn!(seq = r.seq, "revocation with an unknown target; dropping the cache");
                    self.cache.clear();
                }
            }
        }
        self.sync.update(|p| {
            p.applied_seq = r.seq;
            p.digest = r.digest;
            p.head_seen = p.head_seen.max(r.seq);
        });
        self.metrics.revocations_applied.inc();
        Flow::Continue
    }

    /// Forget everything and start over from the beginning of the log.
    fn reset_local(&self, why: &str) {
        tracing::warn!(why, "flushing cache and resubscribing from scratch");
        self.flush_all();
        self.sync.update(|p| *p = Default::default());
        self.sync.forget_lag();
    }

    fn flush_all(&self) {
        let _apply = self.apply.lock().expect("apply lock");
        self.sync.set_synced(false);
        self.sync.count_reset();
        self.cache.clear();
        self.memo.clear();
        self.negative.clear();
        self.revoked.clear();
    }

    /// Drops the cache when the authority has been silent past the threshold,
    /// and forgets revoked ids past their expiry.
    pub async fn watchdog(self: Arc<Self>, shutdown: CancellationToken) {
        let threshold = self.settings.fail_closed_after;
        let period = (threshold / 20).clamp(Duration::from_millis(10), Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            self.watch(self.clock.now());
        }
    }

    /// One tick of the watchdog at `now`: forgets revoked ids whose tokens
    /// have all expired (past the skew allowance), and fails closed once the
    /// authority has been silent past the threshold.
    pub(crate) fn watch(&self, now: Now) {
        let threshold = self.settings.fail_closed_after;
        let skew_ms = self.settings.skew.as_millis() as i64;
        self.revoked.prune(now.unix_ms().saturating_sub(skew_ms));
        if self.sync.silence_at(now.mono).is_some_and(|s| s > threshold) && !self.sync.fail_closed() {
            let _apply = self.apply.lock().expect("apply lock");
            // Into the same silence, Verify calls would only wait out their
            // deadline. Tripped first, so a heartbeat that clears
            // fail-closed right after can only reset it, never be overtaken.
            self.breaker.trip(now.mono);
            self.sync.set_fail_closed(true);
            self.cache.clear();
            self.memo.clear();
            tracing::warn!(?threshold, "no word from the authority: cache dropped, failing closed");
        }
    }
}

/// How long the applied seq may stay below a head the authority announced
/// with no event applied before that counts as a stall: half the silence
/// threshold, like the stream's read timeout. It cannot be a number of
/// heartbeats: the verifier does not know the authority's interval. The
/// threshold is the operator's word for how long the cache may answer
/// without the authority's word, and end to end a revocation is denied
/// within threshold + one heartbeat of its acknowledgement; a heartbeat
/// announces it within one interval, so a verifier that is told of it but
/// never sent it stops answering from its cache within half the threshold
/// after that, inside the promise, and has the other half to resubscribe
/// and catch up before it would fail closed. A legitimate lag is far
/// shorter: heartbeats go ahead of waiting events by the time an event takes
/// from commit to the stream (milliseconds), and a backlog being replayed
/// applies events all along, each of which restarts the watch; a link on
/// which no event crosses for half the threshold is one the read timeout of
/// the same length would redial anyway.
fn stall_bound(fail_closed_after: Duration) -> Duration {
    (fail_closed_after / 2).max(Duration::from_millis(100))
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A status's message with its causes: a TLS failure (an untrusted
/// certificate, a refused client certificate) says only "transport error"
/// without them. Statuses never carry tokens, so this is safe to log.
fn why(status: &tonic::Status) -> String {
    match std::error::Error::source(status) {
        Some(cause) => format!("{}: {}", status.message(), crate::upstream::error_chain(cause)),
        None => status.message().to_owned(),
    }
}

/// Full jitter: uniform in [0, min(max, base·2^attempt)], at least 10 ms.
fn jittered(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16)).min(BACKOFF_MAX);
    let mut r = [0u8; 8];
    let _ = getrandom::getrandom(&mut r);
    let frac = u64::from_le_bytes(r) as f64 / u64::MAX as f64;
    cap.mul_f64(frac).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use tally_proto::v1 as pb;
    use tally_proto::v1::revocation_target::Target;
    use tally_proto::v1::subscribe_event::Event;

    use super::*;
    use crate::convert::stream_message;
    use crate::{Settings, Upstream};

    const EPOCH: &str = "stall-test";
    const BOUND: Duration = Duration::from_secs(1);

    /// Inside a runtime (the lazy channel needs one).
    fn verifier() -> Verifier {
        // Never dialled: the stream's messages are applied by hand.
        let upstream = Upstream::new("http://127.0.0.1:9", "unused", Duration::from_secs(1)).unwrap();
        Verifier::new(upstream, Settings { fail_closed_after: 2 * BOUND, ..Settings::default() })
    }

    fn revocation(seq: u64) -> pb::SubscribeEvent {
        let target = pb::RevocationTarget { target: Some(Target::Family(vec![seq as u8; 16])) };
        let r = pb::Revocation { seq, target: Some(target), digest: vec![seq as u8; 16], expires_at_unix_ms: 0 };
        pb::SubscribeEvent { event: Some(Event::Revocation(r)), sent_at_unix_ms: 0 }
    }

    fn heartbeat(head_seq: u64) -> pb::SubscribeEvent {
        let hb = pb::Heartbeat { head_seq, epoch: EPOCH.into() };
        pb::SubscribeEvent { event: Some(Event::Heartbeat(hb)), sent_at_unix_ms: 0 }
    }

    fn apply(v: &Verifier, ev: pb::SubscribeEvent) {
        assert!(matches!(v.apply_event(stream_message(ev)), Flow::Continue));
    }

    #[tokio::test]
    async fn heartbeats_ahead_of_events_that_never_come_unsync_then_reset() {
        let v = verifier();
        for seq in 1..=8 {
            apply(&v, revocation(seq));
        }
        apply(&v, heartbeat(8));
        assert!(v.sync.synced());
        // The head moves to 10; 9 and 10 never come.
        let t0 = Instant::now();
        apply(&v, heartbeat(10));
        apply(&v, heartbeat(10));
        assert!(v.sync.synced(), "heartbeats may run ahead of events for a while");
        assert!(matches!(v.check_stall(t0, BOUND), Flow::Continue));
        assert!(matches!(v.check_stall(t0 + BOUND + Duration::from_millis(50), BOUND), Flow::Reconnect));
        assert!(!v.sync.synced(), "the cache no longer answers");
        assert_eq!((v.sync.position().applied_seq, v.sync.resets()), (8, 0), "resubscribes from its position");

        // The next stream says the same and delivers nothing.
        let t1 = Instant::now();
        v.sync.watch_lag_new_stream(t1);
        apply(&v, heartbeat(10));
        assert!(matches!(v.check_stall(t1 + BOUND / 2, BOUND), Flow::Continue));
        assert!(matches!(v.check_stall(t1 + BOUND + Duration::from_millis(50), BOUND), Flow::Reconnect));
        let pos = v.sync.position();
        assert_eq!((pos.applied_seq, pos.epoch.as_str(), v.sync.resets()), (0, "", 1), "reset: from 0");
        assert!(!v.sync.synced());
        assert_eq!(v.revoked.len(), 0, "the deny list went with it");
    }

    #[tokio::test]
    async fn a_resubscribe_that_delivers_syncs_again_without_a_reset() {
        let v = verifier();
        for seq in 1..=8 {
            apply(&v, revocation(seq));
        }
        apply(&v, heartbeat(10));
        assert!(matches!(v.check_stall(Instant::now() + 2 * BOUND, BOUND), Flow::Reconnect));
        // The authority replays 9 and 10 from its database on the new stream.
        v.sync.watch_lag_new_stream(Instant::now());
        apply(&v, revocation(9));
        apply(&v, revocation(10));
        apply(&v, heartbeat(10));
        assert!(v.sync.synced());
        assert!(matches!(v.check_stall(Instant::now() + 10 * BOUND, BOUND), Flow::Continue));
        assert_eq!(v.sync.resets(), 0);
    }
}
