//! The storage seam. What the authority decides (group commit, seqs and
//! digests, the branch bound, what memory learns after a commit) lives in
//! the log (`log/`), the key ring (`keys/`) and the authority; what a
//! database must do for it lives behind two traits: [`WriteStore`], the one
//! connection that writes (owned by the writer task), and [`ReadStore`], the
//! pool every request reads through. Two stores implement them: SQLite
//! (`sqlite.rs`, one file, the embedded default) and PostgreSQL
//! (`postgres.rs`); [`Db`] names one, from `--db`. No SQL, and no type of
//! the database driver, leaves this module: a driver's errors become
//! [`crate::Error::Storage`] here, or [`crate::Error::StorageUnavailable`]
//! when the database cannot be reached (`errors.rs`).
//!
//! A write store keeps one transaction at a time: [`WriteStore::begin`]
//! opens it, savepoints nest one change inside it, and
//! [`WriteStore::commit_batch`] writes the bulk rows of a batch and commits,
//! opening the transaction itself when nothing else did. Every seq it is
//! handed was assigned by the writer under its head; the store only keeps
//! them, so a store never decides the order of the log; the store checks,
//! inside the committing transaction, that the head it is handed follows
//! the one it holds ([`HeadMove`]).

mod db;
mod errors;
mod postgres;
mod sqlite;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use tally_token::{FamilyId, KeyId};
use tokio::sync::Notify;

use crate::error::Result;
use crate::revocation::{LogEvent, LogHead, RevokedIds, Target};

pub use db::Db;
pub(crate) use db::{Access, bump_epoch, create, open, remove};

/// A store opened for serving: the writer's connection and the read pool.
#[derive(Debug)]
pub struct Opened {
    pub writes: Box<dyn WriteStore>,
    pub reads: Arc<dyn ReadStore>,
    /// On a store other processes write while this one serves it
    /// (PostgreSQL replicas): woken at each of their commits, so this one
    /// follows the log. `None` for a SQLite file, which one process serves.
    pub wakeups: Option<Arc<Notify>>,
}

/// Branch revocations in the log per family (each bounded by
/// `Settings::max_branch_revocations`).
pub type BranchCounts = HashMap<[u8; 16], u32>;

/// Everything loaded at startup.
#[derive(Debug)]
pub struct Loaded {
    pub epoch: String,
    /// Every org.
    pub orgs: Vec<OrgRow>,
    /// Every root key, sealed, in creation order.
    pub keys: Vec<SealedKeyRow>,
    /// Every revoked family and branch id in the log.
    pub revoked: RevokedIds,
    pub head: LogHead,
    /// Branch revocations in the log, per family.
    pub branches: BranchCounts,
}

/// An org's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRow {
    pub org: String,
    /// Unix ms.
    pub created_at: i64,
}

/// A root key's row: its material sealed under the key-encryption key
/// (only the key ring opens it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKeyRow {
    pub key_id: KeyId,
    pub org: String,
    pub sealed: Vec<u8>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, when retired.
    pub retired_at: Option<i64>,
    /// Its place in creation order (an org's current key is its newest
    /// active one).
    pub ordinal: i64,
}

/// The `outcome` of an audit row that records a change made.
pub const OK: &str = "ok";
/// The `outcome` of an audit row that records refusals (aggregated per
/// actor, action, org and minute).
pub const DENIED: &str = "denied";

/// An audit row: who did what. Never a token or a secret.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Family id of the caller's token, or `anonymous`.
    pub actor: String,
    /// What was attempted (`mint`, `revoke`, `org.create`, …).
    pub action: &'static str,
    /// The org concerned, when there is one.
    pub org: Option<String>,
    /// Family id, key id, … of the object.
    pub target: Option<String>,
    /// [`OK`] or [`DENIED`].
    pub outcome: &'static str,
    /// Free text (a reason), never secret.
    pub detail: String,
}

/// A minted token's registry row.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub family: [u8; 16],
    pub org: String,
    pub key_id: KeyId,
    pub subject: Option<String>,
    pub expires_at: Option<i64>,
    /// The caveats the token was minted with: a verifier is handed chain
    /// signatures from this position on, never before it.
    pub minted_caveats: u16,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: u64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub org: Option<String>,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: String,
    /// Events the row stands for (refusals are aggregated per minute).
    pub count: u64,
}

/// An audit row as both stores select it: `id, at, actor, action, org,
/// target, outcome, detail, count`.
type AuditColumns = (i64, i64, String, String, Option<String>, Option<String>, String, String, i64);

impl From<AuditColumns> for AuditEntry {
    fn from((id, at_ms, actor, action, org, target, outcome, detail, count): AuditColumns) -> Self {
        AuditEntry {
            id: id.unsigned_abs(),
            at_ms,
            actor,
            action,
            org,
            target,
            outcome,
            detail,
            count: count.unsigned_abs(),
        }
    }
}

