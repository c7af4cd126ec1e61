//! PostgreSQL for tests: a throwaway cluster started from the installed
//! PostgreSQL (`initdb` + `pg_ctl` into a temp dir on a free port of
//! 127.0.0.1, as the `postgres` user when run as root; stopped and removed
//! when dropped, also on a failing test), and the store every harness
//! database lives in ([`TestStore`]): SQLite unless `TALLY_TEST_STORE` says
//! `postgres`, then a fresh database per test on `TALLY_TEST_POSTGRES_URL`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail, ensure};
use tempfile::TempDir;

/// Which store the harnesses put their databases in: `sqlite` (the
/// default) or `postgres`.
pub const STORE_ENV: &str = "TALLY_TEST_STORE";
/// A PostgreSQL URL whose user may create databases (`postgres://…/postgres`).
pub const POSTGRES_URL_ENV: &str = "TALLY_TEST_POSTGRES_URL";
/// When set, each database a test creates on PostgreSQL appends the test's
/// name to this file: `cargo xtask test` counts the tests run against it.
pub const POSTGRES_LOG_ENV: &str = "TALLY_TEST_POSTGRES_LOG";

/// The store of this test run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStore {
    Sqlite,
    /// Databases are created through this URL (its path names the database
    /// to connect to for that).
    Postgres(String),
}

impl TestStore {
    /// From [`STORE_ENV`] and [`POSTGRES_URL_ENV`]. Panics on a store it
    /// does not know, or `postgres` without a URL: a run that asked for
    /// PostgreSQL never quietly tests SQLite.
    pub fn from_env() -> Self {
        match std::env::var(STORE_ENV).as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => TestStore::Sqlite,
            Ok("postgres") => {
                let url = std::env::var(POSTGRES_URL_ENV)
                    .unwrap_or_else(|_| panic!("{STORE_ENV}=postgres needs {POSTGRES_URL_ENV}"));
                TestStore::Postgres(url)
            }
            Ok(other) => panic!("{STORE_ENV}={other}: the stores are sqlite and postgres"),
        }
    }

    /// Whether this run's databases are on PostgreSQL.
    pub fn is_postgres() -> bool {
        matches!(Self::from_env(), TestStore::Postgres(_))
    }
}

/// A database for one test, in this run's store: a file in `dir` on SQLite,
/// a fresh database on PostgreSQL (dropped when this is dropped).
#[derive(Debug)]
pub struct TestDb {
    /// What `--db` takes.
    arg: String,
    /// On PostgreSQL: the admin URL and the database's name, to drop it.
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A new, empty database for a test (`dir` holds it on SQLite).
    pub fn new(dir: &Path) -> Self {
        Self::try_new(dir).expect("creating a test database")
    }

    pub fn try_new(dir: &Path) -> anyhow::Result<Self> {
        Self::try_new_in(TestStore::from_env(), dir)
    }

    /// A new, empty database in `store`, whatever the run's.
    pub fn try_new_in(store: TestStore, dir: &Path) -> anyhow::Result<Self> {
        match store {
            TestStore::Sqlite => {
                Ok(Self { arg: dir.join("authority.db").to_str().context("temp dir is UTF-8")?.into(), postgres: None })
            }
            TestStore::Postgres(admin) => {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let name = format!("tally_t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
                psql(&admin, &format!("CREATE DATABASE {name}"))?;
                if let Ok(log) = std::env::var(POSTGRES_LOG_ENV) {
                    use std::io::Write;
                    let test = std::thread::current().name().unwrap_or("?").to_owned();
                    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
                    writeln!(f, "{test}")?;
                }
                let arg = with_database(&admin, &name)?;
                Ok(Self { arg, postgres: Some((admin, name)) })
            }
        }
    }

    /// A SQLite file in `dir`, whatever the run's store (a placeholder
    /// left behind by a harness that handed its database on).
    pub fn sqlite_in(dir: &Path) -> Self {
        Self { arg: dir.join("authority.db").to_string_lossy().into_owned(), postgres: None }
    }

    /// The database as the authority's library takes it.
    pub fn authority_db(&self) -> tally_authority::Db {
        self.arg.parse().expect("a test database parses")
    }

    /// What `--db` takes: the SQLite file's path or the database's URL.
    pub fn arg(&self) -> &str {
        &self.arg
    }

    /// The SQLite file, when the store is SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.postgres.is_none().then(|| Path::new(&self.arg))
    }

    /// Whether the database is on PostgreSQL.
    /// `--db` reaching this PostgreSQL database through `via` (a proxy in
    /// front of its server) instead of the server's own address.
    pub fn arg_via(&self, via: std::net::SocketAddr) -> String {
        let (scheme, rest) = self.arg.split_once("://").expect("a postgres:// URL");
        let (authority, path) = rest.split_once('/').expect("a URL with a database");
        let user = authority.rsplit_once('@').map_or(String::new(), |(user, _)| format!("{user}@"));
        format!("{scheme}://{user}{via}/{path}")
    }

