//! The real `tally-authority` as a process: a temp dir with a KEK file and a
//! database made by `init` (in this run's store: [`crate::TestStore`]), then `serve` on 127.0.0.1 (port 0 the first time,
//! the same port on restart) with a connected gRPC client; over mTLS when
//! the options carry a certificate set.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tally_proto::v1 as pb;
use tally_proto::v1::authority_client::AuthorityClient;
use tempfile::TempDir;
use tonic::Request;
use tonic::transport::Channel;

use crate::binary::{AUTHORITY, binary_in};
use crate::certs::CertFiles;
use crate::child::Child;
use crate::poll::DEADLINE;
use crate::postgres::{TestDb, TestStore};

/// The KEK every harness authority uses (tests need to know it to look for it).
pub const TEST_KEK_HEX: &str = "8f3c6a1e9b2d4f7081a5c3e6d9b2f4a7c1e8d3b6a9f2c5e8b1d4a7c3f6e9b2d5";
/// How long a graceful stop may take.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// What `serve` prints first on stdout.
const LISTENING: &str = "listening on ";

/// How to run the authority.
#[derive(Debug, Clone)]
pub struct AuthorityOptions {
    /// `RUST_LOG` of every process (init and serve).
    pub rust_log: String,
    /// `--heartbeat-interval`.
    pub heartbeat: Duration,
    /// Extra `serve` arguments.
    pub serve_args: Vec<String>,
    /// Extra environment variables of `serve` (e.g. `OTEL_*`).
    pub env: Vec<(String, String)>,
    /// Serve mTLS with this set: its authority certificate, client
    /// certificates required from its CA. The harness's own client presents
    /// the operator certificate.
    pub tls: Option<CertFiles>,
    /// Permission bits of the KEK file (its owner's alone by default, as an
    /// operator should keep it; the authority warns otherwise).
    pub kek_mode: u32,
    /// The store of its database; the run's ([`TestStore::from_env`]) when unset.
    pub store: Option<TestStore>,
}

impl Default for AuthorityOptions {
    fn default() -> Self {
        Self {
            rust_log: "info".into(),
            heartbeat: Duration::from_millis(200),
            serve_args: Vec::new(),
            env: Vec::new(),
            tls: None,
            kek_mode: 0o600,
            store: None,
        }
    }
}

/// A running (or stopped) authority process with its database. Dropping it
/// kills the process and removes the temp dir.
pub struct Authority {
    options: AuthorityOptions,
    bootstrap: String,
    addr: SocketAddr,
    client: AuthorityClient<Channel>,
    /// The current `serve` process.
    child: Child,
    /// Earlier `serve` processes (exited), kept for their output.
    past: Vec<Child>,
    /// `init`'s standard error.
    init_log: Vec<String>,
    kek_file: PathBuf,
    /// What `serve` is given as `--db` (the database's URL, or a proxy's in front of it).
    db_arg: String,
    // After the processes: a PostgreSQL database is dropped once they (and
    // every replica's) are gone.
    db: Arc<TestDb>,
    // Last: removed after the processes are gone.
    dir: TempDir,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority").field("addr", &self.addr).field("db", &self.db).field("child", &self.child).finish()
    }
}

impl Authority {
    /// Inits a database and serves it with the default options. Panics on failure.
    pub async fn start() -> Self {
        Self::start_with(AuthorityOptions::default()).await
    }

    /// Inits a database and serves it. Panics on failure.
    pub async fn start_with(options: AuthorityOptions) -> Self {
        Self::try_start(options).await.expect("starting tally-authority")
    }

