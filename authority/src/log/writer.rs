//! The single writer: the one task that writes to the store. Requests queue on a
//! channel; the writer takes everything queued (up to a batch limit) and
//! commits it as one transaction: one fsync for the whole group (group
//! commit). Revocations, mints and audit rows have nothing to check that can
//! fail one alone: they are handed to the store in bulk with the commit
//! ([`WriteStore::commit_batch`]: on SQLite one multi-row INSERT per table,
//! sent with COMMIT as one statement list; on PostgreSQL one INSERT per
//! table from arrays, the head row moved in the same transaction); any other change gets its own
//! savepoint first, so its failure spares the rest. Only after
//! the commit does it update the in-memory state, publish revocations to
//! subscribers, and answer the callers, so a revocation is durable before
//! `Revoke` returns and before it is streamed. A batch whose write fails is
//! rolled back whole and its callers get `UNAVAILABLE`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tally_token::KeyId;
use tokio::sync::{mpsc, oneshot};

use super::{Revoked, State};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::keys::{self, KeyChange, KeyRing};
use crate::revocation::{LogEvent, LogHead, Target, next_digest};
use crate::store::{AuditRow, BranchCounts, BulkRows, HeadMove, TokenRow, WriteStore};

/// How long after its target's expiry a revocation is kept (well past any clock skew).
const PRUNE_GRACE_MS: i64 = 3_600_000;
/// Most operations committed together.
const MAX_BATCH: usize = 512;
/// Queue length before callers wait (back-pressure).
const QUEUE: usize = 4096;
/// Most yields while gathering a batch (see [`gather`]).
const GATHER_YIELDS: usize = 16;
/// Longest a batch's (or a follow's) work with the database may take: past
/// it, the connection is dropped (a database that went silent) and the
/// batch fails as unavailable.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Log entries read per query while catching up with other replicas.
const FOLLOW_PAGE: i64 = 1024;
/// Longest a batch is gathered for before its commit starts.
const GATHER_FOR: Duration = Duration::from_millis(1);

/// What the writer is asked to do.
#[derive(Debug)]
pub enum Change {
    /// A new org with its first key.
    CreateOrg(String),
    /// A new current key for the org.
    RotateKey(String),
    /// Retire a key (log a key revocation). With `rotate_if_current`, an org's
    /// current key is first replaced; without, retiring it is refused.
    RetireKey { key_id: KeyId, rotate_if_current: bool },
    /// Retire every active key of the org and give it a fresh one.
    RevokeOrg(String),
    /// Append revocations (target, expiry of what it targets).
    Revoke(Vec<(Target, Option<i64>)>),
    /// Record a minted token.
    Mint(TokenRow),
    /// Only the audit row, of a refusal: aggregated with the others of its
    /// actor, action and org in the same minute.
    Refusal,
    /// Drop log entries whose targets have all expired (never the newest),
    /// and audit rows older than `audit_before` (unix ms).
    Prune { audit_before: i64 },
    /// Learn what other replicas wrote: log entries past the writer's head
    /// (catching up, and vouching for the database, `log/follow.rs`), and
    /// keys made after the newest one the key ring knows.
    Follow,
    /// Fold the WAL back into the database file, close the connection and
    /// stop (a clean shutdown): answered once the connection is closed, so the
    /// file is free for whoever opens it next; later changes are refused.
    Close,
}

impl Change {
    /// Whether the change appends to the log, prunes it, or makes or retires
    /// keys: its batch then holds the log's head ([`WriteStore::lock_head`]),
    /// which also orders key creation across replicas.
    fn holds_head(&self) -> bool {
        match self {
            Change::CreateOrg(_)
            | Change::RotateKey(_)
            | Change::RetireKey { .. }
            | Change::RevokeOrg(_)
            | Change::Revoke(_)
            | Change::Prune { .. } => true,
            Change::Mint(_) | Change::Refusal | Change::Follow | Change::Close => false,
        }
    }
}

/// The result of a change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Key created by the change.
    pub key_id: Option<KeyId>,
    /// Last seq the change appended (0: none).
    pub seq: u64,
    /// Log entries pruned.
    pub pruned: u64,
    /// Audit rows pruned.
    pub audit_pruned: u64,
}

struct Op {
    change: Change,
    audit: AuditRow,
    reply: Option<oneshot::Sender<Result<Outcome>>>,
}

