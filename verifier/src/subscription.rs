//! Following the authority's revocation stream: resume from the last applied
//! seq, reconnect with jittered exponential backoff, treat a reset, an epoch
//! change or a gap as "flush everything", and fail closed when the authority
//! goes silent (a watchdog, so a black-holed connection is noticed by missing
//! heartbeats, not by a TCP error).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tally_proto::v1 as pb;
use tally_proto::v1::revocation_target::Target;
use tally_proto::v1::subscribe_event::Event;
use tally_token::{FamilyId, KeyId};
use tokio_util::sync::CancellationToken;

use crate::metrics::Counters;
use crate::verifier::{Verifier, unix_ms};

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
        while !shutdown.is_cancelled() {
            let pos = self.sync.position();
            match self.upstream.subscribe(&pos).await {
                Ok(mut stream) => loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = tokio::time::timeout(read_timeout, stream.message()) => m,
                    };
                    match msg {
                        Ok(Ok(Some(ev))) => {
                            attempt = 0;
                            if let Flow::Reconnect = self.apply_event(ev) {
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
                },
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

    pub(crate) fn apply_event(&self, ev: pb::SubscribeEvent) -> Flow {
        self.sync.touch_sent(ev.sent_at_unix_ms, unix_ms(SystemTime::now()), self.settings.skew);
        match ev.event {
            Some(Event::Revocation(r)) => self.apply_revocation(r),
            Some(Event::Heartbeat(hb)) => {
                let pos = self.sync.position();
                if !pos.epoch.is_empty() && hb.epoch != pos.epoch {
                    self.reset_local("epoch changed under a live stream");
                    return Flow::Reconnect;
                }
                self.sync.update(|p| {
                    if p.epoch.is_empty() {
                        p.epoch = hb.epoch.clone();
                    }
                    p.head_seen = p.head_seen.max(hb.head_seq);
                });
                if pos.applied_seq >= hb.head_seq {
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
            Some(Event::Reset(rs)) => {
                tracing::warn!(reason = %rs.reason, epoch = %rs.epoch, "revocation stream reset: flushing cache");
                self.flush_all();
                self.sync.update(|p| {
                    p.epoch = rs.epoch;
                    p.applied_seq = rs.replay_after;
                    p.digest = Vec::new();
                    p.head_seen = rs.head_seq;
                });
                Flow::Continue
            }
            None => Flow::Continue,
        }
    }

    fn apply_revocation(&self, r: pb::Revocation) -> Flow {
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
            match r.target.and_then(|t| t.target) {
                Some(Target::Family(f)) if f.len() == 16 => {
                    let f: [u8; 16] = f.as_slice().try_into().expect("length checked");
                    self.revoked.add_family(FamilyId(f), r.expires_at_unix_ms);
                    self.cache.remove_family(&FamilyId(f));
                }
                Some(Target::Branch(b)) if b.family.len() == 16 && b.branch.len() == 16 => {
                    let f: [u8; 16] = b.family.as_slice().try_into().expect("length checked");
                    self.revoked
                        .add_branch(b.branch.as_slice().try_into().expect("length checked"), r.expires_at_unix_ms);
                    // The entries of the family that lie on the branch are not
                    // known by signature; dropping the family is safe (its
                    // siblings re-verify once).
                    self.cache.remove_family(&FamilyId(f));
                }
                Some(Target::KeyId(k)) => {
                    self.revoked.add_key(KeyId(k));
                    self.cache.remove_key_id(KeyId(k));
                }
                _ => {
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
        Counters::bump(&self.counters.revocations_applied);
        Flow::Continue
    }

    /// Forget everything and start over from the beginning of the log.
    fn reset_local(&self, why: &str) {
        tracing::warn!(why, "flushing cache and resubscribing from scratch");
        self.flush_all();
        self.sync.update(|p| *p = Default::default());
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
            // Revoked ids whose tokens have all expired (past the skew allowance) are forgotten.
            let skew_ms = self.settings.skew.as_millis() as i64;
            self.revoked.prune(unix_ms(SystemTime::now()).saturating_sub(skew_ms));
            if self.sync.silence().is_some_and(|s| s > threshold) && !self.sync.fail_closed() {
                let _apply = self.apply.lock().expect("apply lock");
                // Into the same silence, Verify calls would only wait out their
                // deadline. Tripped first, so a heartbeat that clears
                // fail-closed right after can only reset it, never be overtaken.
                self.breaker.trip(std::time::Instant::now());
                self.sync.set_fail_closed(true);
                self.cache.clear();
                self.memo.clear();
                tracing::warn!(?threshold, "no word from the authority: cache dropped, failing closed");
            }
        }
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
