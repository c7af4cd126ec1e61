//! The PostgreSQL store: the schema's migrations embedded in the binary
//! (`authority/migrations/postgres`), one connection that writes (made
//! again after the server went away), a small read pool, and a session
//! advisory lock: shared by every replica serving the database, exclusive
//! for `epoch bump`.
//!
//! Any number of authorities (replicas) write one database. The log's
//! order is the head row's (`log_head`): a batch that appends to the log, or
//! makes or retires keys, first locks that row (`SELECT … FOR UPDATE`,
//! [`WriteStore::lock_head`]), catches up with what other replicas appended
//! before it, and moves the row to its last seq in the same transaction as
//! its rows. The lock is held until the commit, so appends of all replicas
//! are serialized and seqs are gap-free in commit order. Triggers on the
//! head row and on `root_keys` `NOTIFY tally` at each commit that changed
//! them, which wakes the other replicas' followers (`log/follow.rs`). Bulk
//! rows go in one INSERT per table from arrays (`UNNEST`): a few round
//! trips per batch, one WAL flush at its COMMIT (`synchronous_commit` as the
//! server has it: keep it `on`, and a synchronous standby for high
//! availability).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};
use tally_token::{FamilyId, KeyId};
use tokio::sync::{Mutex, Notify};

use super::db::Access;
use super::errors::is_unavailable;
use super::{
    AuditColumns, AuditEntry, AuditRow, BranchCounts, BulkRows, HeadMove, KEY_COLUMNS, KeyColumns, KeyOrgColumns,
    KeyRow, Loaded, LogColumns, Opened, OrgRow, ReadStore, RegistryRow, SealedKeyRow, WriteStore, key_and_org,
    log_event,
};
use crate::error::{Error, Result};
use crate::revocation::{LogEvent, LogHead, RevokedIds, Target};

/// Up to a limit of log entries from a seq on, in seq order (the writer
/// catching up, and every subscriber's replay).
const LOG_FROM: &str =
    "SELECT seq, kind, target, digest, expires_at FROM revocations WHERE seq >= $1 ORDER BY seq LIMIT $2";

/// The migrations under `authority/migrations/postgres`, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Reader connections.
const READERS: u32 = 4;
/// Longest wait for a connection (made, or free in the pool).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The advisory lock every serving replica holds (shared) on its database
/// (`"tally-au"` as a big-endian i64).
const AUTHORITY_LOCK: i64 = 0x7461_6c6c_792d_6175;
/// The tables `init` makes; a database holding any of them is not initialised again.
const TABLES: [&str; 8] =
    ["meta", "orgs", "root_keys", "revocations", "log_head", "tokens", "audit", "_sqlx_migrations"];

/// `options` as every connection of the store uses them: no statement in
/// the log (they carry no secret, but are noise), and no notice either
/// (`CREATE TABLE IF NOT EXISTS` of the migrations says "skipping" at every
/// start).
fn tuned(options: &PgConnectOptions) -> PgConnectOptions {
    options.clone().options([("client_min_messages", "warning")]).disable_statement_logging()
}

/// Connects one connection, in [`CONNECT_TIMEOUT`].
async fn connect(options: &PgConnectOptions) -> Result<PgConnection> {
    let options = tuned(options);
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(Error::StorageUnavailable("connecting to PostgreSQL timed out".into())),
    }
}

/// Makes the schema (the migrations), the epoch and an empty log in the
/// database `options` names; refuses one that holds a Tally schema (or any
/// table of its names) already. On failure nothing is left behind.
pub async fn create(options: &PgConnectOptions, epoch: &str) -> Result<()> {
    let mut conn = connect(options).await?;
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ANY($1)",
    )
    .bind(&TABLES[..])
    .fetch_all(&mut conn)
    .await?;
    if !present.is_empty() {
        return Err(Error::Config(format!(
            "the database holds table(s) {} already: init never touches an existing database (is it initialised?)",
            present.join(", ")
        )));
    }
    let created = async {
        MIGRATOR.run(&mut conn).await?;
        let mut writes = PgWrites::new(options.clone());
        writes.set_meta("epoch", epoch).await?;
        writes.set_meta("retained_from", "1").await?;
        Box::new(writes).close().await
    }
    .await;
    if created.is_err() {
        drop_tables(&mut conn).await;
    }
    conn.close().await?;
    created
}