/// Handle to the writer task.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    /// Starts the writer task on `store`, which must be the only writing
    /// connection; `branches` are the log's branch revocations per family,
    /// of which it lets a family have at most `max_branches`.
    pub(super) fn spawn(
        store: Box<dyn WriteStore>,
        state: Arc<State>,
        revoked: Arc<Revoked>,
        keys: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
        branches: BranchCounts,
        max_branches: u32,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let head = *state.head.borrow();
        let shared = state.vouched.is_some();
        let task = Task { store, state, revoked, keys, clock, head, branches, max_branches, shared };
        tokio::spawn(task.run(rx));
        Self { tx }
    }

    /// Applies `change` with its audit row, durably; returns once committed.
    pub async fn submit(&self, change: Change, audit: AuditRow) -> Result<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Op { change, audit, reply: Some(reply) })
            .await
            .map_err(|_| Error::Unavailable("authority is shutting down".into()))?;
        rx.await.map_err(|_| Error::Unavailable("authority is shutting down".into()))?
    }

    /// Whether the writer has stopped (closed, or its task ended).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Learns what other replicas wrote, now (see [`Change::Follow`]).
    pub async fn follow(&self) -> Result<()> {
        let audit = AuditRow {
            actor: String::new(),
            action: "follow",
            org: None,
            target: None,
            outcome: crate::store::OK,
            detail: String::new(),
        };
        self.submit(Change::Follow, audit).await.map(drop)
    }

    /// Records a refusal's audit row without waiting (the caller is not kept
    /// waiting, and a flood of them cannot block the queue).
    pub fn refusal(&self, audit: AuditRow) {
        if self.tx.try_send(Op { change: Change::Refusal, audit, reply: None }).is_err() {
            tracing::warn!("audit queue full: dropped an audit row");
        }
    }
}