/// A log row as both stores select it: `seq, kind, target, digest, expires_at`.
type LogColumns = (i64, String, Vec<u8>, Vec<u8>, Option<i64>);

/// A log row back as its entry; a row that does not decode is corrupt.
fn log_event((seq, kind, target, digest, expires_at): LogColumns) -> Result<LogEvent> {
    let seq = seq as u64;
    let (Some(target), Ok(digest)) = (Target::from_columns(&kind, &target), digest.try_into()) else {
        return Err(crate::error::Error::Corrupt(format!("revocation row {seq}")));
    };
    Ok(LogEvent { seq, target, digest, expires_at })
}

/// A root key's row as both stores select it: `key_id, org, sealed, created_at, retired_at`.
type KeyColumns = (i64, String, Vec<u8>, i64, Option<i64>, i64);

/// The columns [`KeyColumns`] reads, in its order.
const KEY_COLUMNS: &str = "key_id, org, sealed, created_at, retired_at, ordinal";

impl From<KeyColumns> for SealedKeyRow {
    fn from((key_id, org, sealed, created_at, retired_at, ordinal): KeyColumns) -> Self {
        SealedKeyRow { key_id: KeyId(key_id as u64), org, sealed, created_at, retired_at, ordinal }
    }
}

/// [`KeyColumns`] and the creation time of the key's org.
type KeyOrgColumns = (i64, String, Vec<u8>, i64, Option<i64>, i64, Option<i64>);

fn key_and_org((id, org, sealed, created_at, retired_at, ordinal, org_at): KeyOrgColumns) -> (SealedKeyRow, i64) {
    (SealedKeyRow::from((id, org, sealed, created_at, retired_at, ordinal)), org_at.unwrap_or(created_at))
}

/// A minted family's registry row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRow {
    pub org: String,
    /// Unix ms.
    pub expires_at: Option<i64>,
    /// Caveats minted; `None` for tokens minted before it was recorded.
    pub minted_caveats: Option<i64>,
}

/// A key's row, as the writer checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub org: String,
    pub retired_at: Option<i64>,
}

/// The rows of a batch written in bulk at its commit.
#[derive(Debug, Default)]
pub struct BulkRows<'a> {
    /// Log entries, with the audit row whose actor and reason they keep.
    pub revocations: &'a [(&'a AuditRow, LogEvent)],
    /// Minted tokens' registry rows.
    pub tokens: &'a [&'a TokenRow],
    /// Audit rows as they are.
    pub audit: &'a [&'a AuditRow],
    /// Refusals, one row per group: how many, the group's key (counts of a
    /// group already stored are raised), and its first row.
    pub refusals: Vec<(u64, String, &'a AuditRow)>,
}

/// How a batch moves the log's head: from the head the writer held when
/// the batch began to the head after it. The store takes it inside the
/// committing transaction: PostgreSQL checks and moves its head row there
/// (locked until the commit, so seqs are gap-free in commit order); SQLite's
/// head is the newest row of a file only this process writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadMove {
    pub from: LogHead,
    pub to: LogHead,
}

/// The connection that writes.
#[async_trait]
pub trait WriteStore: Send + Debug {
    /// Everything the authority keeps in memory (root keys still sealed).
    async fn load(&mut self) -> Result<Loaded>;
    /// The log head as stored.
    async fn load_head(&mut self) -> Result<LogHead>;
    /// Every revoked family and branch id in the log.
    async fn load_revoked(&mut self) -> Result<RevokedIds>;
    /// How many branch revocations the log holds per family.
    async fn load_branch_counts(&mut self) -> Result<BranchCounts>;

