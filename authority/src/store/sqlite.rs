//! The SQLite store: one file in WAL mode with `synchronous=FULL` (a commit
//! is on disk when it returns), `busy_timeout`, migrations embedded in the
//! binary, an exclusive lock on the file so one process serves it, one
//! connection that writes and a small read-only pool.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::query_builder::Separated;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use tally_token::{FamilyId, KeyId};

use super::{
    AuditColumns, AuditEntry, AuditRow, BranchCounts, BulkRows, HeadMove, KEY_COLUMNS, KeyColumns, KeyOrgColumns,
    KeyRow, Loaded, LogColumns, Opened, OrgRow, ReadStore, RegistryRow, SealedKeyRow, WriteStore, key_and_org,
    log_event,
};
use crate::error::{Error, Result};
use crate::revocation::{LogEvent, LogHead, RevokedIds, Target};

/// How long a connection waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections.
const READERS: u32 = 4;

/// Up to a limit of log entries from a seq on, in seq order (the writer
/// catching up, and every subscriber's replay).
const LOG_FROM: &str =
    "SELECT seq, kind, target, digest, expires_at FROM revocations WHERE seq >= ? ORDER BY seq LIMIT ?";

/// The migrations under `authority/migrations/sqlite`, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Creates a database at `path` (which must not exist) with the schema, its
/// epoch and an empty log. On failure nothing is left behind.
pub async fn create(path: &Path, epoch: &str) -> Result<()> {
    if path.exists() {
        return Err(Error::Config(format!(
            "{} exists already: init never touches an existing database",
            path.display()
        )));
    }
    let created = async {
        let mut writes = open_writes(path, true).await?;
        writes.set_meta("epoch", epoch).await?;
        writes.set_meta("retained_from", "1").await?;
        Box::new(writes).close().await
    }
    .await;
    if created.is_err() {
        remove(path);
    }
    created
}

/// Deletes the database at `path` and its WAL files (after an init that failed).
pub fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Opens the database at `path` (made by [`create`]) for serving: takes the
/// exclusive lock first, before a migration or a read, then migrates and
/// opens the writer's connection and the read pool. The lock is held by the
/// read pool, so for as long as the authority holds it.
pub async fn open(path: &Path) -> Result<Opened> {
    if !path.exists() {
        return Err(Error::Config(format!(
            "database {} does not exist: run `tally-authority init` first",
            path.display()
        )));
    }
    let lock = lock(path)?;
    let writes = open_writes(path, false).await?;
    let reads = open_reads(path, lock).await?;
    Ok(Opened { writes: Box::new(writes), reads: Arc::new(reads), wakeups: None })
}

fn options(path: &Path, create: bool) -> Result<SqliteConnectOptions> {
    let url = format!("sqlite://{}", path.display());
    Ok(SqliteConnectOptions::from_str(&url)
        .map_err(|e| Error::Config(format!("bad database path {}: {e}", path.display())))?
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .disable_statement_logging())
}

/// Takes the exclusive lock that makes one process the only authority on the
/// database at `path` (an advisory `flock` on the file itself, which SQLite's
/// own `fcntl` locks do not touch), held until the returned file is dropped.
/// Two authorities on one file would each believe it holds the log's head:
/// both would hand out the same seqs, and each would stream only its own.
fn lock(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Config(format!("cannot open database {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Config(format!(
            "database {} is in use by another tally-authority: one database serves one authority process (stop the other first)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::Config(format!("cannot lock database {}: {e}", path.display())))
        }
    }
}

/// The writer's own connection (the only one that writes), migrated.
async fn open_writes(path: &Path, create: bool) -> Result<SqliteWrites> {
    let mut conn = options(path, create)?.connect().await?;
    MIGRATOR.run(&mut conn).await?;
    Ok(SqliteWrites { conn })
}

/// The readers' pool, holding the database's lock.
async fn open_reads(path: &Path, lock: std::fs::File) -> Result<SqliteReads> {
    let pool = SqlitePoolOptions::new()
        .max_connections(READERS)
        // A local file cannot drop a connection: no ping round trip before each use.
        .test_before_acquire(false)
        .connect_with(options(path, false)?.read_only(true))
        .await?;
    Ok(SqliteReads { pool, _lock: Arc::new(lock) })
}

/// The connection that writes.
#[derive(Debug)]
pub struct SqliteWrites {
    conn: SqliteConnection,
}

