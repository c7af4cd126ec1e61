//! The revocation log, and every write: the single writer that commits
//! changes in groups (`writer.rs`), the stream that serves the log to its
//! subscribers (`stream.rs`), and what memory knows of the log (its head,
//! the revoked ids, the epoch). Memory changes only after a commit, and
//! before anything of it is streamed.

mod follow;
mod stream;
mod writer;

use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use tally_token::{KeyId, RevocationId};
use tokio::sync::{Semaphore, broadcast, watch};

use crate::clock::Clock;
use crate::error::Result;
use crate::keys::KeyRing;
use crate::revocation::{LogEvent, LogHead, RevokedIds, Target};
use crate::store::{AuditRow, BranchCounts, Opened, ReadStore, TokenRow};

pub use stream::{Position, StreamEvent};
use writer::{Change, Writer};

/// The revoked family and branch ids, as of the last commit.
#[derive(Debug, Default)]
pub(crate) struct Revoked {
    ids: RwLock<RevokedIds>,
}

impl Revoked {
    /// True when any of `ids` is revoked.
    pub(crate) fn any(&self, ids: &[RevocationId]) -> bool {
        let revoked = self.ids.read().expect("revoked lock");
        ids.iter().any(|id| revoked.contains(id.bytes()))
    }

    fn insert(&self, ids: impl IntoIterator<Item = [u8; 16]>) {
        self.ids.write().expect("revoked lock").extend(ids);
    }

    fn replace(&self, ids: RevokedIds) {
        *self.ids.write().expect("revoked lock") = ids;
    }
}

/// What the writer changes and the streams read.
#[derive(Debug)]
struct State {
    /// Random id of this database, made at init.
    epoch: String,
    /// Head of the log; changes after each commit that appended to it.
    head: watch::Sender<LogHead>,
    /// Live revocations, in seq order, after they are durable.
    events: broadcast::Sender<Arc<LogEvent>>,
    /// Times a subscriber fell behind the fan-out and caught up from the database.
    catch_ups: AtomicU64,
    /// Subscribers connected now.
    subscribers: AtomicU64,
    /// Group commits the writer made (each one fsync).
    commits: AtomicU64,
    /// Changes those commits carried (changes ÷ commits: the mean group size).
    committed_changes: AtomicU64,
    /// Time from BEGIN to the end of COMMIT (its fsync included) of each
    /// group commit that succeeded (as counted in `commits`); a clone of
    /// the metric the authority registers.
    commit_duration: Histogram,
    /// When the writer last read the stored head, on a store other replicas
    /// write; `None` on a store only this process writes (always current).
    vouched: Option<std::sync::Mutex<Instant>>,
}

impl State {
    /// The writer has just read the stored head.
    fn vouch(&self) {
        if let Some(v) = &self.vouched {
            *v.lock().expect("vouch lock") = Instant::now();
        }
    }

    /// Since the writer last read the stored head (zero on a store only
    /// this process writes, which it never needs to read).
    fn head_read_age(&self) -> Duration {
        self.vouched.as_ref().map_or(Duration::ZERO, |v| v.lock().expect("vouch lock").elapsed())
    }

    /// Whether this process knows the stored log as of `bound` ago at the
    /// latest: only then do its heartbeats vouch for the head (a replica
    /// cut off from the database falls silent, and its subscribers fail over
    /// or fail closed).
    fn vouches(&self, bound: Duration) -> bool {
        self.head_read_age() <= bound
    }
}

/// Where the log stands at startup, as loaded from the store.
#[derive(Debug)]
pub(crate) struct History {
    pub epoch: String,
    pub head: LogHead,
    pub revoked: RevokedIds,
    /// Branch revocations in the log, per family.
    pub branches: BranchCounts,
}

/// The log's tunables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogSettings {
    /// Live events buffered for subscribers (at least 1).
    pub fanout_buffer: usize,
    /// Streams served at once.
    pub max_subscribers: usize,
    /// Interval of the streams' heartbeats.
    pub heartbeat: Duration,
    /// Branch revocations kept per family (at least 1).
    pub max_branch_revocations: u32,
}

/// The log: a handle to the writer, the revoked ids and the streams.
#[derive(Debug)]
pub(crate) struct Log {
    writer: Writer,
    state: Arc<State>,
    revoked: Arc<Revoked>,
    reads: Arc<dyn ReadStore>,
    settings: LogSettings,
    /// One permit per stream being served.
    subscriber_slots: Arc<Semaphore>,
    /// The follower of other replicas' writes, when the store has them.
    follower: Option<follow::Follower>,
}

impl Log {
    /// Starts the writer on the store's `writes` (this process's only writing
    /// connection), which also applies committed key changes to `keys` and
    /// records the time of each commit into `commit_duration`. On a store
    /// that other replicas write, `wakeups` is woken at their commits
    /// (`NOTIFY`): a follower then has the writer catch up, and also every
    /// quarter heartbeat.
    pub(crate) fn start(
        store: Opened,
        keys: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
        history: History,
        settings: LogSettings,
        commit_duration: Histogram,
    ) -> Self {
        let Opened { writes, reads, wakeups } = store;
        let (head, _) = watch::channel(history.head);
        let (events, _) = broadcast::channel(settings.fanout_buffer.max(1));
        let state = Arc::new(State {
            epoch: history.epoch,
            head,
            events,
            catch_ups: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            committed_changes: AtomicU64::new(0),
            commit_duration,
            // It has just read the database (the history).
            vouched: wakeups.as_ref().map(|_| std::sync::Mutex::new(Instant::now())),
        });
        let revoked = Arc::new(Revoked { ids: RwLock::new(history.revoked) });
        let max_branches = settings.max_branch_revocations.max(1);
        let writer = Writer::spawn(writes, state.clone(), revoked.clone(), keys, clock, history.branches, max_branches);
        let subscriber_slots = Arc::new(Semaphore::new(settings.max_subscribers.min(Semaphore::MAX_PERMITS)));
        let follower = wakeups.map(|w| follow::Follower::spawn(writer.clone(), w, follow::poll(settings.heartbeat)));
        Self { writer, state, revoked, reads, settings, subscriber_slots, follower }
    }