/// Drops what `init` made (after an init that failed, on a database that
/// held none of it).
pub async fn remove(options: &PgConnectOptions) {
    match connect(options).await {
        Ok(mut conn) => drop_tables(&mut conn).await,
        Err(e) => tracing::error!(error = %e, "cannot remove what the failed init made"),
    }
}

async fn drop_tables(conn: &mut PgConnection) {
    let drop = format!("DROP TABLE IF EXISTS {} CASCADE", TABLES.join(", "));
    if let Err(e) = sqlx::query(&drop).execute(conn).await {
        tracing::error!(error = %e, "cannot remove what the failed init made");
    }
}

/// Opens the database: takes the advisory lock first (shared by the
/// replicas that serve it; exclusive for `epoch bump`, which is refused
/// while any serves, and which any serve waits for), migrates, and opens the
/// writer's connection and the read pool. The lock is held by the read
/// pool's side, for as long as the authority holds it.
pub async fn open(options: &PgConnectOptions, access: Access) -> Result<Opened> {
    let mut lock = lock(options, access).await?;
    let initialised: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('meta')::text").fetch_one(&mut lock).await?;
    if initialised.is_none() {
        return Err(Error::Config("the database is not initialised: run `tally-authority init` first".into()));
    }
    // Replicas starting together migrate one at a time (sqlx's own lock).
    MIGRATOR.run(&mut lock).await?;
    let pool = PgPoolOptions::new()
        .max_connections(READERS)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(tuned(options))
        .await?;
    let reads = PgReads { pool, _lock: Arc::new(Mutex::new(lock)) };
    let wakeups = (access == Access::Serve).then(|| listen(options));
    Ok(Opened { writes: Box::new(PgWrites::new(options.clone())), reads: Arc::new(reads), wakeups })
}

/// The channel the triggers notify at each commit that moved the log's
/// head or made a key (`migrations/postgres/0003_replicas.sql`).
const CHANNEL: &str = "tally";

/// Listens for other replicas' commits: wakes the returned notification at
/// each, and whenever the listening connection was lost and made again (a
/// notification may have been lost with it). Ends once the notification is
/// dropped.
fn listen(options: &PgConnectOptions) -> Arc<Notify> {
    let notify = Arc::new(Notify::new());
    let weak = Arc::downgrade(&notify);
    let pool =
        PgPoolOptions::new().max_connections(1).acquire_timeout(CONNECT_TIMEOUT).connect_lazy_with(tuned(options));
    tokio::spawn(async move {
        let mut listener: Option<PgListener> = None;
        loop {
            let wake = match listener.as_mut() {
                None => match listening(&pool).await {
                    Ok(l) => {
                        listener = Some(l);
                        true
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot listen for other replicas' commits; polling only");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        false
                    }
                },
                // `None`: the connection was lost and made again.
                Some(l) => match l.try_recv().await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::debug!(error = %e, "lost the connection listening for other replicas' commits");
                        listener = None;
                        true
                    }
                },
            };
            let Some(notify) = weak.upgrade() else { return };
            if wake {
                notify.notify_one();
            }
        }
    });
    notify
}

