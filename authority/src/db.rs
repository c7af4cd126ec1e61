//! Opening the SQLite database: pragmas (WAL, `synchronous=FULL`,
//! `busy_timeout`), migrations, and loading the in-memory state.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};
use tally_token::KeyId;

use crate::error::{Error, Result};
use crate::kek::Kek;
use crate::log::Target;
use crate::state::{KeyEntry, KeyRing, LogHead, OrgEntry, Revoked};

/// How long a connection waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections.
const READERS: u32 = 4;

/// The migrations under `authority/migrations`, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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
pub fn lock(path: &Path) -> Result<std::fs::File> {
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

/// The writer's own connection (the only one that writes).
pub async fn open_writer(path: &Path, create: bool) -> Result<SqliteConnection> {
    let mut conn = options(path, create)?.connect().await?;
    MIGRATOR.run(&mut conn).await?;
    Ok(conn)
}

/// The readers' pool.
pub async fn open_readers(path: &Path) -> Result<SqlitePool> {
    Ok(SqlitePoolOptions::new()
        .max_connections(READERS)
        // A local file cannot drop a connection: no ping round trip before each use.
        .test_before_acquire(false)
        .connect_with(options(path, false)?.read_only(true))
        .await?)
}

/// Everything loaded at startup.
#[derive(Debug)]
pub struct Loaded {
    pub epoch: String,
    pub keys: KeyRing,
    pub revoked: Revoked,
    pub head: LogHead,
    /// Branch revocations in the log, per family.
    pub branches: BranchCounts,
}

/// Branch revocations in the log per family (each bounded by
/// `Settings::max_branch_revocations`).
pub type BranchCounts = std::collections::HashMap<[u8; 16], u32>;

/// Reads the state, opening every sealed key with `kek` (a wrong KEK fails here).
pub async fn load(conn: &mut SqliteConnection, kek: &Kek) -> Result<Loaded> {
    let epoch: String = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'epoch'")
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::Config("database is not initialised (no epoch): run `tally-authority init`".into()))?;

    let mut keys = KeyRing::default();
    for row in sqlx::query("SELECT org, created_at FROM orgs").fetch_all(&mut *conn).await? {
        let org: String = row.get(0);
        keys.orgs.insert(org, OrgEntry { created_at: row.get(1), current_key: KeyId(0) });
    }
    for row in sqlx::query("SELECT key_id, org, sealed, created_at, retired_at FROM root_keys ORDER BY key_id")
        .fetch_all(&mut *conn)
        .await?
    {
        let key_id = KeyId(row.get::<i64, _>(0) as u64);
        let org: String = row.get(1);
        let sealed: Vec<u8> = row.get(2);
        let retired_at: Option<i64> = row.get(4);
        let derived = kek.open(key_id, &org, &sealed)?.derive();
        if retired_at.is_none()
            && let Some(o) = keys.orgs.get_mut(&org)
        {
            o.current_key = key_id; // ascending order: the newest active key wins
        }
        keys.keys.insert(key_id, KeyEntry { org, derived, created_at: row.get(3), retired_at });
    }

    let revoked = Revoked { ids: load_revoked(conn).await? };

    let head = load_head(conn).await?;
    let branches = load_branch_counts(conn).await?;
    Ok(Loaded { epoch, keys, revoked, head, branches })
}

/// The log head as stored: last seq and digest, oldest retained seq.
pub(crate) async fn load_head(conn: &mut SqliteConnection) -> Result<LogHead> {
    let head = match sqlx::query("SELECT seq, digest FROM revocations ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(row) => {
            let digest: Vec<u8> = row.get(1);
            LogHead {
                seq: row.get::<i64, _>(0) as u64,
                digest: digest.try_into().map_err(|_| Error::Config("corrupt revocation digest".into()))?,
                retained_from: 0,
            }
        }
        None => LogHead::default(),
    };
    let retained: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE name = 'retained_from'").fetch_optional(&mut *conn).await?;
    let retained_from = retained.and_then(|v| v.parse().ok()).unwrap_or(1);
    // Pruning never removes the newest entry, so the head is always in the table.
    Ok(LogHead { retained_from: retained_from.max(1), ..head })
}

/// How many branch revocations the log holds per family.
pub(crate) async fn load_branch_counts(conn: &mut SqliteConnection) -> Result<BranchCounts> {
    let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
        "SELECT substr(target, 1, 16), COUNT(*) FROM revocations WHERE kind = 'branch' GROUP BY substr(target, 1, 16)",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(family, n)| Some((family.try_into().ok()?, u32::try_from(n).unwrap_or(u32::MAX))))
        .collect())
}

/// Every revoked family and branch id in the log (key revocations live in the key ring).
pub(crate) async fn load_revoked(conn: &mut SqliteConnection) -> Result<crate::state::RevokedIds> {
    let mut ids = crate::state::RevokedIds::default();
    for row in sqlx::query("SELECT kind, target FROM revocations WHERE kind != 'key'").fetch_all(&mut *conn).await? {
        let kind: String = row.get(0);
        let bytes: Vec<u8> = row.get(1);
        if let Some(id) = Target::from_columns(&kind, &bytes).and_then(|t| t.revoked_id()) {
            ids.insert(id);
        }
    }
    Ok(ids)
}
