//! The authority: the one service that holds root keys and the truth about
//! revocation, independent of gRPC. It composes the parts: the key ring
//! (`keys/`), the log and its single writer (`log/`), the authorizer
//! (`authorizer/`), the registry memory (`registry.rs`) and the store
//! (`store/`). Every method that needs a caller takes the bearer text and
//! authorizes it itself, because the target org is often known only after a
//! lookup. Its API by area: orgs, keys and audit (`admin.rs`), minting
//! (`mint.rs`), verification and introspection (`verify.rs`), revocation
//! (`revoke.rs`).

mod admin;
mod audit;
mod mint;
mod revoke;
mod verify;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use governor::DefaultKeyedRateLimiter;
use tally_token::{KeyId, Limits, RevocationId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::authorizer::{Authorizer, Caller, Role};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::keys::{Kek, KeyRing, SYSTEM_ORG};
use crate::log::{History, Log, LogSettings, Position, StreamEvent};
use crate::metrics::Metrics;
use crate::registry::RegistryCache;
use crate::revocation::LogHead;
use crate::store::{self, AuditRow, Db, ReadStore};

pub use audit::{AuditQuery, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};
pub use mint::{MintSpec, Minted};
pub use revoke::{DEFAULT_ANONYMOUS_REVOKES_PER_SECOND, RevokeTarget};
pub use verify::{Reason, Verdict};

/// Live events buffered per subscriber before it must catch up from the database.
const FANOUT_BUFFER: usize = 4096;
/// Revocation streams served at once; more are refused (RESOURCE_EXHAUSTED).
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 1024;
/// Registry rows remembered by default (see [`Settings::registry_remembered`]).
pub const DEFAULT_REGISTRY_REMEMBERED: usize = 100_000;
/// The most registry rows [`Settings::registry_remembered`] may ask for
/// (about 2 GB of memory at most).
pub const MAX_REGISTRY_REMEMBERED: usize = 10_000_000;
/// Branch revocations kept per family, by default. Each one is a log entry
/// held by the authority and by every verifier until the family expires (up
/// to a year), and a holder can make endless attenuations to revoke.
pub const DEFAULT_MAX_BRANCH_REVOCATIONS: u32 = 64;
/// How long audit rows are kept, by default.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Tunables of a running authority.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of minted tokens when the request gives none.
    pub default_ttl: Duration,
    /// Longest lifetime a Mint may ask for.
    pub max_ttl: Duration,
    /// Idle interval between heartbeats on the revocation stream.
    pub heartbeat: Duration,
    /// Token size limits.
    pub limits: Limits,
    /// Clock skew allowed on `expires`.
    pub skew: Duration,
    /// Live events buffered for subscribers; one that falls further behind
    /// catches up from the database.
    pub fanout_buffer: usize,
    /// Revocation streams served at once; a Subscribe beyond is refused
    /// with RESOURCE_EXHAUSTED (each stream holds a task and a bounded buffer).
    pub max_subscribers: usize,
    /// Registry rows (family → org, expiry) kept in memory: the last this
    /// many mints or registry reads are always remembered, at most twice
    /// this many. Revoking a remembered family by id reads no database.
    /// Memory: about 13 MB at the default; hash tables grow by doubling, so
    /// up to about 23 MB per 100,000 above it. Taken as 1 to
    /// [`MAX_REGISTRY_REMEMBERED`] (0 counts as 1, more as the maximum).
    pub registry_remembered: usize,
    /// Revocations of a token by its holder per second from one client
    /// address (twice as many in a burst); RESOURCE_EXHAUSTED past it.
    /// Callers with a valid API credential are not limited.
    pub anonymous_revokes_per_second: u32,
    /// Branch revocations kept per family; a holder revoking one more gets
    /// RESOURCE_EXHAUSTED (the family can still be revoked whole).
    pub max_branch_revocations: u32,
    /// How long audit rows are kept; older ones go at each prune.
    pub audit_retention: Duration,
    /// This process's name among the replicas of its database: in
    /// `Status` and as the `replica` label of its metrics.
    pub replica: String,
}