/// The read-only pool.
#[derive(Debug, Clone)]
pub struct SqliteReads {
    pool: SqlitePool,
    /// The database's exclusive lock ([`lock`]), released when the last
    /// clone of the pool is dropped.
    _lock: Arc<std::fs::File>,
}

/// Largest multi-row INSERT (rows), well under SQLite's bound-parameter limit.
const INSERT_CHUNK: usize = 256;

/// SQLite's primary result code of a generic error: what `ROLLBACK` fails
/// with when no transaction is active (its other failures, busy or I/O,
/// have codes of their own).
const SQLITE_ERROR: &str = "1";

#[async_trait]
impl WriteStore for SqliteWrites {
    async fn load(&mut self) -> Result<Loaded> {
        let conn = &mut self.conn;
        let epoch: String = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'epoch'")
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| {
                Error::Config("database is not initialised (no epoch): run `tally-authority init`".into())
            })?;
        let orgs = sqlx::query("SELECT org, created_at FROM orgs")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|row| OrgRow { org: row.get(0), created_at: row.get(1) })
            .collect();
        let keys: Vec<KeyColumns> = sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM root_keys ORDER BY ordinal"))
            .fetch_all(&mut *conn)
            .await?;
        let keys = keys.into_iter().map(SealedKeyRow::from).collect();
        let revoked = self.load_revoked().await?;
        let head = self.load_head().await?;
        let branches = self.load_branch_counts().await?;
        Ok(Loaded { epoch, orgs, keys, revoked, head, branches })
    }

    async fn load_head(&mut self) -> Result<LogHead> {
        let conn = &mut self.conn;
        let head = match sqlx::query("SELECT seq, digest FROM revocations ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?
        {
            Some(row) => {
                let digest: Vec<u8> = row.get(1);
                LogHead {
                    seq: row.get::<i64, _>(0) as u64,
                    digest: digest.try_into().map_err(|_| Error::Corrupt("a revocation digest".into()))?,
                    retained_from: 0,
                }
            }
            None => LogHead::default(),
        };
        let retained: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'retained_from'")
            .fetch_optional(&mut *conn)
            .await?;
        let retained_from = retained.and_then(|v| v.parse().ok()).unwrap_or(1);
        // Pruning never removes the newest entry, so the head is always in the table.
        Ok(LogHead { retained_from: retained_from.max(1), ..head })
    }

    async fn load_revoked(&mut self) -> Result<RevokedIds> {
        let mut ids = RevokedIds::default();
        for row in
            sqlx::query("SELECT kind, target FROM revocations WHERE kind != 'key'").fetch_all(&mut self.conn).await?
        {
            let kind: String = row.get(0);
            let bytes: Vec<u8> = row.get(1);
            if let Some(id) = Target::from_columns(&kind, &bytes).and_then(|t| t.revoked_id()) {
                ids.insert(id);
            }
        }
        Ok(ids)
    }

    async fn load_branch_counts(&mut self) -> Result<BranchCounts> {
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT substr(target, 1, 16), COUNT(*) FROM revocations WHERE kind = 'branch' GROUP BY substr(target, 1, 16)",
        )
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(family, n)| Some((family.try_into().ok()?, u32::try_from(n).unwrap_or(u32::MAX))))
            .collect())
    }

    /// Only this process writes the file (its lock): the writer's head is the stored one.
    async fn lock_head(&mut self) -> Result<Option<LogHead>> {
        Ok(None)
    }

    async fn log_from(&mut self, from: u64, limit: i64) -> Result<Vec<LogEvent>> {
        let rows: Vec<LogColumns> =
            sqlx::query_as(LOG_FROM).bind(from as i64).bind(limit).fetch_all(&mut self.conn).await?;
        rows.into_iter().map(log_event).collect()
    }

    async fn keys_after(&mut self, ordinal: i64) -> Result<Vec<(SealedKeyRow, i64)>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, (SELECT created_at FROM orgs o WHERE o.org = k.org) FROM root_keys k \
             WHERE ordinal > ? ORDER BY ordinal"
        );
        let rows: Vec<KeyOrgColumns> = sqlx::query_as(&sql).bind(ordinal).fetch_all(&mut self.conn).await?;
        Ok(rows.into_iter().map(key_and_org).collect())
    }

    /// A local file does not go silent: nothing to drop.
    fn forget(&mut self) {}

    async fn begin(&mut self) -> Result<()> {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut self.conn).await?;
        Ok(())
    }

    async fn savepoint(&mut self) -> Result<()> {
        sqlx::query("SAVEPOINT op").execute(&mut self.conn).await?;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> Result<()> {
        sqlx::query("RELEASE op").execute(&mut self.conn).await?;
        Ok(())
    }

    async fn undo_savepoint(&mut self) -> Result<()> {
        sqlx::query("ROLLBACK TO op").execute(&mut self.conn).await?;
        sqlx::query("RELEASE op").execute(&mut self.conn).await?;
        Ok(())
    }

    /// One statement list, one round trip to the connection's thread: the
    /// multi-row INSERTs, then COMMIT (after BEGIN, when `open` is false).
    ///
    /// The head needs no row of its own: it is the newest log row of a
    /// file only this process writes (the file lock).
    async fn commit_batch(&mut self, rows: &BulkRows<'_>, _head: HeadMove, open: bool, now: i64) -> Result<()> {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(if open { "" } else { "BEGIN IMMEDIATE; " });
        for chunk in rows.revocations.chunks(INSERT_CHUNK) {
            q.push("INSERT INTO revocations (seq, kind, target, digest, reason, actor, created_at, expires_at) ");
            q.push_values(chunk, |mut b, (audit, e)| {
                b.push_bind(e.seq as i64)
                    .push_bind(e.target.kind())
                    .push_bind(e.target.bytes())
                    .push_bind(e.digest.as_slice())
                    .push_bind(audit.detail.as_str())
                    .push_bind(audit.actor.as_str())
                    .push_bind(now)
                    .push_bind(e.expires_at);
            });
            q.push("; ");
        }
        for chunk in rows.tokens.chunks(INSERT_CHUNK) {
            q.push("INSERT INTO tokens (family, org, key_id, subject, created_at, expires_at, minted_caveats) ");
            q.push_values(chunk, |mut b, row| {
                b.push_bind(row.family.as_slice())
                    .push_bind(row.org.as_str())
                    .push_bind(row.key_id.0 as i64)
                    .push_bind(row.subject.as_deref())
                    .push_bind(now)
                    .push_bind(row.expires_at)
                    .push_bind(i64::from(row.minted_caveats));
            });
            q.push("; ");
        }
        // Every audit row as it is; then one row per refusal group, the
        // first one's, its count raised by every later one (`refusal_key`
        // names the group). Two statements, so the common one stays as
        // short to prepare as it can be (the upsert clause and its two
        // columns cost every commit otherwise: Revoke × 64 was about 10 %
        // slower).
        for chunk in rows.audit.chunks(INSERT_CHUNK) {
            q.push("INSERT INTO audit (at, actor, action, org, target, outcome, detail) ");
            q.push_values(chunk, |mut b, a| bind_audit(&mut b, a, now));
            q.push("; ");
        }
        for chunk in rows.refusals.chunks(INSERT_CHUNK) {
            q.push("INSERT INTO audit (at, actor, action, org, target, outcome, detail, count, refusal_key) ");
            q.push_values(chunk, |mut b, (count, key, a)| {
                bind_audit(&mut b, a, now);
                b.push_bind(*count as i64).push_bind(key.as_str());
            });
            q.push(" ON CONFLICT(refusal_key) WHERE refusal_key IS NOT NULL DO UPDATE SET count = count + excluded.count; ");
        }
        q.push("COMMIT");
        q.build().execute(&mut self.conn).await?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<bool> {
        match sqlx::query("ROLLBACK").execute(&mut self.conn).await {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(SQLITE_ERROR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn org_exists(&mut self, org: &str) -> Result<bool> {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM orgs WHERE org = ?").bind(org).fetch_optional(&mut self.conn).await?;
        Ok(exists.is_some())
    }

    async fn insert_org(&mut self, org: &str, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO orgs (org, created_at) VALUES (?, ?)")
            .bind(org)
            .bind(now)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    async fn key_row(&mut self, key_id: KeyId) -> Result<Option<KeyRow>> {
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT org, retired_at FROM root_keys WHERE key_id = ?")
                .bind(key_id.0 as i64)
                .fetch_optional(&mut self.conn)
                .await?;
        Ok(row.map(|(org, retired_at)| KeyRow { org, retired_at }))
    }

    async fn current_key(&mut self, org: &str) -> Result<Option<KeyId>> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT key_id FROM root_keys WHERE org = ? AND retired_at IS NULL ORDER BY ordinal DESC LIMIT 1",
        )
        .bind(org)
        .fetch_one(&mut self.conn)
        .await?;
        Ok(id.map(|id| KeyId(id as u64)))
    }

    async fn active_keys(&mut self, org: &str) -> Result<Vec<KeyId>> {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT key_id FROM root_keys WHERE org = ? AND retired_at IS NULL")
            .bind(org)
            .fetch_all(&mut self.conn)
            .await?;
        Ok(ids.into_iter().map(|id| KeyId(id as u64)).collect())
    }

    async fn insert_key(&mut self, key_id: KeyId, org: &str, sealed: &[u8], now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO root_keys (key_id, org, sealed, created_at, ordinal) \
             SELECT ?, ?, ?, ?, COALESCE(MAX(ordinal), 0) + 1 FROM root_keys",
        )
        .bind(key_id.0 as i64)
        .bind(org)
        .bind(sealed)
        .bind(now)
        .execute(&mut self.conn)
        .await?;
        Ok(())
    }

    async fn retire_key(&mut self, key_id: KeyId, now: i64) -> Result<()> {
        sqlx::query("UPDATE root_keys SET retired_at = ? WHERE key_id = ?")
            .bind(now)
            .bind(key_id.0 as i64)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    async fn insert_revocation(&mut self, event: &LogEvent, audit: &AuditRow, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO revocations (seq, kind, target, digest, reason, actor, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(event.seq as i64)
        .bind(event.target.kind())
        .bind(event.target.bytes())
        .bind(event.digest.as_slice())
        .bind(&audit.detail)
        .bind(&audit.actor)
        .bind(now)
        .bind(event.expires_at)
        .execute(&mut self.conn)
        .await?;
        Ok(())
    }

    async fn oldest_needed(&mut self, expired_before: i64) -> Result<Option<u64>> {
        let needed: Option<i64> =
            sqlx::query_scalar("SELECT MIN(seq) FROM revocations WHERE expires_at IS NULL OR expires_at > ?")
                .bind(expired_before)
                .fetch_one(&mut self.conn)
                .await?;
        Ok(needed.map(|s| s as u64))
    }

    async fn delete_log_before(&mut self, seq: u64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM revocations WHERE seq < ?").bind(seq as i64).execute(&mut self.conn).await?;
        Ok(done.rows_affected())
    }

    async fn set_meta(&mut self, name: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&mut self.conn)
        .await?;
        Ok(())
    }

    async fn audit_ids(&mut self) -> Result<Option<(i64, i64)>> {
        let (first, last): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT min(id), max(id) FROM audit").fetch_one(&mut self.conn).await?;
        Ok(first.zip(last))
    }

    async fn audit_at_or_after(&mut self, id: i64) -> Result<Option<(i64, i64)>> {
        Ok(sqlx::query_as("SELECT id, at FROM audit WHERE id >= ? ORDER BY id LIMIT 1")
            .bind(id)
            .fetch_optional(&mut self.conn)
            .await?)
    }

    async fn delete_audit_before(&mut self, id: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM audit WHERE id < ?").bind(id).execute(&mut self.conn).await?;
        Ok(done.rows_affected())
    }

    async fn insert_audit(&mut self, a: &AuditRow, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO audit (at, actor, action, org, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(now)
            .bind(&a.actor)
            .bind(a.action)
            .bind(&a.org)
            .bind(&a.target)
            .bind(a.outcome)
            .bind(&a.detail)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Copies the WAL into the main file and truncates it, so a copy of
    /// the file alone is complete; then closes the connection.
    async fn close(mut self: Box<Self>) -> Result<()> {
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut self.conn).await {
            tracing::warn!(error = %e, "checkpoint failed");
        }
        self.conn.close().await?;
        Ok(())
    }
}

/// Binds an audit row's seven common columns (`at` .. `detail`).
fn bind_audit<'args>(b: &mut Separated<'_, 'args, sqlx::Sqlite, &'static str>, a: &'args AuditRow, now: i64) {
    b.push_bind(now)
        .push_bind(a.actor.as_str())
        .push_bind(a.action)
        .push_bind(a.org.as_deref())
        .push_bind(a.target.as_deref())
        .push_bind(a.outcome)
        .push_bind(a.detail.as_str());
}

#[async_trait]
impl ReadStore for SqliteReads {
    async fn registered(&self, family: &FamilyId) -> Result<Option<RegistryRow>> {
        let row: Option<(String, Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT org, expires_at, minted_caveats FROM tokens WHERE family = ?")
                .bind(family.0.as_slice())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(org, expires_at, minted_caveats)| RegistryRow { org, expires_at, minted_caveats }))
    }

    async fn audit(&self, org: Option<&str>, after: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
        // `?1 IS NULL OR org = ?1`: one statement for one org or all of them.
        let rows: Vec<AuditColumns> = match after {
            Some(after) => {
                sqlx::query_as(concat!(
                    "SELECT id, at, actor, action, org, target, outcome, detail, count FROM audit",
                    " WHERE id > ?2 AND (?1 IS NULL OR org = ?1) ORDER BY id LIMIT ?3"
                ))
                .bind(org)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                let mut newest: Vec<AuditColumns> = sqlx::query_as(concat!(
                    "SELECT id, at, actor, action, org, target, outcome, detail, count FROM audit",
                    " WHERE (?1 IS NULL OR org = ?1) ORDER BY id DESC LIMIT ?2"
                ))
                .bind(org)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                newest.reverse();
                newest
            }
        };
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    async fn log_digest(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT digest FROM revocations WHERE seq = ?")
            .bind(seq as i64)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn log_from(&self, from: u64, limit: i64) -> Result<Vec<LogEvent>> {
        let rows: Vec<LogColumns> =
            sqlx::query_as(LOG_FROM).bind(from as i64).bind(limit).fetch_all(&self.pool).await?;
        rows.into_iter().map(log_event).collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rollback says whether a transaction was open, from SQLite's result
    /// code (not its message): none before BEGIN and none after COMMIT.
    #[tokio::test]
    async fn rollback_tells_whether_a_transaction_was_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_writes(&dir.path().join("t.db"), true).await.unwrap();
        assert!(!store.rollback().await.unwrap(), "nothing began");
        store.begin().await.unwrap();
        store.set_meta("epoch", "x").await.unwrap();
        assert!(store.rollback().await.unwrap(), "BEGIN was undone");
        let epoch: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'epoch'")
            .fetch_optional(&mut store.conn)
            .await
            .unwrap();
        assert_eq!(epoch, None, "the rolled-back row is gone");
        let head = HeadMove { from: LogHead::default(), to: LogHead::default() };
        store.commit_batch(&BulkRows::default(), head, false, 0).await.unwrap();
        assert!(!store.rollback().await.unwrap(), "committed already");
    }

    /// A database from before random key ids (migration 4): its keys keep
    /// their sequential ids and their order, so each org's current key stays
    /// its newest active one; a new key is newer than all of them.
    #[tokio::test]
    async fn keys_from_before_random_ids_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut conn = options(&path, true).unwrap().connect().await.unwrap();
        let old = sqlx::migrate::Migrator {
            migrations: MIGRATOR.migrations.iter().filter(|m| m.version < 4).cloned().collect(),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        old.run(&mut conn).await.unwrap();
        sqlx::query(concat!(
            "INSERT INTO meta (name, value) VALUES ('epoch', 'e'), ('retained_from', '1');",
            "INSERT INTO orgs (org, created_at) VALUES ('system', 0), ('acme', 0);",
            "INSERT INTO root_keys (key_id, org, sealed, created_at, retired_at) VALUES",
            " (1, 'system', x'00', 0, NULL), (2, 'acme', x'00', 0, NULL), (3, 'acme', x'00', 0, NULL),",
            " (4, 'acme', x'00', 0, 5)"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let mut store = open_writes(&path, false).await.unwrap();
        assert_eq!(store.current_key("acme").await.unwrap(), Some(KeyId(3)), "the newest active key");
        store.begin().await.unwrap();
        let new = crate::keys::random_key_id().unwrap();
        store.insert_key(new, "acme", b"\0", 9).await.unwrap();
        assert_eq!(store.current_key("acme").await.unwrap(), Some(new), "a new key is the newest");
        let head = HeadMove { from: LogHead::default(), to: LogHead::default() };
        store.commit_batch(&BulkRows::default(), head, true, 9).await.unwrap();
        let order: Vec<u64> = store.load().await.unwrap().keys.iter().map(|k| k.key_id.0).collect();
        assert_eq!(order, [1, 2, 3, 4, new.0], "loaded in creation order");
    }
}
