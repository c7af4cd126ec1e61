//! The authority's domain logic, independent of gRPC: orgs and keys, minting,
//! verification, revocation, introspection. Every method that needs a caller
//! takes the bearer text and authorizes it itself (`auth.rs`), because the
//! target org is often known only after a lookup.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use tally_token::{
    DecodedBundle, Error as TokenError, FamilyId, KeyId, Limits, Macaroon, Predicate, RevocationId, Signature, TallyId,
    format_rfc3339,
};
use tokio::sync::{broadcast, watch};

use crate::auth::{Caller, Role};
use crate::bearers::Bearers;
use crate::clock::{Clock, unix_ms};
use crate::error::{Error, Result};
use crate::kek::Kek;
use crate::log::Target;
use crate::metrics::Counters;
use crate::registry::{Registered, RegistryCache};
use crate::state::{LogHead, Shared};
use crate::store::{self, ReadStore, WriteStore};
use crate::writer::{AuditRow, Change, TokenRow, Writer};

/// The org whose key signs Tally's own API tokens.
pub const SYSTEM_ORG: &str = "system";
/// Live events buffered per subscriber before it must catch up from the database.
const FANOUT_BUFFER: usize = 4096;
/// Revocation streams served at once; more are refused (RESOURCE_EXHAUSTED).
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 1024;
/// Registry rows remembered by default (see [`Settings::registry_remembered`]).
pub const DEFAULT_REGISTRY_REMEMBERED: usize = 100_000;
/// The most registry rows [`Settings::registry_remembered`] may ask for
/// (about 2 GB of memory at most).
pub const MAX_REGISTRY_REMEMBERED: usize = 10_000_000;
/// Longest free-text revocation reason.
const MAX_REASON: usize = 256;
/// Most caveats a Mint request may add.
const MAX_MINT_CAVEATS: usize = 32;
/// Revocations of a token by its holder (no API credential) per second from
/// one client address, by default; twice as many in a burst. A holder
/// revokes its own token once; this bounds how fast anyone can grow the log.
pub const DEFAULT_ANONYMOUS_REVOKES_PER_SECOND: u32 = 10;
/// Branch revocations kept per family, by default. Each one is a log entry
/// held by the authority and by every verifier until the family expires (up
/// to a year), and a holder can make endless attenuations to revoke.
pub const DEFAULT_MAX_BRANCH_REVOCATIONS: u32 = 64;
/// How long audit rows are kept, by default.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// Client addresses the holders' rate limiter may remember before it forgets
/// those whose allowance has refilled.
const RATE_LIMITED_CLIENTS: usize = 65_536;

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
        }
    }
}

/// The authority.
#[derive(Debug)]
pub struct Authority {
    pub(crate) shared: Arc<Shared>,
    pub(crate) writer: Writer,
    pub(crate) reads: Arc<dyn ReadStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: Limits,
    pub(crate) settings: Settings,
    pub(crate) counters: crate::metrics::Counters,
    /// Recently minted or looked-up registry rows.
    pub(crate) registry: RegistryCache,
    /// API tokens whose signatures verified.
    pub(crate) bearers: Bearers,
    /// One permit per revocation stream being served.
    pub(crate) subscriber_slots: Arc<tokio::sync::Semaphore>,
    /// Holders' revocations per client address.
    pub(crate) holder_revokes: DefaultKeyedRateLimiter<IpAddr>,
    /// The database's exclusive lock, released when the authority is dropped.
    _lock: std::fs::File,
}

/// API tokens whose verification is remembered (operators' and verifiers'
/// tokens: a few in use at a time).
const BEARERS_REMEMBERED: usize = 1024;

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// What Mint is asked for.
#[derive(Debug, Clone, Default)]
pub struct MintSpec {
    pub org: String,
    pub caveats: Vec<String>,
    pub ttl: Option<Duration>,
    pub subject: Option<String>,
    pub location: Option<String>,
}

/// A minted token. `Debug` omits the token.
#[derive(Clone)]
pub struct Minted {
    /// The token text (secret: for the caller only).
    pub token: String,
    pub family: FamilyId,
    pub key_id: KeyId,
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"<redacted>")
            .field("family", &self.family)
            .field("key_id", &self.key_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// Why a bundle is or is not valid (request-independent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Ok,
    Forged,
    UnknownKey,
    RetiredKey,
    Revoked,
    Expired,
    CaveatFailed,
    DischargeInvalid,
}