/// The default replica id: the host's name and the process id.
pub fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "authority".into());
    format!("{host}:{}", std::process::id())
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(366 * 24 * 3600),
            heartbeat: Duration::from_secs(1),
            limits: Limits::default(),
            skew: tally_token::DEFAULT_SKEW,
            fanout_buffer: FANOUT_BUFFER,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            registry_remembered: DEFAULT_REGISTRY_REMEMBERED,
            anonymous_revokes_per_second: DEFAULT_ANONYMOUS_REVOKES_PER_SECOND,
            max_branch_revocations: DEFAULT_MAX_BRANCH_REVOCATIONS,
            audit_retention: DEFAULT_AUDIT_RETENTION,
            replica: default_replica_id(),
        }
    }
}

/// The authority.
#[derive(Debug)]
pub struct Authority {
    /// Orgs and root keys.
    keys: Arc<KeyRing>,
    /// The revocation log, its writer (every write goes through it) and its streams.
    log: Arc<Log>,
    /// Who may call what.
    authorizer: Authorizer,
    /// The store's read pool (the registry and the audit log).
    reads: Arc<dyn ReadStore>,
    /// Recently minted or looked-up registry rows.
    registry: RegistryCache,
    /// Holders' revocations per client address.
    holder_revokes: DefaultKeyedRateLimiter<IpAddr>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    /// The database, as an operator may see it (no password).
    database: String,
    /// What the request paths, admission and the server record (registered
    /// for scrapes by `scrape.rs`).
    pub(crate) metrics: Metrics,
}

/// A fresh random epoch (16 bytes, hex).
fn new_epoch() -> Result<String> {
    let mut epoch = [0u8; 16];
    getrandom::getrandom(&mut epoch)?;
    Ok(hex::encode(epoch))
}

/// An authority process as its operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityStatus {
    pub replica: String,
    /// A SQLite path, or a `postgres://` URL without its password.
    pub database: String,
    pub epoch: String,
    pub head_seq: u64,
    pub retained_from: u64,
    /// Since it last read the log's head from the database; zero on SQLite,
    /// whose file only this process writes.
    pub head_read_age: Duration,
    pub vouching: bool,
    pub subscribers: u64,
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Revocation log entries whose targets had all expired.
    pub revocations: u64,
    /// Audit rows older than the retention period.
    pub audit_rows: u64,
}

impl Authority {
    /// Opens an initialised database; a wrong KEK fails here.
    pub async fn open(db: impl Into<Db>, kek: Kek, clock: Arc<dyn Clock>, settings: Settings) -> Result<Arc<Self>> {
        let db = db.into();
        let mut opened = store::open(&db, store::Access::Serve).await?;
        let loaded = opened.writes.load().await?;
        let reads = opened.reads.clone();
        let keys = Arc::new(KeyRing::open(kek, loaded.orgs, loaded.keys)?);
        let history =
            History { epoch: loaded.epoch, head: loaded.head, revoked: loaded.revoked, branches: loaded.branches };
        let log_settings = LogSettings {
            fanout_buffer: settings.fanout_buffer,
            max_subscribers: settings.max_subscribers,
            heartbeat: settings.heartbeat,
            max_branch_revocations: settings.max_branch_revocations,
        };
        let metrics = Metrics::default();
        let log = Arc::new(Log::start(
            opened,
            keys.clone(),
            clock.clone(),
            history,
            log_settings,
            metrics.commit_duration.clone(),
        ));
        let authorizer =
            Authorizer::new(keys.clone(), log.revoked().clone(), clock.clone(), settings.limits, settings.skew);
        let holder_revokes = revoke::holder_limiter(settings.anonymous_revokes_per_second);
        let registry = RegistryCache::new(settings.registry_remembered.min(MAX_REGISTRY_REMEMBERED));
        let database = db.to_string();
        Ok(Arc::new(Self {
            keys,
            log,
            authorizer,
            reads,
            registry,
            holder_revokes,
            clock,
            settings,
            database,
            metrics,
        }))
    }