    async fn try_start(options: AuthorityOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = options.store.clone().unwrap_or_else(TestStore::from_env);
        let db = TestDb::try_new_in(store, dir.path())?;
        let kek_file = dir.path().join("kek.hex");
        std::fs::write(&kek_file, format!("{TEST_KEK_HEX}\n"))?;
        std::fs::set_permissions(&kek_file, std::fs::Permissions::from_mode(options.kek_mode))?;

        let bin = binary_in(AUTHORITY.package, AUTHORITY.name);
        let mut init = Child::spawn(&bin, init_args(db.arg(), &kek_file), &[("RUST_LOG", &options.rust_log)])?;
        let status = init.wait(DEADLINE).await?;
        let out = init.stdout().snapshot();
        let init_log = init.stderr().snapshot();
        ensure!(status.success(), "init failed ({status}): {}", init_log.join("\n"));
        let [bootstrap] = out.as_slice() else { bail!("init must print exactly one line, printed {out:?}") };
        ensure!(bootstrap.starts_with(tally_token::TEXT_PREFIX), "init printed {bootstrap:?}, not a token");
        let bootstrap = bootstrap.clone();

        let loopback_any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (child, addr) = serve(&bin, db.arg(), &kek_file, loopback_any, &options).await?;
        let client = connect(addr, options.tls.as_ref()).await?;
        let db_arg = db.arg().to_owned();
        let db = Arc::new(db);
        Ok(Self { options, bootstrap, addr, client, child, past: Vec::new(), init_log, kek_file, db_arg, db, dir })
    }

    /// Another authority process on this one's database (a replica: PostgreSQL
    /// only), with the same KEK and options; the bootstrap token is this one's.
    pub async fn start_replica(&self) -> Self {
        self.try_start_replica(self.db.arg()).await.expect("starting a tally-authority replica")
    }

    /// [`Authority::start_replica`] reaching the database at `db_arg` (a URL
    /// through a proxy in front of it: [`TestDb::arg_via`]).
    pub async fn start_replica_via(&self, db_arg: &str) -> Self {
        self.try_start_replica(db_arg).await.expect("starting a tally-authority replica")
    }

    async fn try_start_replica(&self, db_arg: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let kek_file = dir.path().join("kek.hex");
        std::fs::copy(&self.kek_file, &kek_file)?;
        let bin = binary_in(AUTHORITY.package, AUTHORITY.name);
        let loopback_any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (child, addr) = serve(&bin, db_arg, &kek_file, loopback_any, &self.options).await?;
        let client = connect(addr, self.options.tls.as_ref()).await?;
        Ok(Self {
            options: self.options.clone(),
            bootstrap: self.bootstrap.clone(),
            addr,
            client,
            child,
            past: Vec::new(),
            init_log: Vec::new(),
            kek_file,
            db_arg: db_arg.to_owned(),
            db: self.db.clone(),
            dir,
        })
    }

    /// A client of the current process (cheap clone of one channel).
    pub fn client(&self) -> AuthorityClient<Channel> {
        self.client.clone()
    }

    /// The bootstrap operator token `init` printed.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Where it listens (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://ADDR` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The SQLite database file. Panics on PostgreSQL: a test that reads
    /// the file itself is SQLite's (see [`Authority::db`]).
    pub fn db_path(&self) -> &Path {
        self.db.sqlite_path().expect("db_path() is SQLite's: this run's store is PostgreSQL")
    }

    /// The database, in whichever store this run uses.
    pub fn db(&self) -> &TestDb {
        &self.db
    }

    /// Connects to the database (either store), read-only on SQLite, for
    /// a test to inspect it with SQL that both understand.
    pub async fn db_connect(&self) -> anyhow::Result<sqlx::AnyConnection> {
        self.db.connect(true).await
    }

    /// [`Authority::db_connect`] that may write (or lock).
    pub async fn db_connect_writable(&self) -> anyhow::Result<sqlx::AnyConnection> {
        self.db.connect(false).await
    }

    /// The temp dir holding the database and the KEK file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The KEK, as written to the KEK file.
    pub fn kek_hex(&self) -> &str {
        TEST_KEK_HEX
    }

    /// Pid of the current `serve` process.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The current `serve` process.
    pub fn process(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Kills the current process with SIGKILL (no chance to clean up).
    pub fn kill_9(&mut self) -> ExitStatus {
        self.child.kill_9()
    }

    /// SIGTERM and waits for a graceful exit; the error says when it took too long.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.stop(STOP_DEADLINE).await
    }

    /// Serves the same database again on the same port, after `kill_9` or
    /// `stop`, and reconnects `client()`. Panics when the old process still runs.
    pub async fn restart(&mut self) {
        self.try_restart().await.expect("restarting tally-authority")
    }

