//! The revocation stream: replay from the subscriber's position,
//! then live events, with a heartbeat at a fixed interval that events do not
//! delay (so a busy stream still carries the head). One task per subscriber feeds
//! a bounded channel; a subscriber that falls behind the in-memory fan-out
//! (or the channel) catches up from the database, so it never skips an entry.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Log;
use crate::error::Result;
use crate::revocation::LogEvent;

/// Rows read from the database per catch-up query.
const CATCH_UP_PAGE: i64 = 1024;
/// Events buffered between a subscriber's task and its gRPC stream.
const SUBSCRIBER_BUFFER: usize = 256;

/// Where a subscriber says it is.
#[derive(Debug, Clone, Default)]
pub struct Position {
    /// Last applied seq (0: nothing yet).
    pub from_seq: u64,
    /// Epoch of its state (empty: none).
    pub epoch: String,
    /// Digest at `from_seq` (empty with 0).
    pub digest: Vec<u8>,
}

/// What the stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A committed revocation.
    Revocation(LogEvent),
    /// Nothing new; the head is here.
    Heartbeat { head_seq: u64, epoch: String },
    /// Flush everything; a replay from `replay_after + 1` follows.
    Reset { epoch: String, head_seq: u64, replay_after: u64, reason: String },
}

impl Log {
    /// Starts a subscription; the stream ends when `shutdown` fires or the
    /// receiver is dropped. `None` while `max_subscribers` streams are being
    /// served: memory is bounded by the cap times [`SUBSCRIBER_BUFFER`] events.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        position: Position,
        shutdown: CancellationToken,
    ) -> Option<mpsc::Receiver<StreamEvent>> {
        let slot = self.subscriber_slots.clone().try_acquire_owned().ok()?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let this = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            this.state.subscribers.fetch_add(1, Ordering::Relaxed);
            match this.run_subscription(position, &tx, &shutdown).await {
                Ok(()) => tracing::debug!("subscription ended"),
                Err(e) => tracing::warn!(error = %e, "subscription failed"),
            }
            this.state.subscribers.fetch_sub(1, Ordering::Relaxed);
        });
        Some(rx)
    }

    async fn run_subscription(
        &self,
        position: Position,
        tx: &mpsc::Sender<StreamEvent>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        // Subscribe to live events first, so nothing committed from now on is
        // missed between the replay and the live phase.
        let mut live = self.state.events.subscribe();
        let mut next = match self.reset_reason(&position).await? {
            None => position.from_seq + 1,
            Some(reason) => {
                let head = self.head();
                let replay_after = head.retained_from.saturating_sub(1);
                let reset =
                    StreamEvent::Reset { epoch: self.epoch().to_owned(), head_seq: head.seq, replay_after, reason };
                if tx.send(reset).await.is_err() {
                    return Ok(());
                }
                replay_after + 1
            }
        };
        // A fixed beat that events do not reset: a verifier that is failing
        // closed (or has not synced) learns the head on every beat, however
        // busy the stream is.
        let heartbeat = self.settings.heartbeat;
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Catch up from the database to (at least) the head.
            match self.catch_up(next, tx).await? {
                CatchUp::Done(n) => next = n,
                CatchUp::Closed => return Ok(()),
                CatchUp::Pruned => {
                    // What it needed was pruned while it lagged: start over.
                    let head = self.head();
                    let replay_after = head.retained_from.saturating_sub(1);
                    let reset = StreamEvent::Reset {
                        epoch: self.epoch().to_owned(),
                        head_seq: head.seq,
                        replay_after,
                        reason: "fell behind the retained log".into(),
                    };
                    if tx.send(reset).await.is_err() {
                        return Ok(());
                    }
                    next = replay_after + 1;
                    continue;
                }
            }
            // Live: forward events in order; any hole sends us back to the database.
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tx.closed() => return Ok(()),
                    // Before events: ready once per interval, it cannot starve
                    // them, and a steady stream of events cannot starve it.
                    _ = beat.tick() => {
                        // A replica that has not read the database within a
                        // beat does not vouch for its head: silence, so its
                        // subscribers fail over or, past their threshold,
                        // fail closed.
                        if !self.state.vouches(heartbeat) {
                            continue;
                        }
                        let hb = StreamEvent::Heartbeat { head_seq: self.head().seq, epoch: self.epoch().to_owned() };
                        if tx.send(hb).await.is_err() {
                            return Ok(());
                        }
                    }
                    ev = live.recv() => match ev {
                        Ok(e) if e.seq < next => continue,
                        Ok(e) if e.seq == next => {
                            if tx.send(StreamEvent::Revocation((*e).clone())).await.is_err() {
                                return Ok(());
                            }
                            next += 1;
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {
                            self.state.catch_ups.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(RecvError::Closed) => return Ok(()),
                    },
                }
            }
        }
    }

    /// Why a subscriber at `position` must flush and start over, if it must.
    async fn reset_reason(&self, position: &Position) -> Result<Option<String>> {
        let mut head = self.head();
        if position.from_seq > head.seq && self.shared() {
            // Moved here from another replica that is a little ahead: catch up first.
            self.follow().await?;
            head = self.head();
        }
        if position.epoch.is_empty() {
            return Ok((position.from_seq != 0).then(|| "no epoch given with a position".into()));
        }
        if position.epoch != self.epoch() {
            return Ok(Some("epoch changed (database replaced or restored)".into()));
        }
        if position.from_seq > head.seq {
            return Ok(Some("subscriber is ahead of the log (database restored?)".into()));
        }
        if position.from_seq + 1 < head.retained_from {
            return Ok(Some("position older than the retained log".into()));
        }
        if position.from_seq > 0 {
            let digest = self.reads.log_digest(position.from_seq).await?;
            if digest.is_some_and(|d| d != position.digest) {
                return Ok(Some("log forked at the subscriber's position (database restored?)".into()));
            }
        }
        Ok(None)
    }

    /// Sends every committed entry from `next` on. Returns the next seq to send.
    async fn catch_up(&self, mut next: u64, tx: &mpsc::Sender<StreamEvent>) -> Result<CatchUp> {
        loop {
            let events = self.reads.log_from(next, CATCH_UP_PAGE).await?;
            let full = events.len() as i64 == CATCH_UP_PAGE;
            for event in events {
                if event.seq != next {
                    return Ok(CatchUp::Pruned);
                }
                if tx.send(StreamEvent::Revocation(event)).await.is_err() {
                    return Ok(CatchUp::Closed);
                }
                next += 1;
            }
            if !full {
                return Ok(CatchUp::Done(next));
            }
        }
    }
}

enum CatchUp {
    Done(u64),
    Closed,
    Pruned,
}