/// The answer to Verify.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub reason: Reason,
    pub detail: String,
    pub org: Option<String>,
    pub key_id: Option<KeyId>,
    pub family: Option<FamilyId>,
    pub expires_at_ms: Option<i64>,
    /// Genuine root chain signatures, when valid (secret): element i is the
    /// signature after `chain_from + i` caveats, up to the whole token.
    pub chain: Vec<Signature>,
    /// The position of `chain`'s first element (0 until [`Authority::verify`]
    /// trims the chain to what a verifier may hold).
    pub chain_from: usize,
    /// Log position as of which the token was not revoked.
    pub as_of_seq: u64,
    pub epoch: String,
    /// First-party caveats of the root token (for introspection).
    pub caveats: Vec<String>,
    /// From `subject = …`.
    pub subject: Option<String>,
    /// Earliest `expires` of the root token itself (not its discharges, which
    /// can be renewed): how long a revocation of it must be kept.
    pub root_expires_at_ms: Option<i64>,
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Revocation log entries whose targets had all expired.
    pub revocations: u64,
    /// Audit rows older than the retention period.
    pub audit_rows: u64,
}

/// What Revoke names. `Debug` omits a token's text.
#[derive(Clone)]
pub enum RevokeTarget {
    /// This token (bundle text) and its descendants; its holder may.
    Token(String),
    /// A family, by hex id.
    Family(String),
    /// Every token under a key.
    Key(KeyId),
    /// Every token of an org so far.
    Org(String),
}

impl std::fmt::Debug for RevokeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokeTarget::Token(_) => f.write_str("Token(<redacted>)"),
            RevokeTarget::Family(id) => write!(f, "Family({id})"),
            RevokeTarget::Key(k) => write!(f, "Key({k})"),
            RevokeTarget::Org(o) => write!(f, "Org({o})"),
        }
    }
}

/// An org as listed.
#[derive(Debug, Clone)]
pub struct OrgInfo {
    pub org: String,
    pub created_at_ms: i64,
    pub current_key: KeyId,
}

/// A key as listed (never its material).
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub key_id: KeyId,
    pub org: String,
    pub created_at_ms: i64,
    pub retired_at_ms: Option<i64>,
    pub current: bool,
}

