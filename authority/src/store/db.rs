//! Which database `--db` names, and the store operations that pick the
//! store by it: a `postgres://` (or `postgresql://`) URL is PostgreSQL,
//! anything else a SQLite file. A URL is shown only without its password.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::{Opened, postgres, sqlite};
use crate::error::Result;

/// A database the authority keeps its state in.
#[derive(Clone)]
pub enum Db {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database. The options may hold a password: neither
    /// `Debug` nor `Display` shows it.
    Postgres(Box<PgConnectOptions>),
}

impl Db {
    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }
}

impl From<&Path> for Db {
    fn from(path: &Path) -> Self {
        Db::Sqlite(path.to_owned())
    }
}

impl From<&PathBuf> for Db {
    fn from(path: &PathBuf) -> Self {
        Db::Sqlite(path.clone())
    }
}

impl From<PathBuf> for Db {
    fn from(path: PathBuf) -> Self {
        Db::Sqlite(path)
    }
}

impl From<&Db> for Db {
    fn from(db: &Db) -> Self {
        db.clone()
    }
}

impl FromStr for Db {
    type Err = String;

    /// A `postgres://` URL (libpq's form: `sslmode`, `sslrootcert`, … in
    /// its query; the password also from `PGPASSWORD` or `~/.pgpass`), or
    /// a SQLite file's path. The error never repeats the URL (it may hold
    /// a password).
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(s)
                .map_err(|e| format!("not a usable PostgreSQL URL ({})", redacted_reason(&e.to_string(), s)))?;
            return Ok(Db::Postgres(Box::new(options.application_name("tally-authority"))));
        }
        if s.is_empty() {
            return Err("empty: give a SQLite file's path or a postgres:// URL".into());
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(format!(
                "{scheme}:// is not a database Tally keeps state in: give a SQLite file's path or a postgres:// URL"
            ));
        }
        Ok(Db::Sqlite(s.into()))
    }
}

/// A parse error's text with the URL, should the driver quote it, cut out.
fn redacted_reason(reason: &str, url: &str) -> String {
    if reason.contains(url) { reason.replace(url, "<the URL>") } else { reason.to_owned() }
}

impl fmt::Display for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Db::Sqlite(path) => write!(f, "{}", path.display()),
            Db::Postgres(o) => {
                let database = o.get_database().unwrap_or("");
                match o.get_socket() {
                    Some(socket) => write!(f, "postgres://{}@{}/{database}", o.get_username(), socket.display()),
                    None => write!(f, "postgres://{}@{}:{}/{database}", o.get_username(), o.get_host(), o.get_port()),
                }
            }
        }
    }
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Db({self})")
    }
}

/// Creates the database's schema with its epoch and an empty log; refuses a
/// database that holds one already. On failure nothing is left behind.
pub(crate) async fn create(db: &Db, epoch: &str) -> Result<()> {
    match db {
        Db::Sqlite(path) => sqlite::create(path, epoch).await,
        Db::Postgres(options) => postgres::create(options, epoch).await,
    }
}

/// How a process holds the database it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// To serve it: on PostgreSQL beside any number of replicas; a SQLite
    /// file serves one process.
    Serve,
    /// Alone (`epoch bump`): refused while anyone serves it.
    Exclusive,
}

/// Opens an initialised database.
pub(crate) async fn open(db: &Db, access: Access) -> Result<Opened> {
    match db {
        Db::Sqlite(path) => sqlite::open(path).await,
        Db::Postgres(options) => postgres::open(options, access).await,
    }
}

/// Removes what a failed `init` made.
pub(crate) async fn remove(db: &Db) {
    match db {
        Db::Sqlite(path) => sqlite::remove(path),
        Db::Postgres(options) => postgres::remove(options).await,
    }
}

/// Gives the database a new epoch (after a restore from backup, or a
/// failover that may have lost acknowledged history): every verifier then
/// flushes its cache. Refused while an authority serves the database.
pub(crate) async fn bump_epoch(db: &Db, epoch: &str) -> Result<String> {
    let Opened { mut writes, reads, .. } = open(db, Access::Exclusive).await?;
    let old = writes.load().await?.epoch;
    // One statement, committed on its own.
    writes.set_meta("epoch", epoch).await?;
    writes.close().await?;
    reads.close().await;
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_postgres_and_anything_else_a_path() {
        assert!(matches!("/var/lib/tally/authority.db".parse(), Ok(Db::Sqlite(_))));
        assert!(matches!("authority.db".parse(), Ok(Db::Sqlite(_))));
        assert!("postgres://tally@db.internal:5433/tally".parse::<Db>().unwrap().is_postgres());
        assert!("postgresql://tally@db.internal/tally?sslmode=verify-full".parse::<Db>().unwrap().is_postgres());
        assert!("mysql://x@y/z".parse::<Db>().unwrap_err().contains("mysql:// is not a database"));
        assert!("".parse::<Db>().is_err());
    }

    #[test]
    fn a_password_is_never_shown() {
        let db: Db = "postgres://tally:hunter2-secret@db.internal:5433/tally".parse().unwrap();
        assert_eq!(db.to_string(), "postgres://tally@db.internal:5433/tally");
        assert!(!format!("{db:?}").contains("hunter2"));
        let bad = "postgres://tally:hunter2-secret@db.internal:notaport/tally".parse::<Db>().unwrap_err();
        assert!(!bad.contains("hunter2"), "{bad}");
    }
}