    /// Since the writer last read the stored head (zero on a store only
    /// this process writes, which it never needs to read).
    pub(crate) fn head_read_age(&self) -> Duration {
        self.state.head_read_age()
    }

    /// How often the follower reads the stored head (and how often to look
    /// at whether this process vouches): four times per heartbeat interval.
    pub(crate) fn follow_interval(&self) -> Duration {
        follow::poll(self.settings.heartbeat)
    }

    /// Whether other replicas write the log too.
    pub(crate) fn shared(&self) -> bool {
        self.follower.is_some()
    }

    /// `Ok` while this process knows the stored log as of a heartbeat ago
    /// at the latest (always, on a store only it writes): a replica cut off
    /// from the database must not say a token is unrevoked, which another
    /// replica may have revoked meanwhile.
    pub(crate) fn current(&self) -> Result<()> {
        if self.state.vouches(self.settings.heartbeat) {
            Ok(())
        } else {
            Err(crate::error::Error::Unavailable(
                "this authority replica cannot read its database, so it does not vouch for revocations: ask another"
                    .into(),
            ))
        }
    }

    /// Learns what other replicas wrote, now: before an answer that the
    /// key ring lacks (a key or an org another replica made).
    pub(crate) async fn follow(&self) -> Result<()> {
        if self.shared() { self.writer.follow().await } else { Ok(()) }
    }

    /// The database's epoch.
    pub(crate) fn epoch(&self) -> &str {
        &self.state.epoch
    }

    /// The head now.
    pub(crate) fn head(&self) -> LogHead {
        *self.state.head.borrow()
    }

    /// The revoked ids (shared with whoever checks tokens).
    pub(crate) fn revoked(&self) -> &Arc<Revoked> {
        &self.revoked
    }

    /// Times a subscriber fell behind the in-memory fan-out and caught up from the database.
    pub(crate) fn catch_ups(&self) -> u64 {
        self.state.catch_ups.load(Ordering::Relaxed)
    }

    /// Subscribers connected now.
    pub(crate) fn subscribers(&self) -> u64 {
        self.state.subscribers.load(Ordering::Relaxed)
    }

    /// Group commits the writer made, and the changes they carried.
    pub(crate) fn commits(&self) -> (u64, u64) {
        (self.state.commits.load(Ordering::Relaxed), self.state.committed_changes.load(Ordering::Relaxed))
    }

    /// A new org with its first key; returns the key.
    pub(crate) async fn create_org(&self, org: &str, audit: AuditRow) -> Result<KeyId> {
        let outcome = self.writer.submit(Change::CreateOrg(org.to_owned()), audit).await?;
        Ok(outcome.key_id.expect("the writer gives a new org a key"))
    }

    /// A new current key for `org`; returns it.
    pub(crate) async fn rotate_key(&self, org: &str, audit: AuditRow) -> Result<KeyId> {
        let outcome = self.writer.submit(Change::RotateKey(org.to_owned()), audit).await?;
        Ok(outcome.key_id.expect("the writer makes a key when it rotates"))
    }

    /// Retires `key_id` (a key revocation in the log); an org's current key
    /// is first replaced when `rotate_if_current`, else refused. Returns the seq.
    pub(crate) async fn retire_key(&self, key_id: KeyId, rotate_if_current: bool, audit: AuditRow) -> Result<u64> {
        Ok(self.writer.submit(Change::RetireKey { key_id, rotate_if_current }, audit).await?.seq)
    }

    /// Retires every active key of `org` and gives it a fresh one. Returns
    /// the seq of the last key revocation.
    pub(crate) async fn revoke_org(&self, org: &str, audit: AuditRow) -> Result<u64> {
        Ok(self.writer.submit(Change::RevokeOrg(org.to_owned()), audit).await?.seq)
    }

    /// Appends revocations (target, expiry of what it targets); returns the last seq.
    pub(crate) async fn revoke(&self, targets: Vec<(Target, Option<i64>)>, audit: AuditRow) -> Result<u64> {
        Ok(self.writer.submit(Change::Revoke(targets), audit).await?.seq)
    }

    /// Records a minted token in the registry.
    pub(crate) async fn record_mint(&self, row: TokenRow, audit: AuditRow) -> Result<()> {
        self.writer.submit(Change::Mint(row), audit).await.map(drop)
    }

    /// Records a refusal without waiting (see [`Writer::refusal`]).
    pub(crate) fn record_refusal(&self, audit: AuditRow) {
        self.writer.refusal(audit);
    }

    /// Drops log entries whose targets have all expired and audit rows older
    /// than `audit_before` (unix ms). Returns how many of each.
    pub(crate) async fn prune(&self, audit_before: i64, audit: AuditRow) -> Result<(u64, u64)> {
        let outcome = self.writer.submit(Change::Prune { audit_before }, audit).await?;
        Ok((outcome.pruned, outcome.audit_pruned))
    }

    /// Commits what is queued, then closes the writer's connection, leaving
    /// the database complete on its own; later writes are refused.
    pub(crate) async fn close(&self, audit: AuditRow) -> Result<()> {
        if let Some(follower) = &self.follower {
            follower.stop();
        }
        self.writer.submit(Change::Close, audit).await.map(drop)
    }
}
