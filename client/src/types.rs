//! What the SDK hands back: plain Rust types built from the proto messages in
//! one place ([`convert`](crate::convert)). Empty proto strings and zero
//! timestamps become `None`; token text never shows in `Debug`.

use std::fmt;

/// Why a token was (not) accepted, as the authority and verifiers report it.
pub use tally_token::Reason;

/// Where a verifier's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Cache,
    Descendant,
    Authority,
    NegativeCache,
    Local,
    Unspecified,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Descendant => "descendant",
            Source::Authority => "authority",
            Source::NegativeCache => "negative_cache",
            Source::Local => "local",
            Source::Unspecified => "unspecified",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request a token is checked for; `None` fields are "not supplied"
/// (a caveat restricting such a field is then unsatisfied).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Check {
    /// `TOKEN[,DISCHARGE…]`.
    pub bundle: String,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub service: Option<String>,
    pub subject: Option<String>,
    pub client_ip: Option<std::net::IpAddr>,
    /// The org the checking service belongs to: only tokens of that org are
    /// allowed (`None`: the verifier's default, if it has one).
    pub org: Option<String>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("bundle", &"<redacted>")
            .field("action", &self.action)
            .field("resource", &self.resource)
            .field("service", &self.service)
            .field("subject", &self.subject)
            .field("client_ip", &self.client_ip)
            .field("org", &self.org)
            .finish()
    }
}

/// A verifier's answer to [`Check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
    /// Human-readable detail (never secrets).
    pub detail: String,
    /// The caveat that did not hold, for `CaveatFailed` and `Expired`.
    pub failed_caveat: Option<String>,
    pub org: Option<String>,
    pub subject: Option<String>,
    /// Hex family id.
    pub family: Option<String>,
    pub source: Source,
    /// Earliest `expires` caveat.
    pub expires_at_unix_ms: Option<i64>,
}

/// An authority process as its operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityStatus {
    /// Its name among the replicas of its database.
    pub replica: String,
    /// A SQLite path, or a `postgres://` URL without its password.
    pub database: String,
    pub epoch: String,
    pub head_seq: u64,
    pub retained_from: u64,
    /// Since it last read the log's head from its database (0 on SQLite).
    pub head_read_age_ms: i64,
    /// Whether its heartbeats and Verify answers vouch for the log now.
    pub vouching: bool,
    pub subscribers: u64,
}

/// A verifier's view of the revocation stream and its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierStatus {
    pub region: String,
    pub epoch: String,
    pub applied_seq: u64,
    pub head_seq: u64,
    pub cache_entries: u64,
    /// Since the last event or heartbeat; `None` before the first.
    pub last_contact_age_ms: Option<i64>,
    pub synced: bool,
    pub fail_closed: bool,
    pub resets: u64,
    pub authority_verifies: u64,
    /// The authority its stream and Verify use now (of several replicas, the
    /// most preferred that answers).
    pub authority: String,
}

/// One org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub org: String,
    pub created_at_unix_ms: i64,
    pub current_key_id: u64,
}

/// One root key (ids and state, never key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub key_id: u64,
    pub org: String,
    pub created_at_unix_ms: i64,
    pub retired_at_unix_ms: Option<i64>,
    pub current: bool,
}

/// Which audit entries to read (see [`AuthorityClient::list_audit`](crate::AuthorityClient::list_audit)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this org's entries (None: every org; unscoped operators only).
    pub org: Option<String>,
    /// Entries after this id, oldest first; None: the newest `limit`.
    pub after_id: Option<u64>,
    /// Most entries (0: the authority's default, 100; at most 1000).
    pub limit: u32,
}

/// One audit log entry: who did what. Never a token or key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing; pass the last one seen as `after_id` to follow the log.
    pub id: u64,
    pub at_unix_ms: i64,
    /// `operator:<family>`, `holder:<family>`, `authority`, or a refused bearer's family (or `anonymous`).
    pub actor: String,
    /// `org.create`, `mint`, `revoke`, `key.rotate`, …
    pub action: String,
    pub org: Option<String>,
    /// Family id, key id, … of the object acted on.
    pub target: Option<String>,
    /// `ok` or `denied`.
    pub outcome: String,
    pub detail: String,
    /// Events the entry stands for: refusals are one entry per actor,
    /// action, org and minute (`detail` is the first one's); 1 otherwise.
    pub count: u64,
}

/// What to mint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MintSpec {
    pub org: String,
    /// Extra first-party caveats (not `org`).
    pub caveats: Vec<String>,
    /// Lifetime; `None` for the server's default.
    pub ttl: Option<std::time::Duration>,
    pub subject: Option<String>,
    pub location: Option<String>,
}

/// A freshly minted token.
#[derive(Clone, PartialEq, Eq)]
pub struct Minted {
    /// The token text (`tly_…`): a secret.
    pub token: String,
    /// Hex family id.
    pub family: String,
    pub key_id: u64,
    pub expires_at_unix_ms: Option<i64>,
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"<redacted>")
            .field("family", &self.family)
            .field("key_id", &self.key_id)
            .field("expires_at_unix_ms", &self.expires_at_unix_ms)
            .finish()
    }
}

/// What to revoke.
#[derive(Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// This token and its descendants, not its siblings (its holder may).
    Token(String),
    /// A whole family, by hex id.
    Family(String),
    /// Every token under a root key (retires it).
    Key(u64),
    /// Every token of an org so far (retires its keys, makes a fresh one).
    Org(String),
}

impl fmt::Debug for RevokeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeTarget::Token(_) => f.write_str("Token(<redacted>)"),
            RevokeTarget::Family(h) => f.debug_tuple("Family").field(h).finish(),
            RevokeTarget::Key(k) => f.debug_tuple("Key").field(k).finish(),
            RevokeTarget::Org(o) => f.debug_tuple("Org").field(o).finish(),
        }
    }
}

/// RFC 7662-like view of a token. An inactive token reveals only its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    pub reason: Reason,
    pub org: Option<String>,
    pub subject: Option<String>,
    pub expires_at_unix_ms: Option<i64>,
    pub caveats: Vec<String>,
    pub family: Option<String>,
    pub key_id: Option<u64>,
}

/// What a revocation event revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A whole family (hex id).
    Family(String),
    /// One branch of a family (hex ids): a token revoked by its holder, and its descendants.
    Branch { family: String, branch: String },
    /// Every token under a root key.
    Key(u64),
}

/// One event of the revocation stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Revocation {
        seq: u64,
        target: Revoked,
        /// Running digest of the log up to this event (not secret): resume with it.
        digest: Vec<u8>,
        /// After this instant nothing the revocation targets can be valid.
        expires_at_unix_ms: Option<i64>,
    },
    Heartbeat {
        head_seq: u64,
        epoch: String,
    },
    /// The subscriber's position is no good (new epoch, forked or pruned log):
    /// start over; a replay after `replay_after` follows.
    Reset {
        epoch: String,
        head_seq: u64,
        replay_after: u64,
        reason: String,
    },
}

/// Where to start following the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// Last seq already seen (0: from the beginning).
    pub from_seq: u64,
    /// Epoch the position belongs to (empty: none yet).
    pub epoch: String,
    /// Digest of the event at `from_seq` (empty with `from_seq` 0).
    pub digest: Vec<u8>,
}
