//! The database driver's errors, as the rest of the authority sees them:
//! a database that cannot be reached now (a lost connection, a server
//! restarting or shutting down, a pool that timed out, SQLite busy past its
//! timeout) is [`Error::StorageUnavailable`], worth a retry and answered
//! `UNAVAILABLE`; anything else is [`Error::Storage`], answered `INTERNAL`.
//! Either keeps the driver's error whole for the log, never for the caller.

use crate::error::Error;

/// SQLSTATE classes and codes of a server that is there but cannot serve
/// now: class 08 (connection exception), 57P01..57P03 (shutting down,
/// crash shutdown, cannot connect now), 53300 (too many connections), 25006
/// (read-only transaction: a standby, after a failover).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "25006")
}

/// SQLite's busy and locked result codes (primary and extended codes alike
/// end in them: `5`, `6`, `261`, `517`, …; checked as numbers).
fn sqlite_busy(code: &str) -> bool {
    code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

/// Whether `e` says the database cannot be reached now.
pub(super) fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| unavailable_sqlstate(&c) || sqlite_busy(&c)),
        _ => false,
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) { Error::StorageUnavailable(Box::new(e)) } else { Error::Storage(Box::new(e)) }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => Error::Config(format!(
                "the database's schema is newer than this tally-authority (it has migration {v}, which this \
                 binary does not know): run the tally-authority that migrated it, or a newer one"
            )),
            sqlx::migrate::MigrateError::Execute(e) => Error::from(e),
            e => Error::Migrate(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_restarts_are_unavailable() {
        for code in ["08006", "08001", "57P01", "57P03", "53300", "25006"] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02", "40001"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
        assert!(sqlite_busy("5") && sqlite_busy("517") && sqlite_busy("6"));
        assert!(!sqlite_busy("1") && !sqlite_busy("19") && !sqlite_busy("2067"));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(Error::from(sqlx::Error::Io(refused)), Error::StorageUnavailable(_)));
        assert!(matches!(Error::from(sqlx::Error::RowNotFound), Error::Storage(_)));
    }
}