/// Takes `first` and whatever is queued behind it, up to [`MAX_BATCH`]. While
/// that keeps growing, the writer yields to let the requests on their way
/// (decoded, being authorized) reach the queue, and takes them too; it stops
/// at the first yield that brings nothing, after [`GATHER_YIELDS`] yields, or
/// once [`GATHER_FOR`] has passed (checked between yields). A lone change
/// costs one yield (nothing else is running); under concurrent load one
/// fsync carries several times more changes (the idea of PostgreSQL's
/// `commit_delay` and `commit_siblings`, with the wait ending as soon as
/// nothing more is coming). Nothing is taken after a `Close`: what was sent
/// later stays queued and is refused when the writer stops.
async fn gather(first: Op, rx: &mut mpsc::Receiver<Op>) -> Vec<Op> {
    let started = Instant::now();
    let mut closing = matches!(first.change, Change::Close);
    let mut batch = vec![first];
    let mut yields = 0;
    loop {
        let before = batch.len();
        while batch.len() < MAX_BATCH && !closing {
            match rx.try_recv() {
                Ok(op) => {
                    closing = matches!(op.change, Change::Close);
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        let grew = batch.len() > before || yields == 0;
        if !grew || closing || batch.len() >= MAX_BATCH || yields == GATHER_YIELDS || started.elapsed() >= GATHER_FOR {
            return batch;
        }
        yields += 1;
        tokio::task::yield_now().await;
    }
}

struct Task {
    store: Box<dyn WriteStore>,
    state: Arc<State>,
    revoked: Arc<Revoked>,
    /// Learns committed key changes; makes and seals new keys.
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    /// The log head including changes of the batch being applied.
    head: LogHead,
    /// Branch revocations per family in the committed log.
    branches: BranchCounts,
    /// The most a family may have (`Settings::max_branch_revocations`).
    max_branches: u32,
    /// Other processes write the store too (PostgreSQL replicas).
    shared: bool,
}

/// What a committed change does to the in-memory state.
enum Effect {
    Keys(KeyChange),
    Event(LogEvent),
    ReloadRevoked,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(first) = rx.recv().await {
            let mut batch = gather(first, &mut rx).await;
            // The close is answered only once the connection is closed.
            let close = batch.iter_mut().find(|op| matches!(op.change, Change::Close)).map(|op| op.reply.take());
            self.commit(batch).await;
            if let Some(reply) = close {
                // Outside any transaction.
                let closed = self.store.close().await;
                if let Some(reply) = reply {
                    let _ = reply.send(closed.map(|()| Outcome::default()));
                }
                tracing::debug!("writer closed");
                return;
            }
        }
        tracing::debug!("writer stopped");
    }

    async fn commit(&mut self, batch: Vec<Op>) {
        let began = Instant::now();
        // First the head: held for the batch when it moves it, read when it
        // follows; either way the writer catches up with other replicas.
        let holds_head = batch.iter().any(|op| op.change.holds_head());
        let follows = batch.iter().any(|op| matches!(op.change, Change::Follow));
        let mut open = false;
        if holds_head || follows {
            match tokio::time::timeout(STORE_TIMEOUT, self.sync(holds_head, follows)).await {
                Ok(Ok(locked)) => open = locked,
                Ok(Err(e)) => return self.fail(batch, self.head, &e).await,
                Err(_) => {
                    self.store.forget();
                    return self.fail(batch, self.head, &timed_out()).await;
                }
            }
        }
        let follow_ops = batch.iter().filter(|op| matches!(op.change, Change::Follow)).count();
        if follow_ops == batch.len() {
            // Nothing to commit.
            for op in batch {
                if let Some(reply) = op.reply {
                    let _ = reply.send(Ok(Outcome::default()));
                }
            }
            return;
        }
        let start = self.head;
        let mut results = Vec::with_capacity(batch.len());
        let mut effects = Vec::new();
        let now = self.clock.now_ms();
        let mut staged = Staged::default();
        let committed = async {
            // Revocations, mints and audit rows have nothing that fails alone: they
            // are staged and written at the end with one multi-row INSERT per
            // table. Everything else gets a savepoint so one failure spares the
            // rest; only then is the transaction opened on its own.
            let store = &mut *self.store;
            let bound = BranchBound { committed: &self.branches, max: self.max_branches };
            for op in &batch {
                if let Some(outcome) = stage(&mut staged, &mut self.head, op, &bound, &mut effects) {
                    results.push(outcome);
                    continue;
                }
                if !open {
                    store.begin().await?;
                    open = true;
                }
                store.savepoint().await?;
                let before = self.head;
                let mut op_effects = Vec::new();
                // Seqs staged earlier in this batch are not in the table yet.
                let unwritten = staged.revocations.first().map(|(_, e)| e.seq);
                let r =
                    apply(store, &mut self.head, unwritten, &self.keys, self.clock.as_ref(), op, &mut op_effects).await;
                match r {
                    Ok(outcome) => {
                        store.release_savepoint().await?;
                        effects.append(&mut op_effects);
                        results.push(Ok(outcome));
                    }
                    Err(e) => {
                        store.undo_savepoint().await?;
                        self.head = before;
                        results.push(Err(e));
                    }
                }
            }
            store.commit_batch(&staged.rows(now), HeadMove { from: start, to: self.head }, open, now).await
        };
        let committed = match tokio::time::timeout(STORE_TIMEOUT, committed).await {
            Ok(committed) => committed,
            Err(_) => {
                self.store.forget();
                Err(timed_out())
            }
        };
        if let Err(e) = committed {
            return self.fail(batch, start, &e).await;
        }
        for (family, n) in staged.branches {
            *self.branches.entry(family).or_default() += n;
        }
        self.state.commit_duration.observe(began.elapsed().as_secs_f64());
        self.state.commits.fetch_add(1, Ordering::Relaxed);
        self.state.committed_changes.fetch_add((batch.len() - follow_ops) as u64, Ordering::Relaxed);
        self.publish(effects).await;
        for (op, result) in batch.into_iter().zip(results) {
            if let Some(reply) = op.reply {
                let _ = reply.send(result);
            }
        }
    }

    /// A batch failed with `e`: nothing of it is kept, its callers are told
    /// the storage failed, and the writer's head is the stored one (`start`,
    /// where the batch began, unless the failed COMMIT reached the disk).
    async fn fail(&mut self, batch: Vec<Op>, start: LogHead, e: &Error) {
        // A follow alone is the follower's to report (once per outage).
        if !batch.iter().all(|op| matches!(op.change, Change::Follow)) {
            tracing::error!(error = %e, "commit failed; {} changes not applied", batch.len());
        }
        // Whatever part of the transaction is still open is undone. With
        // none open (BEGIN failed, or SQLite rolled back already) there is
        // nothing to undo; any other failure leaves the transaction open,
        // so its COMMIT did not happen and the connection's view (which
        // includes the uncommitted rows) must not be trusted below.
        let still_open = match self.store.rollback().await {
            Ok(_) => false,
            Err(e) => {
                tracing::error!(error = %e, "rollback after a failed commit failed");
                true
            }
        };
        self.head = start;
        // A failed COMMIT may still have reached the disk: trust the database,
        // not the batch's bookkeeping, so no seq is ever handed out twice. On
        // a store other replicas write, the next batch or follow catches up
        // with whatever is stored past `start` (this batch's entries too, if
        // they are there), entry by entry; on SQLite the head is reloaded.
        if !still_open && !self.shared {
            match self.store.load_head().await {
                Ok(stored) if stored != start => {
                    tracing::error!(seq = stored.seq, "the failed batch is in the database after all; reloading");
                    self.reload_revoked().await;
                    self.state.head.send_replace(stored);
                    self.head = stored;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "reading the log's head after a failed commit failed"),
            }
        }
        for op in batch {
            if let Some(reply) = op.reply {
                let _ = reply.send(Err(Error::Unavailable("storage failure; change not applied".into())));
            }
        }
    }

    /// Reads the stored head (locking it for the batch when `lock`, on a
    /// store other replicas write), vouches for the database, and catches up
    /// with the entries other replicas appended past the writer's head; with
    /// `keys`, also learns the keys they made. Returns whether a transaction
    /// is now open (the head locked).
    async fn sync(&mut self, lock: bool, keys: bool) -> Result<bool> {
        let stored = if lock {
            match self.store.lock_head().await? {
                Some(stored) => stored,
                // Only this process writes the store: its head is the stored one.
                None => return Ok(false),
            }
        } else {
            self.store.load_head().await?
        };
        self.state.vouch();
        let learned_keys = self.catch_up(stored).await?;
        if keys || learned_keys {
            let rows = self.store.keys_after(self.keys.followed()).await?;
            self.keys.learn(rows)?;
        }
        Ok(lock)
    }

    /// Applies the entries between the writer's head and `stored` (appended
    /// by other replicas, committed), checking the digest chain; returns
    /// whether any retired a key. Entries pruned meanwhile are skipped: the
    /// revoked ids are read again, and subscribers that need them start over.
    async fn catch_up(&mut self, stored: LogHead) -> Result<bool> {
        let mut effects = Vec::new();
        let mut head = self.head;
        let mut keys = false;
        let mut reload = false;
        while head.seq < stored.seq {
            let page = self.store.log_from(head.seq + 1, FOLLOW_PAGE).await?;
            if page.first().is_none_or(|e| e.seq != head.seq + 1) {
                // Pruned by another replica while this one lagged.
                head = stored;
                reload = true;
                break;
            }
            for event in page.into_iter().take_while(|e| e.seq <= stored.seq) {
                if event.seq != head.seq + 1 || next_digest(&head.digest, event.seq, &event.target) != event.digest {
                    return Err(Error::Corrupt(format!(
                        "log entry {} does not follow {} (was the database restored under a running authority?)",
                        event.seq, head.seq
                    )));
                }
                head.seq = event.seq;
                head.digest = event.digest;
                match event.target {
                    Target::Branch { family, .. } => *self.branches.entry(family).or_default() += 1,
                    Target::Key(key_id) => {
                        keys = true;
                        effects.push(Effect::Keys(KeyChange::Retired { key_id, at: self.clock.now_ms() }));
                    }
                    Target::Family(_) => {}
                }
                effects.push(Effect::Event(event));
            }
        }
        if head.seq != stored.seq || head.digest != stored.digest {
            return Err(Error::Corrupt(format!(
                "the log's head row (seq {}) does not match its entries (seq {})",
                stored.seq, head.seq
            )));
        }
        // Another replica pruned: the retained log starts later.
        reload |= stored.retained_from > self.head.retained_from;
        head.retained_from = stored.retained_from;
        if reload {
            effects.push(Effect::ReloadRevoked);
        }
        if head != self.head {
            self.head = head;
            self.publish(effects).await;
        }
        Ok(keys)
    }

    /// Reads the revoked ids and the branch counts back from the database
    /// (after a prune, or a batch whose failure left the log unknown).
    async fn reload_revoked(&mut self) {
        match self.store.load_revoked().await {
            Ok(ids) => self.revoked.replace(ids),
            Err(e) => tracing::error!(error = %e, "reloading revoked ids failed"),
        }
        match self.store.load_branch_counts().await {
            Ok(branches) => self.branches = branches,
            Err(e) => tracing::error!(error = %e, "reloading branch counts failed"),
        }
    }

    /// After the commit: memory first, then subscribers, so anything that sees
    /// an event can also see its effect.
    async fn publish(&mut self, effects: Vec<Effect>) {
        let mut keys = Vec::new();
        let mut events = Vec::new();
        let mut reload = false;
        for effect in effects {
            match effect {
                Effect::Keys(change) => keys.push(change),
                Effect::Event(event) => events.push(Arc::new(event)),
                Effect::ReloadRevoked => reload = true,
            }
        }
        self.keys.apply(keys);
        self.revoked.insert(events.iter().filter_map(|e| e.target.revoked_id()));
        if reload {
            self.reload_revoked().await;
        }
        for event in events {
            // No receivers is fine: nobody subscribed.
            let _ = self.state.events.send(event);
        }
        self.state.head.send_if_modified(|h| {
            let changed = *h != self.head;
            *h = self.head;
            changed
        });
    }
}

/// Rows of the simple changes of a batch, written together at its end.
#[derive(Default)]
struct Staged<'a> {
    revocations: Vec<(&'a AuditRow, LogEvent)>,
    tokens: Vec<&'a TokenRow>,
    audit: Vec<&'a AuditRow>,
    /// Refusals by (actor, action, org): how many, and the first one's row;
    /// in the order each group was first refused, so audit rows (and their
    /// ids) keep the order of events, whatever the hasher.
    refusals: IndexMap<(&'a str, &'static str, Option<&'a str>), (u64, &'a AuditRow)>,
    /// Branch revocations the batch adds, per family.
    branches: BranchCounts,
}

/// The bound on branch revocations per family, against the committed log.
struct BranchBound<'a> {
    committed: &'a BranchCounts,
    max: u32,
}

/// Stages a simple change (assigning seqs now); `None` for the others. A
/// branch revocation past its family's bound is refused here, so the bound
/// holds however many arrive at once.
fn stage<'a>(
    staged: &mut Staged<'a>,
    head: &mut LogHead,
    op: &'a Op,
    bound: &BranchBound<'_>,
    effects: &mut Vec<Effect>,
) -> Option<Result<Outcome>> {
    let mut outcome = Outcome::default();
    match &op.change {
        Change::Revoke(targets) => {
            let mut adds = BranchCounts::new();
            for (target, _) in targets {
                if let Target::Branch { family, .. } = target {
                    *adds.entry(*family).or_default() += 1;
                }
            }
            for (family, n) in &adds {
                let count = |m: &BranchCounts| m.get(family).copied().unwrap_or(0);
                let had = count(bound.committed) + count(&staged.branches);
                if had + n > bound.max {
                    return Some(Err(Error::ResourceExhausted(format!(
                        "family {} has {had} branch revocations, the most kept per family is {}: revoke the whole \
                         family instead (an operator can, or the holder of the token as minted)",
                        hex::encode(family),
                        bound.max
                    ))));
                }
            }
            for (family, n) in adds {
                *staged.branches.entry(family).or_default() += n;
            }
            for (target, expires_at) in targets {
                let event = next_event(head, *target, *expires_at);
                outcome.seq = event.seq;
                staged.revocations.push((&op.audit, event.clone()));
                effects.push(Effect::Event(event));
            }
        }
        Change::Mint(row) => staged.tokens.push(row),
        // Done before the batch (`Task::sync`); writes nothing.
        Change::Follow => return Some(Ok(outcome)),
        Change::Refusal => {
            let a = &op.audit;
            staged.refusals.entry((a.actor.as_str(), a.action, a.org.as_deref())).or_insert((0, a)).0 += 1;
            return Some(Ok(outcome));
        }
        _ => return None,
    }
    staged.audit.push(&op.audit);
    Some(Ok(outcome))
}