    /// Initialises a database (a SQLite file, which must not exist, or an
    /// empty PostgreSQL database) with a fresh epoch, the system org and its
    /// key, and returns one bootstrap operator token. On failure nothing is
    /// left behind.
    pub async fn init(db: impl Into<Db>, kek: Kek, clock: Arc<dyn Clock>) -> Result<String> {
        let db = db.into();
        store::create(&db, &new_epoch()?).await?;
        let bootstrap = Self::bootstrap(&db, kek, clock).await;
        if bootstrap.is_err() {
            store::remove(&db).await;
        }
        bootstrap
    }

    /// Gives the database a new epoch, so that every verifier flushes its
    /// cache and starts again from the log's head: after a restore from
    /// backup, or a failover to a standby that may have lost acknowledged
    /// history. Refused while an authority serves it. Returns the old epoch
    /// and the new.
    pub async fn bump_epoch(db: impl Into<Db>) -> Result<(String, String)> {
        let epoch = new_epoch()?;
        let old = store::bump_epoch(&db.into(), &epoch).await?;
        Ok((old, epoch))
    }

    /// The system org, its key and the first operator token, in a database just created.
    async fn bootstrap(db: &Db, kek: Kek, clock: Arc<dyn Clock>) -> Result<String> {
        let authority = Self::open(db, kek, clock, Settings::default()).await?;
        let audit = audit_row("init", "org.create", Some(SYSTEM_ORG), None, "created by init");
        authority.log.create_org(SYSTEM_ORG, audit).await?;
        let spec = MintSpec {
            org: SYSTEM_ORG.into(),
            caveats: vec!["role = operator".into()],
            ttl: Some(authority.settings.max_ttl),
            subject: Some("bootstrap".into()),
            location: None,
        };
        let minted = authority.mint_unchecked("init", spec).await?;
        authority.close().await?;
        Ok(minted.token)
    }

    /// The database's epoch.
    pub fn epoch(&self) -> &str {
        self.log.epoch()
    }

    /// Times a subscriber fell behind the in-memory fan-out and caught up from the database.
    pub fn catch_ups(&self) -> u64 {
        self.log.catch_ups()
    }