    /// [`Authority::restart`] that returns the failure instead of panicking
    /// (for callers that must clean up or report first, as `cargo xtask soak`).
    pub async fn try_restart(&mut self) -> anyhow::Result<()> {
        if self.child.try_status().is_none() {
            bail!("the authority is still running: kill_9() or stop() it first");
        }
        let bin = binary_in(AUTHORITY.package, AUTHORITY.name);
        let (child, addr) = serve(&bin, &self.db_arg, &self.kek_file, self.addr, &self.options).await?;
        ensure!(addr == self.addr, "restarted on {addr}, not {}", self.addr);
        self.past.push(std::mem::replace(&mut self.child, child));
        self.client = connect(addr, self.options.tls.as_ref()).await?;
        Ok(())
    }

    /// Standard output of every `serve` run so far (not `init`'s, which is the token).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.runs().flat_map(|c| c.stdout().snapshot()).collect()
    }

    /// Standard error (the log) of every `serve` run so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.runs().flat_map(|c| c.stderr().snapshot()).collect()
    }

    /// Every line the processes wrote except the bootstrap token on `init`'s
    /// stdout: `init`'s stderr, then stdout and stderr of each `serve` run.
    pub fn log_lines(&self) -> Vec<String> {
        let mut lines = self.init_log.clone();
        for c in self.runs() {
            lines.extend(c.stdout().snapshot());
            lines.extend(c.stderr().snapshot());
        }
        lines
    }

    fn runs(&self) -> impl Iterator<Item = &Child> {
        self.past.iter().chain(std::iter::once(&self.child))
    }

    /// Creates an org with the bootstrap token; returns its first key id.
    pub async fn create_org(&self, org: &str) -> u64 {
        let req = pb::CreateOrgRequest { org: org.into() };
        self.client().create_org(bearer(req, &self.bootstrap)).await.expect("CreateOrg").into_inner().key_id
    }

    /// Mints for `org` with the bootstrap token.
    pub async fn mint(&self, org: &str, caveats: &[&str]) -> pb::MintResponse {
        let caveats = caveats.iter().map(|c| c.to_string()).collect();
        let req = pb::MintRequest { org: org.into(), caveats, ..Default::default() };
        self.client().mint(bearer(req, &self.bootstrap)).await.expect("Mint").into_inner()
    }

    /// Revokes a family with the bootstrap token; returns its seq.
    pub async fn revoke_family(&self, family: &str) -> u64 {
        let target = Some(pb::revoke_request::Target::Family(family.into()));
        let req = pb::RevokeRequest { target, reason: String::new() };
        self.client().revoke(bearer(req, &self.bootstrap)).await.expect("Revoke").into_inner().seq
    }

    /// A token of Tally's own API: `role = ROLE` plus `extra` caveats.
    pub async fn system_token(&self, role: &str, extra: &[&str]) -> String {
        let mut caveats = vec![format!("role = {role}")];
        caveats.extend(extra.iter().map(|c| c.to_string()));
        let req = pb::MintRequest { org: "system".into(), caveats, ..Default::default() };
        self.client().mint(bearer(req, &self.bootstrap)).await.expect("Mint (system)").into_inner().token
    }

    /// Verifies as a verifier would (operators get no chain signatures).
    pub async fn verify(&self, bundle: &str) -> pb::VerifyResponse {
        let verifier = self.system_token("verifier", &[]).await;
        let req = pb::VerifyRequest { bundle: bundle.into() };
        self.client().verify(bearer(req, &verifier)).await.expect("Verify").into_inner()
    }
}

fn init_args(db: &str, kek_file: &Path) -> Vec<std::ffi::OsString> {
    vec!["init".into(), "--db".into(), db.into(), "--kek-file".into(), kek_file.into()]
}