impl Staged<'_> {
    /// What the store writes in bulk at the commit: the refusals as one row
    /// per actor, action, org and minute (`refusal_key` names the group).
    fn rows(&self, now: i64) -> BulkRows<'_> {
        let minute = now.div_euclid(60_000);
        let refusals = self
            .refusals
            .values()
            .map(|(count, a)| {
                (*count, format!("{minute}|{}|{}|{}", a.actor, a.action, a.org.as_deref().unwrap_or("")), *a)
            })
            .collect();
        BulkRows { revocations: &self.revocations, tokens: &self.tokens, audit: &self.audit, refusals }
    }
}

/// The error of a database that did not answer within [`STORE_TIMEOUT`].
fn timed_out() -> Error {
    Error::StorageUnavailable(format!("the database did not answer within {STORE_TIMEOUT:?}").into())
}

/// The next log entry after `head` (which advances).
fn next_event(head: &mut LogHead, target: Target, expires_at: Option<i64>) -> LogEvent {
    let seq = head.seq + 1;
    let digest = next_digest(&head.digest, seq, &target);
    head.seq = seq;
    head.digest = digest;
    LogEvent { seq, target, digest, expires_at }
}

/// Applies one change inside the open transaction.
async fn apply(
    tx: &mut dyn WriteStore,
    head: &mut LogHead,
    unwritten: Option<u64>,
    keys: &KeyRing,
    clock: &dyn Clock,
    op: &Op,
    effects: &mut Vec<Effect>,
) -> Result<Outcome> {
    let now = clock.now_ms();
    let mut outcome = Outcome::default();
    match &op.change {
        Change::CreateOrg(org) => {
            if tx.org_exists(org).await? {
                return Err(Error::AlreadyExists(format!("org {org:?}")));
            }
            tx.insert_org(org, now).await?;
            effects.push(Effect::Keys(KeyChange::Org { org: org.clone(), created_at: now }));
            outcome.key_id = Some(new_key(tx, keys, org, now, effects).await?);
        }
        Change::RotateKey(org) => {
            require_org(tx, org).await?;
            outcome.key_id = Some(new_key(tx, keys, org, now, effects).await?);
        }
        Change::RetireKey { key_id, rotate_if_current } => {
            let row = tx.key_row(*key_id).await?.ok_or_else(|| Error::NotFound(format!("key {key_id}")))?;
            if row.retired_at.is_some() {
                return Err(Error::FailedPrecondition(format!("key {key_id} is already retired")));
            }
            let org = row.org;
            if tx.current_key(&org).await? == Some(*key_id) {
                if !rotate_if_current {
                    return Err(Error::FailedPrecondition(format!(
                        "key {key_id} is the current key of org {org:?}: rotate first"
                    )));
                }
                outcome.key_id = Some(new_key(tx, keys, &org, now, effects).await?);
            }
            outcome.seq = retire(tx, head, *key_id, now, &op.audit, effects).await?;
        }
        Change::RevokeOrg(org) => {
            require_org(tx, org).await?;
            let active = tx.active_keys(org).await?;
            outcome.key_id = Some(new_key(tx, keys, org, now, effects).await?);
            for key_id in active {
                outcome.seq = retire(tx, head, key_id, now, &op.audit, effects).await?;
            }
        }
        // Staged by `stage()` and written in bulk; they never reach here.
        Change::Revoke(_) | Change::Mint(_) | Change::Refusal | Change::Follow => return Ok(outcome),
        Change::Prune { audit_before } => {
            outcome.pruned = prune(tx, head, unwritten, now, effects).await?;
            outcome.audit_pruned = tx.prune_audit(*audit_before).await?;
        }
        Change::Close => return Ok(outcome),
    }
    tx.insert_audit(&op.audit, now).await?;
    Ok(outcome)
}