    /// The server's address (PostgreSQL).
    pub fn server_addr(&self) -> std::net::SocketAddr {
        let rest = self.arg.split_once("://").expect("a postgres:// URL").1;
        let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        host_port.parse().expect("the test database's URL names 127.0.0.1:PORT")
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// A connection to the database (`read_only` on SQLite), through
    /// sqlx's `Any` driver: SQL both stores understand (`$1` placeholders,
    /// each used once and in order).
    pub async fn connect(&self, read_only: bool) -> anyhow::Result<sqlx::AnyConnection> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let url = match self.sqlite_path() {
            Some(path) if read_only => format!("sqlite://{}?mode=ro", path.display()),
            Some(path) => format!("sqlite://{}", path.display()),
            None => self.arg.clone(),
        };
        Ok(sqlx::AnyConnection::connect(&url).await?)
    }

    /// Empties the database (as for a new one): the SQLite file and its WAL
    /// removed, or the PostgreSQL database dropped and created again.
    pub fn recreate(&self) -> anyhow::Result<()> {
        match &self.postgres {
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.arg));
                }
                Ok(())
            }
            Some((admin, name)) => {
                psql(admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
                psql(admin, &format!("CREATE DATABASE {name}"))
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres {
            let _ = psql(admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let rest = base.split_once("://").context("a postgres:// URL")?.1;
    let cut = rest.find('/').map_or(base.len(), |i| base.len() - rest.len() + i);
    let mut out = format!("{}/{name}", &base[..cut]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// Runs one SQL command through `psql` (no async runtime needed, so it
/// works in `Drop` too).
pub fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    ensure!(out.status.success(), "psql -c {sql:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

/// The directory of the newest installed PostgreSQL's server programs
/// (`/usr/lib/postgresql/<version>/bin` on Debian), or of `pg_ctl` on PATH.
pub fn server_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

/// A throwaway PostgreSQL cluster: its own data directory in a temp dir,
/// listening on 127.0.0.1 and a free port (and a socket in the temp dir),
/// trust authentication for the `postgres` user. Stopped (immediately) and
/// removed when dropped.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    /// Run the server programs as `postgres` (we are root, which PostgreSQL refuses to run as).
    as_postgres: bool,
}

impl PgCluster {
    /// `initdb` and start a cluster. Fails when no PostgreSQL is installed.
    pub fn start() -> anyhow::Result<Self> {
        let bin = server_bin_dir().context("no PostgreSQL server installed (initdb not found)")?;
        let dir = tempfile::Builder::new().prefix("tally-pg-").tempdir()?;
        let as_postgres = is_root();
        if as_postgres {
            let ids = Command::new("id").args(["-u", "postgres"]).output()?;
            let uid: u32 = String::from_utf8_lossy(&ids.stdout).trim().parse().context("no postgres user")?;
            let gids = Command::new("id").args(["-g", "postgres"]).output()?;
            let gid: u32 = String::from_utf8_lossy(&gids.stdout).trim().parse().context("no postgres group")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let port = free_port()?;
        let cluster = Self { bin, dir, port, as_postgres };
        let data = cluster.data();
        cluster
            .run("initdb", &["-D", path_str(&data)?, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])?;
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nmax_connections = 400\n\
             shared_buffers = 32MB\nfsync = on\nsynchronous_commit = on\nlog_min_messages = warning\n",
            path_str(cluster.dir.path())?
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf"))?;
        std::io::Write::write_all(&mut f, conf.as_bytes())?;
        cluster.pg_ctl(&["start", "-w", "-t", "60"])?;
        Ok(cluster)
    }

    /// A URL of the `postgres` database (the user may create databases).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's (postmaster's) pid: its backends are its children.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid"))?;
        Ok(text.lines().next().context("empty postmaster.pid")?.trim().parse()?)
    }

    /// `pg_ctl restart -m fast`: every connection is cut, the server comes back.
    pub fn restart_fast(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60"])
    }

    /// `pg_ctl stop -m immediate`.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "60"])
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let mut all = vec!["-D", path_str(&data)?, "-l", path_str(&log)?];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all).map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            e.context(format!("server log (last lines, newest first):\n{}", tail.join("\n")))
        })
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).stdin(Stdio::null()).current_dir(self.dir.path()).output()?;
        if !out.status.success() {
            bail!(
                "{program} {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("temp path is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        let u = |s| with_database(s, "tally_t1").unwrap();
        assert_eq!(u("postgres://postgres@db.example:5433/postgres"), "postgres://postgres@db.example:5433/tally_t1");
        assert_eq!(u("postgres://u:p@h:1/postgres?sslmode=require"), "postgres://u:p@h:1/tally_t1?sslmode=require");
        assert_eq!(u("postgresql://h"), "postgresql://h/tally_t1");
    }
}