    /// Opens the batch's transaction holding the log's head, on a store
    /// that other authorities write too (PostgreSQL): the head row is locked
    /// until the commit, so appends of all replicas are serialized and seqs
    /// stay gap-free in commit order; returns the head as stored, which the
    /// writer catches up to ([`WriteStore::log_from`]) before it appends.
    /// `None`, opening nothing, on a store only this process writes (SQLite),
    /// where the writer's own head is the stored one.
    async fn lock_head(&mut self) -> Result<Option<LogHead>>;
    /// Up to `limit` log entries from `from` on, in seq order (inside the
    /// transaction when one is open).
    async fn log_from(&mut self, from: u64, limit: i64) -> Result<Vec<LogEvent>>;
    /// Keys made after creation-order position `ordinal`, in creation
    /// order, with their org's creation time (keys other replicas made).
    async fn keys_after(&mut self, ordinal: i64) -> Result<Vec<(SealedKeyRow, i64)>>;
    /// Drops the connection (and the transaction on it) after the database
    /// did not answer in time; the next use connects again.
    fn forget(&mut self);
    /// Opens the batch's transaction.
    async fn begin(&mut self) -> Result<()>;
    /// Marks where one change starts, inside the transaction.
    async fn savepoint(&mut self) -> Result<()>;
    /// Keeps the change since the savepoint.
    async fn release_savepoint(&mut self) -> Result<()>;
    /// Undoes the change since the savepoint, and drops it.
    async fn undo_savepoint(&mut self) -> Result<()>;
    /// Writes `rows`, moves the head (when the batch appended to the log)
    /// and commits: the transaction `begin` opened, or one of its own when
    /// `open` is false. A head that moved under the writer (another process
    /// wrote) fails the batch: nothing of it is kept.
    async fn commit_batch(&mut self, rows: &BulkRows<'_>, head: HeadMove, open: bool, now: i64) -> Result<()>;
    /// Undoes whatever transaction is open after a failure. `Ok(false)`
    /// when none was (it never began, or the database undid it already).
    async fn rollback(&mut self) -> Result<bool>;

    /// Whether org `org` exists.
    async fn org_exists(&mut self, org: &str) -> Result<bool>;
    /// Adds org `org`.
    async fn insert_org(&mut self, org: &str, now: i64) -> Result<()>;
    /// Key `key_id`'s row.
    async fn key_row(&mut self, key_id: KeyId) -> Result<Option<KeyRow>>;
    /// The newest active key of `org` (in creation order).
    async fn current_key(&mut self, org: &str) -> Result<Option<KeyId>>;
    /// Every active key of `org`.
    async fn active_keys(&mut self, org: &str) -> Result<Vec<KeyId>>;
    /// Adds a root key, sealed under the KEK, as the newest key (the
    /// store keeps creation order: the key id is random).
    async fn insert_key(&mut self, key_id: KeyId, org: &str, sealed: &[u8], now: i64) -> Result<()>;
    /// Marks key `key_id` retired.
    async fn retire_key(&mut self, key_id: KeyId, now: i64) -> Result<()>;
    /// Appends one log entry.
    async fn insert_revocation(&mut self, event: &LogEvent, audit: &AuditRow, now: i64) -> Result<()>;
    /// The oldest seq whose target has not expired by `expired_before`
    /// (unix ms), or has no expiry.
    async fn oldest_needed(&mut self, expired_before: i64) -> Result<Option<u64>>;
    /// Deletes the log entries before `seq`; returns how many.
    async fn delete_log_before(&mut self, seq: u64) -> Result<u64>;
    /// Sets a `meta` value.
    async fn set_meta(&mut self, name: &str, value: &str) -> Result<()>;
    /// Deletes the audit rows older than `before` (unix ms); returns how many.
    ///
    /// Rows are appended in commit order stamped with the writer's clock,
    /// so `at` grows with `id`: the first row to keep is found by binary
    /// search over ids (point look-ups on the primary key, about log2(rows)
    /// of them) and the rows before it go in one range delete. An index on
    /// `at` would cost every commit a page more (Revoke × 64 was 12 %
    /// slower with one on SQLite); a clock stepped back only keeps a few
    /// rows a little longer.
    async fn prune_audit(&mut self, before: i64) -> Result<u64> {
        let Some((mut keep_from, last)) = self.audit_ids().await? else { return Ok(0) };
        // Rows with ids below `keep_from` are older than `before`; the first to
        // keep is in keep_from..=end (end: past the last row when all are older).
        let mut end = last + 1;
        while keep_from < end {
            let mid = keep_from + (end - keep_from) / 2;
            match self.audit_at_or_after(mid).await? {
                Some((id, at)) if at < before => keep_from = id + 1,
                // No row in mid..id: keeping from `mid` keeps the same rows.
                _ => end = mid,
            }
        }
        self.delete_audit_before(keep_from).await
    }
    /// The lowest and highest audit row id, when there are rows.
    async fn audit_ids(&mut self) -> Result<Option<(i64, i64)>>;
    /// The id and time of the first audit row from id `id` on.
    async fn audit_at_or_after(&mut self, id: i64) -> Result<Option<(i64, i64)>>;
    /// Deletes the audit rows before id `id`; returns how many.
    async fn delete_audit_before(&mut self, id: i64) -> Result<u64>;
    /// Adds one audit row.
    async fn insert_audit(&mut self, row: &AuditRow, now: i64) -> Result<()>;
    /// After the last commit of a clean shutdown: leaves the database
    /// complete on its own, and closes the connection.
    async fn close(self: Box<Self>) -> Result<()>;
}

/// The pool every request reads through.
#[async_trait]
pub trait ReadStore: Send + Sync + Debug {
    /// The registry row of a minted family.
    async fn registered(&self, family: &FamilyId) -> Result<Option<RegistryRow>>;
    /// Up to `limit` audit rows, oldest first: those after id `after`, or
    /// the newest when `after` is `None`; of one org or of all.
    async fn audit(&self, org: Option<&str>, after: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>>;
    /// The digest of log entry `seq`, while it is retained.
    async fn log_digest(&self, seq: u64) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` log entries from `from` on, in seq order.
    async fn log_from(&self, from: u64, limit: i64) -> Result<Vec<LogEvent>>;
    /// Closes the pool.
    async fn close(&self);
}
