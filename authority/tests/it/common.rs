//! Test harness: a real database (a SQLite file in a temp dir, or a fresh
//! PostgreSQL database when the run's store is PostgreSQL:
//! `tally_tests::TestStore`) and the real gRPC server on 127.0.0.1:0,
//! in-process. Dropping the harness shuts the server down.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tally_authority::{Authority, Kek, Settings, SystemClock};
use tally_proto::v1 as pb;
use tally_proto::v1::authority_client::AuthorityClient;
pub use tally_tests::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request};

pub const KEK_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
    pub bootstrap: String,
    pub authority: Arc<Authority>,
    pub client: AuthorityClient<Channel>,
    pub addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A clock the test moves by hand.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<std::sync::Mutex<std::time::SystemTime>>);

impl FakeClock {
    pub fn new() -> Self {
        Self(Arc::new(std::sync::Mutex::new(std::time::SystemTime::now())))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl tally_authority::Clock for FakeClock {
    fn now(&self) -> std::time::SystemTime {
        *self.0.lock().unwrap()
    }
}

pub fn fast_settings() -> Settings {
    Settings { heartbeat: Duration::from_millis(100), ..Settings::default() }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(fast_settings()).await
    }

    pub async fn start_with(settings: Settings) -> Self {
        Self::start_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(settings: Settings, clock: Arc<dyn tally_authority::Clock>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(dir.path());
        let bootstrap = Authority::init(db.authority_db(), kek(), clock.clone()).await.unwrap();
        Self::serve(dir, db, bootstrap, settings, clock).await
    }

    /// Serves an existing database.
    pub async fn serve(
        dir: tempfile::TempDir,
        db: TestDb,
        bootstrap: String,
        settings: Settings,
        clock: Arc<dyn tally_authority::Clock>,
    ) -> Self {
        let authority = Authority::open(db.authority_db(), kek(), clock, settings).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let (authority, shutdown) = (authority.clone(), shutdown.clone());
            async move { tally_authority::serve(listener, authority, None, shutdown).await.unwrap() }
        });
        let client = AuthorityClient::connect(format!("http://{addr}")).await.unwrap();
        Self { dir, db, bootstrap, authority, client, addr, shutdown, server: Some(server) }
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) -> (tempfile::TempDir, TestDb, String) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let db = std::mem::replace(&mut self.db, TestDb::sqlite_in(self.dir.path()));
        (dir, db, self.bootstrap.clone())
    }

    pub fn client(&self) -> AuthorityClient<Channel> {
        self.client.clone()
    }

    /// Mints with the bootstrap operator token.
    pub async fn mint(&self, org: &str, caveats: &[&str]) -> pb::MintResponse {
        let req = pb::MintRequest {
            org: org.into(),
            caveats: caveats.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        self.client().mint(bearer(req, &self.bootstrap)).await.unwrap().into_inner()
    }

    pub async fn create_org(&self, org: &str) -> u64 {
        let req = pb::CreateOrgRequest { org: org.into() };
        self.client().create_org(bearer(req, &self.bootstrap)).await.unwrap().into_inner().key_id
    }

    /// A system token with `role = ROLE` and extra caveats.
    pub async fn system_token(&self, role: &str, extra: &[&str]) -> String {
        let mut caveats = vec![format!("role = {role}")];
        caveats.extend(extra.iter().map(|c| c.to_string()));
        let req = pb::MintRequest { org: "system".into(), caveats, ..Default::default() };
        self.client().mint(bearer(req, &self.bootstrap)).await.unwrap().into_inner().token
    }

    /// Verify as a verifier would (operators get no chain signatures).
    pub async fn verify(&self, token: &str) -> pb::VerifyResponse {
        let verifier = self.system_token("verifier", &[]).await;
        let req = pb::VerifyRequest { bundle: token.into() };
        self.client().verify(bearer(req, &verifier)).await.unwrap().into_inner()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A connection to the harness's database (either store), to read or
/// change rows with SQL both understand.
pub async fn db_connect(h: &Harness) -> sqlx::AnyConnection {
    h.db.connect(false).await.unwrap()
}

pub fn kek() -> Kek {
    Kek::from_hex(KEK_HEX).unwrap()
}

/// Wraps a message with `authorization: Bearer TOKEN`.
pub fn bearer<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// Asserts a call failed with `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) {
    match result {
        Err(status) => assert_eq!(status.code(), code, "{status:?}"),
        Ok(v) => panic!("expected {code:?}, got Ok({v:?})"),
    }
}