async fn listening(pool: &PgPool) -> std::result::Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// A connection holding the advisory lock of `access`. The lock goes with
/// its session: the server ends the session of a process that died (its
/// socket closes) at once, and of a host that vanished within
/// [`LOCK_KEEPALIVE`]'s probes; the lock is waited for up to [`LOCK_WAIT`].
async fn lock(options: &PgConnectOptions, access: Access) -> Result<PgConnection> {
    let mut conn = connect(&options.clone().options(LOCK_KEEPALIVE)).await?;
    let sql = match access {
        Access::Serve => "SELECT pg_try_advisory_lock_shared($1)",
        Access::Exclusive => "SELECT pg_try_advisory_lock($1)",
    };
    let started = tokio::time::Instant::now();
    loop {
        let locked: bool = sqlx::query_scalar(sql).bind(AUTHORITY_LOCK).fetch_one(&mut conn).await?;
        if locked {
            return Ok(conn);
        }
        if started.elapsed() >= LOCK_WAIT {
            return Err(Error::Config(match access {
                Access::Serve => "the database is locked by `tally-authority epoch bump`: serve once it is done".into(),
                Access::Exclusive => "the database is in use by another tally-authority: stop every authority \
                                      serving it first"
                    .into(),
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// TCP keep-alive of the lock's session, on the server's side: a peer that
/// vanished is found out after about 10 + 3 × 5 seconds.
const LOCK_KEEPALIVE: [(&str, &str); 3] =
    [("tcp_keepalives_idle", "10"), ("tcp_keepalives_interval", "5"), ("tcp_keepalives_count", "3")];
/// How long `open` waits for the lock of an authority that just went away.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// The connection that writes.
pub struct PgWrites {
    options: PgConnectOptions,
    /// Made on first use, and again after a failure that lost it.
    conn: Option<PgConnection>,
    /// A transaction is open on `conn`.
    in_tx: bool,
}

impl std::fmt::Debug for PgWrites {
    /// Without the options: they may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWrites").field("connected", &self.conn.is_some()).field("in_tx", &self.in_tx).finish()
    }
}

/// The read pool.
#[derive(Clone)]
pub struct PgReads {
    pool: PgPool,
    /// The connection holding the advisory lock: one authority per database.
    _lock: Arc<Mutex<PgConnection>>,
}

impl std::fmt::Debug for PgReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReads").field("size", &self.pool.size()).finish()
    }
}

impl PgWrites {
    fn new(options: PgConnectOptions) -> Self {
        Self { options, conn: None, in_tx: false }
    }

    /// The connection, made when there is none.
    async fn conn(&mut self) -> Result<&mut PgConnection> {
        if self.conn.is_none() {
            self.in_tx = false;
            self.conn = Some(connect(&self.options).await?);
        }
        Ok(self.conn.as_mut().expect("connected just above"))
    }

    /// Runs `sql` with no result wanted.
    async fn exec(&mut self, sql: &'static str) -> Result<()> {
        let done = sqlx::query(sql).execute(self.conn().await?).await;
        self.check(done).map(drop)
    }

    /// Passes `r` on; a failure that lost the connection drops it (the
    /// server undoes its transaction), so the next use connects again.
    fn check<T>(&mut self, r: std::result::Result<T, sqlx::Error>) -> Result<T> {
        r.map_err(|e| {
            if is_unavailable(&e) {
                self.conn = None;
                self.in_tx = false;
            }
            e.into()
        })
    }

    /// Moves the head row from `head.from` to `head.to`: the row is locked
    /// by this transaction ([`WriteStore::lock_head`]), so it is where the
    /// batch found it; checked all the same.
    async fn move_head(&mut self, head: HeadMove) -> Result<()> {
        let conn = self.conn().await?;
        let moved = sqlx::query("UPDATE log_head SET seq = $1, digest = $2 WHERE seq = $3 AND digest = $4")
            .bind(head.to.seq as i64)
            .bind(head.to.digest.as_slice())
            .bind(head.from.seq as i64)
            .bind(head.from.digest.as_slice())
            .execute(conn)
            .await;
        if self.check(moved)?.rows_affected() != 1 {
            return Err(Error::Storage("the log's head moved under this batch (was it locked?)".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl WriteStore for PgWrites {
    async fn load(&mut self) -> Result<Loaded> {
        let conn = self.conn().await?;
        let epoch: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE name = 'epoch'").fetch_optional(&mut *conn).await?;
        let epoch = epoch.ok_or_else(|| {
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
        let conn = self.conn().await?;
        let row: std::result::Result<(i64, Vec<u8>, Option<String>), _> = sqlx::query_as(
            "SELECT h.seq, h.digest, m.value FROM log_head h LEFT JOIN meta m ON m.name = 'retained_from'",
        )
        .fetch_one(&mut *conn)
        .await;
        let (seq, digest, retained) = self.check(row)?;
        let retained_from = retained.and_then(|v| v.parse().ok()).unwrap_or(1u64);
        Ok(LogHead {
            seq: seq as u64,
            digest: digest.try_into().map_err(|_| Error::Corrupt("the log head's digest".into()))?,
            retained_from: retained_from.max(1),
        })
    }

    async fn load_revoked(&mut self) -> Result<RevokedIds> {
        let conn = self.conn().await?;
        let rows = sqlx::query("SELECT kind, target FROM revocations WHERE kind <> 'key'").fetch_all(conn).await;
        let mut ids = RevokedIds::default();
        for row in self.check(rows)? {
            let kind: String = row.get(0);
            let bytes: Vec<u8> = row.get(1);
            if let Some(id) = Target::from_columns(&kind, &bytes).and_then(|t| t.revoked_id()) {
                ids.insert(id);
            }
        }
        Ok(ids)
    }

    async fn load_branch_counts(&mut self) -> Result<BranchCounts> {
        let conn = self.conn().await?;
        let rows: std::result::Result<Vec<(Vec<u8>, i64)>, _> = sqlx::query_as(
            "SELECT substring(target FROM 1 FOR 16), COUNT(*) FROM revocations WHERE kind = 'branch' GROUP BY 1",
        )
        .fetch_all(conn)
        .await;
        Ok(self
            .check(rows)?
            .into_iter()
            .filter_map(|(family, n)| Some((family.try_into().ok()?, u32::try_from(n).unwrap_or(u32::MAX))))
            .collect())
    }

    async fn lock_head(&mut self) -> Result<Option<LogHead>> {
        // BEGIN and the lock in one round trip (the simple protocol: text
        // columns).
        let conn = self.conn().await?;
        let rows = sqlx::Executor::fetch_all(
            conn,
            concat!(
                "BEGIN; SELECT h.seq::text, encode(h.digest, 'hex'), m.value FROM log_head h",
                " LEFT JOIN meta m ON m.name = 'retained_from' FOR UPDATE OF h"
            ),
        )
        .await;
        let rows = self.check(rows)?;
        self.in_tx = true;
        let row = rows.first().ok_or_else(|| Error::Corrupt("no log head row".into()))?;
        let (seq, digest, retained): (String, String, Option<String>) = (row.get(0), row.get(1), row.get(2));
        let corrupt = || Error::Corrupt("the log head row".into());
        let digest = hex::decode(digest).ok().and_then(|d| d.try_into().ok()).ok_or_else(corrupt)?;
        Ok(Some(LogHead {
            seq: seq.parse().map_err(|_| corrupt())?,
            digest,
            retained_from: retained.and_then(|v| v.parse().ok()).unwrap_or(1u64).max(1),
        }))
    }

    async fn log_from(&mut self, from: u64, limit: i64) -> Result<Vec<LogEvent>> {
        let conn = self.conn().await?;
        let rows: std::result::Result<Vec<LogColumns>, _> =
            sqlx::query_as(LOG_FROM).bind(from as i64).bind(limit).fetch_all(conn).await;
        self.check(rows)?.into_iter().map(log_event).collect()
    }

    async fn keys_after(&mut self, ordinal: i64) -> Result<Vec<(SealedKeyRow, i64)>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, (SELECT created_at FROM orgs o WHERE o.org = k.org) FROM root_keys k \
             WHERE ordinal > $1 ORDER BY ordinal"
        );
        let conn = self.conn().await?;
        let rows: std::result::Result<Vec<KeyOrgColumns>, _> = sqlx::query_as(&sql).bind(ordinal).fetch_all(conn).await;
        Ok(self.check(rows)?.into_iter().map(key_and_org).collect())
    }

    fn forget(&mut self) {
        self.conn = None;
        self.in_tx = false;
    }

    async fn begin(&mut self) -> Result<()> {
        self.exec("BEGIN").await?;
        self.in_tx = true;
        Ok(())
    }

    async fn savepoint(&mut self) -> Result<()> {
        self.exec("SAVEPOINT op").await
    }

    async fn release_savepoint(&mut self) -> Result<()> {
        self.exec("RELEASE SAVEPOINT op").await
    }

    async fn undo_savepoint(&mut self) -> Result<()> {
        self.exec("ROLLBACK TO SAVEPOINT op").await?;
        self.exec("RELEASE SAVEPOINT op").await
    }

    async fn commit_batch(&mut self, rows: &BulkRows<'_>, head: HeadMove, open: bool, now: i64) -> Result<()> {
        if !open {
            self.begin().await?;
        }
        if (head.to.seq, head.to.digest) != (head.from.seq, head.from.digest) {
            self.move_head(head).await?;
        }
        if !rows.revocations.is_empty() {
            let r = rows.revocations;
            let q = sqlx::query(concat!(
                "INSERT INTO revocations (seq, kind, target, digest, reason, actor, created_at, expires_at)",
                " SELECT s, k, t, d, r, a, $7, e FROM UNNEST($1::bigint[], $2::text[], $3::bytea[], $4::bytea[],",
                " $5::text[], $6::text[], $8::bigint[]) AS u(s, k, t, d, r, a, e)"
            ))
            .bind(r.iter().map(|(_, e)| e.seq as i64).collect::<Vec<_>>())
            .bind(r.iter().map(|(_, e)| e.target.kind()).collect::<Vec<_>>())
            .bind(r.iter().map(|(_, e)| e.target.bytes()).collect::<Vec<_>>())
            .bind(r.iter().map(|(_, e)| e.digest.to_vec()).collect::<Vec<_>>())
            .bind(r.iter().map(|(a, _)| a.detail.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|(a, _)| a.actor.as_str()).collect::<Vec<_>>())
            .bind(now)
            .bind(r.iter().map(|(_, e)| e.expires_at).collect::<Vec<_>>());
            let done = q.execute(self.conn().await?).await;
            self.check(done)?;
        }
        if !rows.tokens.is_empty() {
            let t = rows.tokens;
            let q = sqlx::query(concat!(
                "INSERT INTO tokens (family, org, key_id, subject, created_at, expires_at, minted_caveats)",
                " SELECT f, o, k, s, $5, e, m FROM UNNEST($1::bytea[], $2::text[], $3::bigint[], $4::text[],",
                " $6::bigint[], $7::bigint[]) AS u(f, o, k, s, e, m)"
            ))
            .bind(t.iter().map(|r| r.family.to_vec()).collect::<Vec<_>>())
            .bind(t.iter().map(|r| r.org.as_str()).collect::<Vec<_>>())
            .bind(t.iter().map(|r| r.key_id.0 as i64).collect::<Vec<_>>())
            .bind(t.iter().map(|r| r.subject.as_deref()).collect::<Vec<_>>())
            .bind(now)
            .bind(t.iter().map(|r| r.expires_at).collect::<Vec<_>>())
            .bind(t.iter().map(|r| i64::from(r.minted_caveats)).collect::<Vec<_>>());
            let done = q.execute(self.conn().await?).await;
            self.check(done)?;
        }
        let audit: Vec<(u64, Option<&str>, &AuditRow)> = rows
            .audit
            .iter()
            .map(|a| (1, None, *a))
            .chain(rows.refusals.iter().map(|(count, key, a)| (*count, Some(key.as_str()), *a)))
            .collect();
        if !audit.is_empty() {
            // One statement for plain rows and refusal groups alike: a plain
            // row has no key, so it never conflicts.
            let q = sqlx::query(concat!(
                "INSERT INTO audit (at, actor, action, org, target, outcome, detail, count, refusal_key)",
                " SELECT $1, a, c, o, t, r, d, n, k FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[],",
                " $6::text[], $7::text[], $8::bigint[], $9::text[]) AS u(a, c, o, t, r, d, n, k)",
                " ON CONFLICT (refusal_key) WHERE refusal_key IS NOT NULL DO UPDATE SET count = audit.count + excluded.count"
            ))
            .bind(now)
            .bind(audit.iter().map(|(_, _, a)| a.actor.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|(_, _, a)| a.action).collect::<Vec<_>>())
            .bind(audit.iter().map(|(_, _, a)| a.org.as_deref()).collect::<Vec<_>>())
            .bind(audit.iter().map(|(_, _, a)| a.target.as_deref()).collect::<Vec<_>>())
            .bind(audit.iter().map(|(_, _, a)| a.outcome).collect::<Vec<_>>())
            .bind(audit.iter().map(|(_, _, a)| a.detail.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|(n, _, _)| *n as i64).collect::<Vec<_>>())
            .bind(audit.iter().map(|(_, k, _)| *k).collect::<Vec<_>>());
            let done = q.execute(self.conn().await?).await;
            self.check(done)?;
        }
        self.exec("COMMIT").await?;
        self.in_tx = false;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<bool> {
        if !self.in_tx || self.conn.is_none() {
            // Never began, committed, or the connection (and with it the
            // transaction) is gone.
            self.in_tx = false;
            return Ok(false);
        }
        self.in_tx = false;
        if let Err(e) = sqlx::query("ROLLBACK").execute(self.conn().await?).await {
            // Whatever went wrong, a connection that cannot roll back is not
            // used again: dropping it ends its transaction on the server.
            tracing::warn!(error = %e, "rollback failed; reconnecting");
            self.conn = None;
            return Ok(false);
        }
        Ok(true)
    }

    async fn org_exists(&mut self, org: &str) -> Result<bool> {
        let conn = self.conn().await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM orgs WHERE org = $1").bind(org).fetch_optional(conn).await?;
        Ok(exists.is_some())
    }

    async fn insert_org(&mut self, org: &str, now: i64) -> Result<()> {
        let conn = self.conn().await?;
        sqlx::query("INSERT INTO orgs (org, created_at) VALUES ($1, $2)").bind(org).bind(now).execute(conn).await?;
        Ok(())
    }

    async fn key_row(&mut self, key_id: KeyId) -> Result<Option<KeyRow>> {
        let conn = self.conn().await?;
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT org, retired_at FROM root_keys WHERE key_id = $1")
                .bind(key_id.0 as i64)
                .fetch_optional(conn)
                .await?;
        Ok(row.map(|(org, retired_at)| KeyRow { org, retired_at }))
    }

    async fn current_key(&mut self, org: &str) -> Result<Option<KeyId>> {
        let conn = self.conn().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT key_id FROM root_keys WHERE org = $1 AND retired_at IS NULL ORDER BY ordinal DESC LIMIT 1",
        )
        .bind(org)
        .fetch_one(conn)
        .await?;
        Ok(id.map(|id| KeyId(id as u64)))
    }

    async fn active_keys(&mut self, org: &str) -> Result<Vec<KeyId>> {
        let conn = self.conn().await?;
        let ids: Vec<i64> = sqlx::query_scalar("SELECT key_id FROM root_keys WHERE org = $1 AND retired_at IS NULL")
            .bind(org)
            .fetch_all(conn)
            .await?;
        Ok(ids.into_iter().map(|id| KeyId(id as u64)).collect())
    }

    async fn insert_key(&mut self, key_id: KeyId, org: &str, sealed: &[u8], now: i64) -> Result<()> {
        let conn = self.conn().await?;
        sqlx::query(
            "INSERT INTO root_keys (key_id, org, sealed, created_at, ordinal) \
             SELECT $1, $2, $3, $4, COALESCE(MAX(ordinal), 0) + 1 FROM root_keys",
        )
        .bind(key_id.0 as i64)
        .bind(org)
        .bind(sealed)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn retire_key(&mut self, key_id: KeyId, now: i64) -> Result<()> {
        let conn = self.conn().await?;
        sqlx::query("UPDATE root_keys SET retired_at = $1 WHERE key_id = $2")
            .bind(now)
            .bind(key_id.0 as i64)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert_revocation(&mut self, event: &LogEvent, audit: &AuditRow, now: i64) -> Result<()> {
        let conn = self.conn().await?;
        sqlx::query(concat!(
            "INSERT INTO revocations (seq, kind, target, digest, reason, actor, created_at, expires_at)",
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(event.seq as i64)
        .bind(event.target.kind())
        .bind(event.target.bytes())
        .bind(event.digest.as_slice())
        .bind(&audit.detail)
        .bind(&audit.actor)
        .bind(now)
        .bind(event.expires_at)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn oldest_needed(&mut self, expired_before: i64) -> Result<Option<u64>> {
        let conn = self.conn().await?;
        let needed: Option<i64> =
            sqlx::query_scalar("SELECT MIN(seq) FROM revocations WHERE expires_at IS NULL OR expires_at > $1")
                .bind(expired_before)
                .fetch_one(conn)
                .await?;
        Ok(needed.map(|s| s as u64))
    }

    async fn delete_log_before(&mut self, seq: u64) -> Result<u64> {
        let conn = self.conn().await?;
        let done = sqlx::query("DELETE FROM revocations WHERE seq < $1").bind(seq as i64).execute(conn).await?;
        Ok(done.rows_affected())
    }

    async fn set_meta(&mut self, name: &str, value: &str) -> Result<()> {
        let conn = self.conn().await?;
        sqlx::query(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn audit_ids(&mut self) -> Result<Option<(i64, i64)>> {
        let conn = self.conn().await?;
        let (first, last): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT min(id), max(id) FROM audit").fetch_one(conn).await?;
        Ok(first.zip(last))
    }

    async fn audit_at_or_after(&mut self, id: i64) -> Result<Option<(i64, i64)>> {
        let conn = self.conn().await?;
        Ok(sqlx::query_as("SELECT id, at FROM audit WHERE id >= $1 ORDER BY id LIMIT 1")
            .bind(id)
            .fetch_optional(conn)
            .await?)
    }

    async fn delete_audit_before(&mut self, id: i64) -> Result<u64> {
        let conn = self.conn().await?;
        let done = sqlx::query("DELETE FROM audit WHERE id < $1").bind(id).execute(conn).await?;
        Ok(done.rows_affected())
    }

    async fn insert_audit(&mut self, a: &AuditRow, now: i64) -> Result<()> {
        let conn = self.conn().await?;
        sqlx::query(
            "INSERT INTO audit (at, actor, action, org, target, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now)
        .bind(&a.actor)
        .bind(a.action)
        .bind(&a.org)
        .bind(&a.target)
        .bind(a.outcome)
        .bind(&a.detail)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            conn.close().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ReadStore for PgReads {
    async fn registered(&self, family: &FamilyId) -> Result<Option<RegistryRow>> {
        let row: Option<(String, Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT org, expires_at, minted_caveats FROM tokens WHERE family = $1")
                .bind(family.0.as_slice())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(org, expires_at, minted_caveats)| RegistryRow { org, expires_at, minted_caveats }))
    }

    async fn audit(&self, org: Option<&str>, after: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditColumns> = match after {
            Some(after) => {
                sqlx::query_as(concat!(
                    "SELECT id, at, actor, action, org, target, outcome, detail, count FROM audit",
                    " WHERE id > $2 AND ($1::text IS NULL OR org = $1) ORDER BY id LIMIT $3"
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
                    " WHERE ($1::text IS NULL OR org = $1) ORDER BY id DESC LIMIT $2"
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
        Ok(sqlx::query_scalar("SELECT digest FROM revocations WHERE seq = $1")
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