    /// Group commits the writer made, and the changes they carried.
    pub fn commits(&self) -> (u64, u64) {
        self.log.commits()
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> u64 {
        self.log.subscribers()
    }

    /// This process's replica id (`Settings::replica`).
    pub fn replica(&self) -> &str {
        &self.settings.replica
    }

    /// The operator's view of this process (unscoped operators).
    pub fn status(&self, bearer: Option<&str>) -> Result<AuthorityStatus> {
        self.authorize(bearer, "status", None, &[Role::Operator])?;
        let head = self.head();
        Ok(AuthorityStatus {
            replica: self.settings.replica.clone(),
            database: self.database.clone(),
            epoch: self.epoch().to_owned(),
            head_seq: head.seq,
            retained_from: head.retained_from,
            head_read_age: self.log.head_read_age(),
            vouching: self.vouches(),
            subscribers: self.subscribers(),
        })
    }

    /// Whether this process vouches for the log now: always on SQLite; a
    /// replica while it has read its database within a heartbeat interval.
    pub fn vouches(&self) -> bool {
        self.log.current().is_ok()
    }

    /// How often to look at [`Self::vouches`]: as often as a replica reads
    /// its database's head, four times per heartbeat interval.
    pub fn vouch_check_interval(&self) -> Duration {
        self.log.follow_interval()
    }

    /// The log head now.
    pub fn head(&self) -> LogHead {
        self.log.head()
    }

    /// The org owning a key.
    pub fn key_org(&self, key_id: KeyId) -> Option<String> {
        self.keys.org_of(key_id)
    }

    /// True when any of `ids` is revoked.
    pub fn is_revoked(&self, ids: &[RevocationId]) -> bool {
        self.log.revoked().any(ids)
    }

    /// Now, by the authority's clock (unix ms).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The token limits in force.
    fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    /// The org of key `key_id`, reading through to the database when it is
    /// unknown here, other replicas write it, and `bearer` is a live API
    /// credential (nobody else makes this process read); `NotFound` when it
    /// is not there either.
    async fn key_org_fresh(&self, key_id: KeyId, bearer: Option<&str>) -> Result<String> {
        if let Some(org) = self.keys.org_of(key_id) {
            return Ok(org);
        }
        if bearer.is_some_and(|b| self.is_api_credential(b)) {
            self.log.follow().await?;
        }
        self.keys.org_of(key_id).ok_or_else(|| Error::NotFound(format!("key {key_id}")))
    }

    /// Checks the bearer for `action` on `target_org` (None: a global action)
    /// by one of `roles`. Refusals are logged, counted and audited (by
    /// family id, never the token).
    pub fn authorize(
        &self,
        bearer: Option<&str>,
        action: &'static str,
        target_org: Option<&str>,
        roles: &[Role],
    ) -> Result<Caller> {
        self.authorizer.check(bearer, action, target_org, roles).map_err(|refusal| {
            tracing::info!(action, actor = %refusal.actor, detail = %refusal.detail, "request refused");
            self.metrics.refused.inc();
            // Only an org that exists is named in the audit row.
            let org = target_org.filter(|o| self.keys.has_org(o));
            self.log.record_refusal(refusal.audit_row(action, org));
            refusal.into_error()
        })
    }

    /// Whether `text` is a live credential of Tally's API (see
    /// [`Authorizer::is_api_credential`]): admission's test.
    pub(crate) fn is_api_credential(&self, text: &str) -> bool {
        self.authorizer.is_api_credential(text)
    }

    /// Subscribe is for verifiers (and operators).
    pub fn authorize_subscribe(&self, bearer: Option<&str>) -> Result<Caller> {
        self.authorize(bearer, "subscribe", None, &[Role::Verifier, Role::Operator])
    }

    /// Starts a subscription to the revocation log; the stream ends when
    /// `shutdown` fires or the receiver is dropped. Refused with
    /// `ResourceExhausted` while [`Settings::max_subscribers`] streams are
    /// being served.
    pub fn subscribe(&self, position: Position, shutdown: CancellationToken) -> Result<mpsc::Receiver<StreamEvent>> {
        // A replica that cannot read its database sends its subscriber
        // elsewhere at once rather than keep it waiting for heartbeats.
        self.log.current()?;
        self.log.subscribe(position, shutdown).ok_or_else(|| {
            self.metrics.subscribe_refused.inc();
            Error::ResourceExhausted(format!(
                "the authority serves at most {} revocation streams; retry later",
                self.settings.max_subscribers
            ))
        })
    }

    /// Writes everything back into the database file and closes the readers:
    /// call after serving stops, so a copy of the file alone is complete.
    pub async fn close(&self) -> Result<()> {
        self.log.close(audit_row("authority", "shutdown", None, None, "")).await?;
        self.reads.close().await;
        Ok(())
    }

    /// Drops log entries whose targets have all expired, and audit rows
    /// older than [`Settings::audit_retention`].
    pub async fn prune(&self) -> Result<Pruned> {
        let audit = audit_row("authority", "log.prune", None, None, "");
        let retention = i64::try_from(self.settings.audit_retention.as_millis()).unwrap_or(i64::MAX);
        let audit_before = self.clock.now_ms().saturating_sub(retention);
        let (revocations, audit_rows) = self.log.prune(audit_before, audit).await?;
        Ok(Pruned { revocations, audit_rows })
    }
}

/// The audit row of a change made.
fn audit_row(actor: &str, action: &'static str, org: Option<&str>, target: Option<String>, detail: &str) -> AuditRow {
    AuditRow {
        actor: actor.to_owned(),
        action,
        org: org.map(str::to_owned),
        target,
        outcome: store::OK,
        detail: detail.to_owned(),
    }
}