impl Authority {
    /// Opens an initialised database; a wrong KEK fails here.
    pub async fn open(path: &Path, kek: Kek, clock: Arc<dyn Clock>, settings: Settings) -> Result<Arc<Self>> {
        if !path.exists() {
            return Err(Error::Config(format!(
                "database {} does not exist: run `tally-authority init` first",
                path.display()
            )));
        }
        // First, before a migration or a read: no other process serves it.
        let lock = store::lock(path)?;
        let mut writes = store::open_writes(path, false).await?;
        let loaded = writes.load(&kek).await?;
        let reads: Arc<dyn ReadStore> = Arc::new(store::open_reads(path).await?);
        let (head, _) = watch::channel(loaded.head);
        let (events, _) = broadcast::channel(settings.fanout_buffer.max(1));
        let shared = Arc::new(Shared {
            epoch: loaded.epoch,
            keys: std::sync::RwLock::new(loaded.keys),
            revoked: std::sync::RwLock::new(loaded.revoked),
            head,
            events,
            catch_ups: Default::default(),
            subscribers: Default::default(),
            commits: Default::default(),
            committed_changes: Default::default(),
            commit_duration: Default::default(),
        });
        let max_branches = settings.max_branch_revocations.max(1);
        let writer = Writer::spawn(
            Box::new(writes),
            shared.clone(),
            Arc::new(kek),
            clock.clone(),
            loaded.branches,
            max_branches,
        );
        let rate = NonZeroU32::new(settings.anonymous_revokes_per_second.max(1)).expect("at least 1");
        let holder_revokes =
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(rate.saturating_mul(2.try_into().expect("2"))));
        let limits = settings.limits;
        let registry = RegistryCache::new(settings.registry_remembered.min(MAX_REGISTRY_REMEMBERED));
        let subscriber_slots =
            Arc::new(tokio::sync::Semaphore::new(settings.max_subscribers.min(tokio::sync::Semaphore::MAX_PERMITS)));
        Ok(Arc::new(Self {
            shared,
            writer,
            reads,
            clock,
            limits,
            settings,
            counters: Default::default(),
            registry,
            bearers: Bearers::new(BEARERS_REMEMBERED),
            subscriber_slots,
            holder_revokes,
            _lock: lock,
        }))
    }

    /// Creates a database at `path` (which must not exist) with a fresh epoch,
    /// the system org and its key, and returns one bootstrap operator token.
    /// On failure nothing is left behind.
    pub async fn init(path: &Path, kek: Kek, clock: Arc<dyn Clock>) -> Result<String> {
        if path.exists() {
            return Err(Error::Config(format!(
                "{} exists already: init never touches an existing database",
                path.display()
            )));
        }
        let result = Self::init_inner(path, kek, clock).await;
        if result.is_err() {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        result
    }

    async fn init_inner(path: &Path, kek: Kek, clock: Arc<dyn Clock>) -> Result<String> {
        let mut writes = store::open_writes(path, true).await?;
        let mut epoch = [0u8; 16];
        getrandom::getrandom(&mut epoch)?;
        writes.set_meta("epoch", &hex::encode(epoch)).await?;
        writes.set_meta("retained_from", "1").await?;
        Box::new(writes).close().await?;
        let authority = Self::open(path, kek, clock, Settings::default()).await?;
        let audit = authority.audit("init", "org.create", Some(SYSTEM_ORG), None, "created by init");
        authority.writer.submit(Change::CreateOrg(SYSTEM_ORG.into()), audit).await?;
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
        &self.shared.epoch
    }

    /// Times a subscriber fell behind the in-memory fan-out and caught up from the database.
    pub fn catch_ups(&self) -> u64 {
        self.shared.catch_ups.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Group commits the writer made, and the changes they carried.
    pub fn commits(&self) -> (u64, u64) {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        (load(&self.shared.commits), load(&self.shared.committed_changes))
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> u64 {
        self.shared.subscribers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The log head now.
    pub fn head(&self) -> LogHead {
        *self.shared.head.borrow()
    }

    /// The org owning a key.
    pub fn key_org(&self, key_id: KeyId) -> Option<String> {
        self.shared.keys.read().expect("key ring lock").keys.get(&key_id).map(|k| k.org.clone())
    }

    /// True when any of `ids` is revoked.
    pub fn is_revoked(&self, ids: &[RevocationId]) -> bool {
        let revoked = self.shared.revoked.read().expect("revoked lock");
        ids.iter().any(|id| revoked.ids.contains(id.bytes()))
    }

    fn audit(
        &self,
        actor: &str,
        action: &'static str,
        org: Option<&str>,
        target: Option<String>,
        detail: &str,
    ) -> AuditRow {
        AuditRow {
            actor: actor.to_owned(),
            action,
            org: org.map(str::to_owned),
            target,
            outcome: "ok",
            detail: detail.to_owned(),
        }
    }

    /// Creates an org with its first root key.
    pub async fn create_org(&self, bearer: Option<&str>, org: &str) -> Result<KeyId> {
        validate_org_name(org)?;
        let caller = self.authorize(bearer, "org.create", None, &[Role::Operator])?;
        let audit = self.audit(&caller.actor(), "org.create", Some(org), None, "");
        let outcome = self.writer.submit(Change::CreateOrg(org.to_owned()), audit).await?;
        Ok(outcome.key_id.expect("a new org has a key"))
    }

    /// Lists orgs (unscoped operators).
    pub fn list_orgs(&self, bearer: Option<&str>) -> Result<Vec<OrgInfo>> {
        self.authorize(bearer, "org.list", None, &[Role::Operator])?;
        let keys = self.shared.keys.read().expect("key ring lock");
        Ok(keys
            .orgs
            .iter()
            .map(|(org, e)| OrgInfo { org: org.clone(), created_at_ms: e.created_at, current_key: e.current_key })
            .collect())
    }

    /// Gives an org a new current key.
    pub async fn rotate_key(&self, bearer: Option<&str>, org: &str) -> Result<KeyId> {
        check_org_syntax(org)?;
        let caller = self.authorize(bearer, "key.rotate", Some(org), &[Role::Operator])?;
        let audit = self.audit(&caller.actor(), "key.rotate", Some(org), None, "");
        let outcome = self.writer.submit(Change::RotateKey(org.to_owned()), audit).await?;
        Ok(outcome.key_id.expect("rotation makes a key"))
    }

    /// Retires a (non-current) key: tokens under it stop verifying everywhere.
    pub async fn retire_key(&self, bearer: Option<&str>, key_id: KeyId) -> Result<u64> {
        let org = self.key_org(key_id).ok_or_else(|| Error::NotFound(format!("key {key_id}")))?;
        let caller = self.authorize(bearer, "key.retire", Some(&org), &[Role::Operator])?;
        let audit = self.audit(&caller.actor(), "key.retire", Some(&org), Some(key_id.to_string()), "");
        let outcome = self.writer.submit(Change::RetireKey { key_id, rotate_if_current: false }, audit).await?;
        Ok(outcome.seq)
    }

    /// Lists an org's keys.
    pub fn list_keys(&self, bearer: Option<&str>, org: &str) -> Result<Vec<KeyInfo>> {
        check_org_syntax(org)?;
        self.authorize(bearer, "key.list", Some(org), &[Role::Operator])?;
        let keys = self.shared.keys.read().expect("key ring lock");
        let current = keys.orgs.get(org).ok_or_else(|| Error::NotFound(format!("org {org:?}")))?.current_key;
        let mut list: Vec<KeyInfo> = keys
            .keys
            .iter()
            .filter(|(_, k)| k.org == org)
            .map(|(id, k)| KeyInfo {
                key_id: *id,
                org: k.org.clone(),
                created_at_ms: k.created_at,
                retired_at_ms: k.retired_at,
                current: *id == current,
            })
            .collect();
        list.sort_by_key(|k| k.key_id);
        Ok(list)
    }

    /// Mints a token for an org.
    pub async fn mint(&self, bearer: Option<&str>, spec: MintSpec) -> Result<Minted> {
        validate_org_name(&spec.org).or_else(|e| if spec.org == SYSTEM_ORG { Ok(()) } else { Err(e) })?;
        // A token of the system org is a credential for Tally's own API: minting
        // one is its own action, so `action in mint` cannot mint an operator.
        let action = if spec.org == SYSTEM_ORG { "mint.system" } else { "mint" };
        let caller = self.authorize(bearer, action, Some(&spec.org), &[Role::Operator])?;
        self.mint_unchecked(&caller.actor(), spec).await
    }

    async fn mint_unchecked(&self, actor: &str, spec: MintSpec) -> Result<Minted> {
        let ttl = spec.ttl.unwrap_or(self.settings.default_ttl);
        if ttl.is_zero() || ttl > self.settings.max_ttl {
            return Err(Error::InvalidArgument(format!(
                "ttl must be between 1 s and {} s",
                self.settings.max_ttl.as_secs()
            )));
        }
        if spec.caveats.len() > MAX_MINT_CAVEATS {
            return Err(Error::InvalidArgument(format!("at most {MAX_MINT_CAVEATS} caveats")));
        }
        // Nothing is minted that Verify would refuse as malformed.
        let field_max = self.limits.max_field_bytes;
        let too_long = |what: &str| Error::InvalidArgument(format!("{what} longer than {field_max} bytes"));
        if spec.caveats.iter().any(|c| c.len() > field_max) {
            return Err(too_long("a caveat is"));
        }
        if spec.subject.as_ref().is_some_and(|s| s.len() + "subject = ".len() > field_max) {
            return Err(too_long("subject is"));
        }
        if spec.location.as_ref().is_some_and(|l| l.len() > field_max) {
            return Err(too_long("location is"));
        }
        for c in &spec.caveats {
            match Predicate::parse(c) {
                Err(e) => return Err(Error::InvalidArgument(format!("invalid caveat {c:?}: {e}"))),
                Ok(Predicate::Org(_)) if spec.org != SYSTEM_ORG => {
                    return Err(Error::InvalidArgument("the org caveat is added by Mint; do not pass one".into()));
                }
                Ok(_) => {}
            }
        }
        let key_id = {
            let keys = self.shared.keys.read().expect("key ring lock");
            keys.orgs.get(&spec.org).ok_or_else(|| Error::NotFound(format!("org {:?}", spec.org)))?.current_key
        };
        let derived = {
            let keys = self.shared.keys.read().expect("key ring lock");
            tally_token::RootKeyProvider::derived_key(&*keys, key_id)
                .map_err(|_| Error::FailedPrecondition(format!("org {:?} has no active key", spec.org)))?
        };
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce)?;
        let id = TallyId::new(key_id, nonce);
        let mut m = Macaroon::mint_with_derived(&derived, id.encode(), spec.location.filter(|l| !l.is_empty()));
        // System tokens carry no org caveat: for Tally's API an `org = X`
        // caveat narrows an operator to org X (see auth.rs).
        if spec.org != SYSTEM_ORG {
            m.add_first_party(format!("org = {}", spec.org));
        }
        let expires = self.clock.now() + ttl;
        let expires_ms = unix_ms(expires);
        let expires_secs = expires_ms.div_euclid(1000);
        m.add_first_party(format!("expires < {}", format_rfc3339(i128::from(expires_secs) * 1_000_000_000)));
        if let Some(subject) = spec.subject.as_deref().filter(|s| !s.is_empty()) {
            let caveat = format!("subject = {subject}");
            Predicate::parse(&caveat).map_err(|_| Error::InvalidArgument("subject must be one word".into()))?;
            m.add_first_party(caveat);
        }
        for c in &spec.caveats {
            m.add_first_party(c.as_bytes());
        }
        let size = m.encode_v2().len();
        if size > self.limits.max_token_bytes {
            return Err(Error::InvalidArgument(format!(
                "the token would be {size} bytes, more than {}",
                self.limits.max_token_bytes
            )));
        }
        // At most MAX_MINT_CAVEATS + 3, so it fits.
        let minted_caveats = m.caveats().len() as u16;
        let row = TokenRow {
            family: nonce,
            org: spec.org.clone(),
            key_id,
            subject: spec.subject.clone(),
            expires_at: Some(expires_secs * 1000),
            minted_caveats,
        };
        let audit = self.audit(actor, "mint", Some(&spec.org), Some(id.family.to_hex()), &format!("key {key_id}"));
        self.writer.submit(Change::Mint(row), audit).await?;
        let expires_at = Some(expires_secs * 1000);
        self.registry.insert(id.family, &spec.org, expires_at, Some(minted_caveats));
        Counters::bump(&self.counters.mint);
        Ok(Minted { token: m.to_text(), family: id.family, key_id, expires_at_ms: Some(expires_secs * 1000) })
    }

    /// Verifies a bundle, request-independently. `Err` only for malformed input.
    pub fn verify_bundle(&self, text: &str) -> Result<Verdict> {
        Counters::bump(&self.counters.verify);
        let malformed = |e: TokenError| Error::InvalidArgument(format!("malformed bundle: {e}"));
        let decoded = DecodedBundle::decode(text, &self.limits).map_err(malformed)?;
        let bundle = decoded.view(&self.limits).map_err(malformed)?;
        // Read the head before the revoked set: the verdict holds as of it.
        let head = self.head();
        let mut v = Verdict {
            reason: Reason::Ok,
            detail: String::new(),
            org: None,
            key_id: None,
            family: None,
            expires_at_ms: None,
            chain: Vec::new(),
            chain_from: 0,
            as_of_seq: head.seq,
            epoch: self.shared.epoch.clone(),
            caveats: Vec::new(),
            subject: None,
            root_expires_at_ms: None,
        };
        if let Ok(id) = TallyId::decode(bundle.root.identifier) {
            v.key_id = Some(id.key_id);
            v.family = Some(id.family);
            v.org = self.key_org(id.key_id);
        }
        let verified = {
            let keys = self.shared.keys.read().expect("key ring lock");
            tally_token::verify_view(&bundle, &*keys, &self.limits)
        };
        let verified = match verified {
            Ok(verified) => verified,
            Err(e) => {
                v.reason = match e {
                    TokenError::UnknownKey(_) | TokenError::ForeignIdentifier(_) => Reason::UnknownKey,
                    TokenError::RetiredKey(_) => Reason::RetiredKey,
                    TokenError::BadSignature => Reason::Forged,
                    TokenError::TooLarge { .. } => return Err(Error::InvalidArgument(e.to_string())),
                    _ => Reason::DischargeInvalid,
                };
                v.detail = e.to_string();
                return Ok(v);
            }
        };
        v.caveats = bundle
            .root
            .caveats
            .iter()
            .filter(|c| !c.is_third_party())
            .map(|c| String::from_utf8_lossy(c.id).into_owned())
            .collect();
        if self.is_revoked(&verified.revocation_ids()) {
            v.reason = Reason::Revoked;
            v.detail = "token revoked".into();
            return Ok(v);
        }
        let now_ms = self.clock.now_ms();
        let skew_ms = self.settings.skew.as_millis() as i64;
        // On Tally's own API tokens (system key) `org = X` narrows an operator
        // to org X; it is not the token's org, so it is not compared.
        let api_token = v.org.as_deref() == Some(SYSTEM_ORG);
        // The root token's own first-party caveats come first in `first_party`.
        let root_caveats = bundle.root.caveats.iter().filter(|c| !c.is_third_party()).count();
        for (i, c) in verified.first_party.iter().enumerate() {
            match Predicate::parse_bytes(c) {
                Ok(Predicate::Org(org)) if !api_token && v.org.as_deref() != Some(org.as_str()) => {
                    v.reason = Reason::CaveatFailed;
                    v.detail = format!("caveat `org = {org}` does not match the key's org");
                    return Ok(v);
                }
                Ok(Predicate::Expires(t)) => {
                    let t_ms = (t / 1_000_000) as i64;
                    v.expires_at_ms = Some(v.expires_at_ms.map_or(t_ms, |e| e.min(t_ms)));
                    if i < root_caveats {
                        v.root_expires_at_ms = Some(v.root_expires_at_ms.map_or(t_ms, |e| e.min(t_ms)));
                    }
                }
                Ok(Predicate::Subject(s)) if v.subject.is_none() => v.subject = Some(s),
                _ => {}
            }
        }
        if v.expires_at_ms.is_some_and(|e| now_ms >= e + skew_ms) {
            v.reason = Reason::Expired;
            v.detail = "token expired".into();
            return Ok(v);
        }
        v.chain = verified.chain;
        Ok(v)
    }

    /// Verify, for verifiers (and operators). A verifier gets the chain
    /// signatures of a valid token from the position it was minted at on
    /// (DESIGN §3.7): whoever holds the signature at position k can append
    /// any caveats from there, so a signature below the minted length would
    /// let a verifier strip minted caveats (from the identifier alone it
    /// could build the family with none). Operators get no signatures, nor
    /// does anyone for Tally's own API tokens: those are never cached, and
    /// their chain would let a verifier extend its own credential.
    pub async fn verify(&self, bearer: Option<&str>, bundle: &str) -> Result<Verdict> {
        let caller = self.authorize(bearer, "verify", None, &[Role::Verifier, Role::Operator])?;
        let mut verdict = self.verify_bundle(bundle)?;
        let from = match caller.role {
            Role::Verifier if !verdict.chain.is_empty() => self.cacheable_from(&verdict).await,
            _ => None,
        };
        match from {
            Some(from) => {
                verdict.chain.drain(..from);
                verdict.chain_from = from;
            }
            None => verdict.chain.clear(),
        }
        Ok(verdict)
    }

    /// Where a verifier's share of a valid token's chain starts: the number
    /// of caveats it was minted with, from the registry. A token whose count
    /// is not recorded (minted before it was) gets its presented signature
    /// only, which its presenter holds anyway: it is then cached as an exact
    /// token, with no descendant coverage. `None` for API tokens.
    async fn cacheable_from(&self, v: &Verdict) -> Option<usize> {
        let (family, org) = (v.family?, v.org.as_deref()?);
        if org == SYSTEM_ORG {
            return None;
        }
        let presented = v.chain.len() - 1;
        let minted = match self.registered(&family).await {
            Ok(Some(row)) if &*row.org == org => row.minted_caveats,
            Ok(_) => None,
            Err(e) => {
                // The verdict stands; only the cache's share shrinks.
                tracing::warn!(error = %e, %family, "registry read failed: handing out the presented signature only");
                None
            }
        };
        Some(minted.map_or(presented, usize::from).min(presented))
    }

    /// Introspection (RFC 7662-like), for operators of the token's org and verifiers.
    pub fn introspect(&self, bearer: Option<&str>, bundle: &str) -> Result<Verdict> {
        if bearer.is_none() {
            // No work at all for anonymous callers (the scope check needs the token's org).
            self.authorize(None, "introspect", None, &[Role::Operator, Role::Verifier])?;
        }
        let verdict = self.verify_bundle(bundle)?;
        self.authorize(bearer, "introspect", verdict.org.as_deref(), &[Role::Operator, Role::Verifier])?;
        Ok(verdict)
    }

    /// Revokes. `client` is the caller's address (`None` in-process): a
    /// holder revoking its token without an API credential is rate-limited
    /// by it. Returns the seq of the (last) log entry written.
    pub async fn revoke(
        &self,
        bearer: Option<&str>,
        client: Option<IpAddr>,
        target: RevokeTarget,
        reason: &str,
    ) -> Result<u64> {
        let seq = self.revoke_target(bearer, client, target, reason).await?;
        Counters::bump(&self.counters.revoke);
        Ok(seq)
    }

    /// Refuses a holder's revocation past its address's allowance, unless
    /// the caller holds a valid API credential.
    fn holder_allowance(&self, bearer: Option<&str>, client: Option<IpAddr>) -> Result<()> {
        if bearer.is_some_and(|b| self.is_api_credential(b)) {
            return Ok(());
        }
        if self.holder_revokes.len() > RATE_LIMITED_CLIENTS {
            self.holder_revokes.retain_recent();
        }
        let client = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if self.holder_revokes.check_key(&client).is_err() {
            Counters::bump(&self.counters.rate_limited);
            return Err(Error::ResourceExhausted(format!(
                "revocations by token holders are limited to {} a second from one address: retry later, or ask an operator",
                self.settings.anonymous_revokes_per_second
            )));
        }
        Ok(())
    }

    async fn revoke_target(
        &self,
        bearer: Option<&str>,
        client: Option<IpAddr>,
        target: RevokeTarget,
        reason: &str,
    ) -> Result<u64> {
        if reason.len() > MAX_REASON {
            return Err(Error::InvalidArgument(format!("reason longer than {MAX_REASON} bytes")));
        }
        match target {
            RevokeTarget::Token(text) => {
                self.holder_allowance(bearer, client)?;
                // Possession is the credential (RFC 7009): a token that verifies
                // may be revoked by whoever presents it.
                let verdict = self.verify_bundle(&text)?;
                let family = verdict.family.filter(|_| !verdict.chain.is_empty()).ok_or_else(|| {
                    Error::InvalidArgument(format!("token does not verify ({}): nothing to revoke", verdict.detail))
                })?;
                // The token as minted: every token of the family descends from
                // it, so its branch is the whole family; said so, it takes no
                // part of the family's bound on branch revocations.
                let presented = verdict.chain.len() - 1;
                let minted = match self.registered(&family).await {
                    Ok(row) => row.and_then(|r| r.minted_caveats).map(usize::from),
                    Err(_) => None,
                };
                let target = if presented == 0 || minted == Some(presented) {
                    Target::Family(family.0)
                } else {
                    let branch = RevocationId::branch_bytes(verdict.chain.last().expect("non-empty"));
                    Target::Branch { family: family.0, branch }
                };
                let actor = format!("holder:{family}");
                let audit = self.audit(&actor, "revoke", verdict.org.as_deref(), Some(family.to_hex()), reason);
                let outcome =
                    self.writer.submit(Change::Revoke(vec![(target, verdict.root_expires_at_ms)]), audit).await?;
                Ok(outcome.seq)
            }
            RevokeTarget::Family(hex_id) => {
                let family = FamilyId::from_hex(&hex_id)
                    .ok_or_else(|| Error::InvalidArgument("family id must be 32 hex characters".into()))?;
                let registered = self.registered(&family).await?;
                let org = registered.as_ref().map(|r| &*r.org);
                let caller = self.authorize(bearer, "revoke", org, &[Role::Operator])?;
                // Only after authorizing: who may not revoke learns nothing of the registry.
                let Some(Registered { expires_at: expires, .. }) = registered else {
                    return Err(Error::NotFound(format!(
                        "family {family} was not minted here, or expired and was pruned: nothing to revoke"
                    )));
                };
                let audit = self.audit(&caller.actor(), "revoke", org, Some(family.to_hex()), reason);
                let outcome =
                    self.writer.submit(Change::Revoke(vec![(Target::Family(family.0), expires)]), audit).await?;
                Ok(outcome.seq)
            }
            RevokeTarget::Key(key_id) => {
                let org = self.key_org(key_id).ok_or_else(|| Error::NotFound(format!("key {key_id}")))?;
                let caller = self.authorize(bearer, "revoke", Some(&org), &[Role::Operator])?;
                let audit = self.audit(&caller.actor(), "revoke", Some(&org), Some(format!("key {key_id}")), reason);
                let outcome = self.writer.submit(Change::RetireKey { key_id, rotate_if_current: true }, audit).await?;
                Ok(outcome.seq)
            }
            RevokeTarget::Org(org) => {
                check_org_syntax(&org)?;
                if org == SYSTEM_ORG {
                    return Err(Error::FailedPrecondition("the system org cannot be revoked wholesale".into()));
                }
                let caller = self.authorize(bearer, "revoke", Some(&org), &[Role::Operator])?;
                let audit = self.audit(&caller.actor(), "revoke", Some(&org), Some(format!("org {org}")), reason);
                let outcome = self.writer.submit(Change::RevokeOrg(org), audit).await?;
                Ok(outcome.seq)
            }
        }
    }

    /// Registry lookup: (org, expiry, minted caveats) of a minted family.
    /// Rows never change, so a remembered one is as good as the database's.
    async fn registered(&self, family: &FamilyId) -> Result<Option<Registered>> {
        if let Some(row) = self.registry.get(family) {
            return Ok(Some(row));
        }
        Counters::bump(&self.counters.registry_reads);
        let row = self.reads.registered(family).await?;
        Ok(row.map(|row| {
            let minted = row.minted_caveats.and_then(|m| u16::try_from(m).ok());
            self.registry.insert(*family, &row.org, row.expires_at, minted)
        }))
    }

    /// Writes everything back into the database file and closes the readers:
    /// call after serving stops, so a copy of the file alone is complete.
    pub async fn close(&self) -> Result<()> {
        let audit = self.audit("authority", "shutdown", None, None, "");
        self.writer.submit(Change::Close, audit).await?;
        self.reads.close().await;
        Ok(())
    }

    /// Drops log entries whose targets have all expired, and audit rows
    /// older than [`Settings::audit_retention`].
    pub async fn prune(&self) -> Result<Pruned> {
        let audit = self.audit("authority", "log.prune", None, None, "");
        let retention = i64::try_from(self.settings.audit_retention.as_millis()).unwrap_or(i64::MAX);
        let audit_before = self.clock.now_ms().saturating_sub(retention);
        let outcome = self.writer.submit(Change::Prune { audit_before }, audit).await?;
        Ok(Pruned { revocations: outcome.pruned, audit_rows: outcome.audit_pruned })
    }

    /// Settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// Org ids: lowercase letters, digits, `-`, `_`, `.`; 1 to 64; not the system org.
/// A name a new org may take: well formed, and not the system org's.
fn validate_org_name(org: &str) -> Result<()> {
    check_org_syntax(org)?;
    if org == SYSTEM_ORG {
        return Err(Error::AlreadyExists("org \"system\" is Tally's own".into()));
    }
    Ok(())
}

/// A well-formed org name (checked before an org is looked up, so no request
/// carries an arbitrary string into lookups, logs or error messages).
pub(crate) fn check_org_syntax(org: &str) -> Result<()> {
    let ok = !org.is_empty()
        && org.len() <= 64
        && org.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(Error::InvalidArgument("org must be 1 to 64 characters of a-z, 0-9, '-', '_' and '.'".into()));
    }
    Ok(())
}

impl Authority {
    /// Subscribe is for verifiers (and operators).
    pub fn authorize_subscribe(&self, bearer: Option<&str>) -> Result<Caller> {
        self.authorize(bearer, "subscribe", None, &[Role::Verifier, Role::Operator])
    }

    /// Now, by the authority's clock (unix ms).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