async fn require_org(tx: &mut dyn WriteStore, org: &str) -> Result<()> {
    if tx.org_exists(org).await? { Ok(()) } else { Err(Error::NotFound(format!("org {org:?}"))) }
}

/// A random key id this database has never used. Being random, key ids are
/// also unique across databases and restores from backup (see
/// [`keys::random_key_id`]), so a token from elsewhere is an unknown key
/// here, never a forgery under a key that took its id.
async fn fresh_key_id(tx: &mut dyn WriteStore) -> Result<KeyId> {
    for _ in 0..8 {
        let id = keys::random_key_id()?;
        if tx.key_row(id).await?.is_none() {
            return Ok(id);
        }
    }
    Err(Error::Corrupt("8 random key ids were all taken: is the random source broken?".into()))
}

/// Makes a fresh random root key for `org`, sealed under the KEK; it becomes current.
async fn new_key(
    tx: &mut dyn WriteStore,
    keys: &KeyRing,
    org: &str,
    now: i64,
    effects: &mut Vec<Effect>,
) -> Result<KeyId> {
    let key_id = fresh_key_id(tx).await?;
    let (sealed, change) = keys.generate(key_id, org, now)?;
    tx.insert_key(key_id, org, &sealed, now).await?;
    effects.push(Effect::Keys(change));
    Ok(key_id)
}