/// Starts `serve` on `listen` and waits for the address it reports.
async fn serve(
    bin: &Path,
    db: &str,
    kek_file: &Path,
    listen: SocketAddr,
    options: &AuthorityOptions,
) -> anyhow::Result<(Child, SocketAddr)> {
    let heartbeat = format!("{}ms", options.heartbeat.as_millis());
    let mut args: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--db".into(),
        db.into(),
        "--kek-file".into(),
        kek_file.into(),
        "--listen".into(),
        listen.to_string().into(),
        "--heartbeat-interval".into(),
        heartbeat.into(),
    ];
    if let Some(tls) = &options.tls {
        args.extend([
            "--tls-cert".into(),
            tls.authority_cert.clone().into(),
            "--tls-key".into(),
            tls.authority_key.clone().into(),
            "--tls-client-ca".into(),
            tls.ca.clone().into(),
        ]);
    }
    args.extend(options.serve_args.iter().map(Into::into));
    let mut env = vec![("RUST_LOG", options.rust_log.as_str())];
    env.extend(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let child = Child::spawn(bin, args, &env)?;
    let line = child.wait_for_stdout(DEADLINE, |l| l.starts_with(LISTENING)).await?;
    let addr: SocketAddr = line[LISTENING.len()..].trim().parse().with_context(|| format!("parsing {line:?}"))?;
    ensure!(addr.ip() == listen.ip(), "asked for {listen}, listening on {addr}");
    Ok((child, addr))
}

async fn connect(addr: SocketAddr, tls: Option<&CertFiles>) -> anyhow::Result<AuthorityClient<Channel>> {
    let channel = match tls {
        None => Channel::from_shared(format!("http://{addr}"))?.connect().await,
        Some(c) => {
            let config = tally_proto::tls::client_config(&c.ca, Some((&c.operator_cert, &c.operator_key)))?;
            Channel::from_shared(format!("https://{addr}"))?.tls_config(config)?.connect().await
        }
    };
    Ok(AuthorityClient::new(channel.with_context(|| format!("connecting to {addr}"))?))
}

/// Wraps a message with `authorization: Bearer TOKEN`.
pub fn bearer<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("token is ASCII"));
    req
}

impl Authority {
    /// Replaces the database with a fresh one (new epoch, new keys) at the same
    /// path and serves it on the same port, as after a botched restore or a
    /// rebuilt authority. Returns the new bootstrap token (also `bootstrap()`).
    pub async fn replace_database(&mut self) -> String {
        self.try_replace_database().await.expect("replacing the authority database")
    }

    async fn try_replace_database(&mut self) -> anyhow::Result<String> {
        if self.child.try_status().is_none() {
            self.stop().await?;
        }
        self.db.recreate()?;
        let bin = binary_in(AUTHORITY.package, AUTHORITY.name);
        let mut init =
            Child::spawn(&bin, init_args(self.db.arg(), &self.kek_file), &[("RUST_LOG", &self.options.rust_log)])?;
        ensure!(init.wait(DEADLINE).await?.success(), "init failed: {:?}", init.stderr().snapshot());
        let out = init.stdout().snapshot();
        let [bootstrap] = out.as_slice() else { bail!("init must print exactly one line, printed {out:?}") };
        self.bootstrap = bootstrap.clone();
        self.try_restart().await?;
        Ok(self.bootstrap.clone())
    }

    /// An online, consistent copy of the database at `to`: SQLite's `VACUUM
    /// INTO`, or PostgreSQL's `pg_dump` (custom format).
    pub async fn backup_to(&self, to: &Path) {
        if self.db.is_postgres() {
            let out = std::process::Command::new("pg_dump")
                .args(["--format=custom", "--no-owner", "-f", to.to_str().unwrap(), "-d", self.db.arg()])
                .output()
                .expect("pg_dump runs");
            assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
        } else {
            let mut conn = self.db_connect().await.expect("connect to the database");
            sqlx::query("VACUUM INTO $1").bind(to.to_str().unwrap()).execute(&mut conn).await.expect("VACUUM INTO");
            sqlx::Connection::close(conn).await.expect("close");
        }
    }

    /// Replaces the database with the copy at `from` (the authority stopped).
    pub fn restore_from(&self, from: &Path) {
        self.db.recreate().expect("recreate the database");
        if self.db.is_postgres() {
            let out = std::process::Command::new("pg_restore")
                .args(["--no-owner", "--exit-on-error", "-d", self.db.arg(), from.to_str().unwrap()])
                .output()
                .expect("pg_restore runs");
            assert!(out.status.success(), "pg_restore: {}", String::from_utf8_lossy(&out.stderr));
        } else {
            std::fs::copy(from, self.db_path()).expect("copy the backup");
        }
    }
}