async fn retire(
    tx: &mut dyn WriteStore,
    head: &mut LogHead,
    key_id: KeyId,
    now: i64,
    audit: &AuditRow,
    effects: &mut Vec<Effect>,
) -> Result<u64> {
    tx.retire_key(key_id, now).await?;
    effects.push(Effect::Keys(KeyChange::Retired { key_id, at: now }));
    let event = next_event(head, Target::Key(key_id), None);
    tx.insert_revocation(&event, audit, now).await?;
    let seq = event.seq;
    effects.push(Effect::Event(event));
    Ok(seq)
}

/// Removes the oldest entries whose targets have expired, up to (never
/// including) the first one still needed and never the newest, nor any from
/// `unwritten` on (seqs assigned in this batch, their rows not written yet).
async fn prune(
    tx: &mut dyn WriteStore,
    head: &mut LogHead,
    unwritten: Option<u64>,
    now: i64,
    effects: &mut Vec<Effect>,
) -> Result<u64> {
    if head.seq == 0 {
        return Ok(0);
    }
    // Verifiers accept a token for a little clock skew past its `expires`; keep
    // its revocation well beyond that.
    let needed = tx.oldest_needed(now - PRUNE_GRACE_MS).await?;
    let boundary = needed.map_or(head.seq, |s| s.min(head.seq)).min(unwritten.unwrap_or(u64::MAX));
    if boundary <= head.retained_from {
        return Ok(0);
    }
    let done = tx.delete_log_before(boundary).await?;
    tx.set_meta("retained_from", &boundary.to_string()).await?;
    head.retained_from = boundary;
    effects.push(Effect::ReloadRevoked);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(change: Change) -> Op {
        let audit = AuditRow {
            actor: "test".into(),
            action: "test",
            org: None,
            target: None,
            outcome: "ok",
            detail: String::new(),
        };
        Op { change, audit, reply: None }
    }

    /// Sends `n` audit-only ops, yielding after each: callers reaching the
    /// queue one after the other while the writer gathers.
    fn trickle(tx: mpsc::Sender<Op>, n: usize) {
        tokio::spawn(async move {
            for _ in 0..n {
                tx.send(op(Change::Refusal)).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
    }

    /// The next batch the writer would commit.
    async fn next_batch(rx: &mut mpsc::Receiver<Op>) -> Vec<Op> {
        let first = rx.recv().await.unwrap();
        gather(first, rx).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn gathers_what_keeps_arriving() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        trickle(tx, 10);
        // Taking only what was queued would commit the first one alone.
        assert_eq!(next_batch(&mut rx).await.len(), 10);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_change_is_not_held_and_a_batch_is_bounded() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        tx.send(op(Change::Refusal)).await.unwrap();
        assert_eq!(next_batch(&mut rx).await.len(), 1);
        for _ in 0..MAX_BATCH + 10 {
            tx.send(op(Change::Refusal)).await.unwrap();
        }
        assert_eq!(next_batch(&mut rx).await.len(), MAX_BATCH);
        assert_eq!(next_batch(&mut rx).await.len(), 10);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nothing_is_taken_after_a_close() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        tx.send(op(Change::Refusal)).await.unwrap();
        tx.send(op(Change::Close)).await.unwrap();
        tx.send(op(Change::Refusal)).await.unwrap();
        let batch = next_batch(&mut rx).await;
        assert_eq!(batch.len(), 2);
        assert!(matches!(batch[1].change, Change::Close));
        assert!(rx.try_recv().is_ok(), "the change sent after the close is still queued");
    }
}
