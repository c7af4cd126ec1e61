//! What the authority keeps in memory, loaded from the store at startup and
//! changed only by the writer after a commit: decrypted (derived) root keys,
//! the set of revoked ids, and the head of the revocation log.

use std::collections::{BTreeMap, HashMap, HashSet};

use tally_token::{DerivedKey, Error as TokenError, KeyId, RootKeyProvider};

/// One root key as the authority serves it.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Owning org.
    pub org: String,
    /// The libmacaroons-derived key (secret).
    pub derived: DerivedKey,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, when retired.
    pub retired_at: Option<i64>,
}

/// Every org and root key.
#[derive(Debug, Default)]
pub struct KeyRing {
    /// Key id → key.
    pub keys: HashMap<KeyId, KeyEntry>,
    /// Org → (created at, current key id).
    pub orgs: BTreeMap<String, OrgEntry>,
}

/// One org.
#[derive(Debug, Clone)]
pub struct OrgEntry {
    /// Unix ms.
    pub created_at: i64,
    /// The key new tokens are minted under.
    pub current_key: KeyId,
}

impl RootKeyProvider for KeyRing {
    fn derived_key(&self, key_id: KeyId) -> Result<DerivedKey, TokenError> {
        match self.keys.get(&key_id) {
            None => Err(TokenError::UnknownKey(key_id)),
            Some(k) if k.retired_at.is_some() => Err(TokenError::RetiredKey(key_id)),
            Some(k) => Ok(k.derived.clone()),
        }
    }
}

/// The set of revoked ids. Every authenticated call looks each revocation
/// id of its bearer up here (a token of n caveats has n + 2), so it hashes
/// with foldhash, seeded per process, not SipHash: the ids are random nonces
/// and SHA-256 outputs. Measured with callgrind on the criterion Revoke
/// bench: 1,380 instructions to look up a bearer's ids with SipHash, 300
/// with foldhash.
pub type RevokedIds = HashSet<[u8; 16], foldhash::fast::RandomState>;

/// Revoked family and branch ids (key revocations live in the key ring as retirement).
#[derive(Debug, Default)]
pub struct Revoked {
    /// 16-byte ids, family nonces and branch hashes alike (they cannot collide in practice).
    pub ids: RevokedIds,
}

/// The head of the revocation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogHead {
    /// Last assigned seq (0: empty log).
    pub seq: u64,
    /// Running digest after that seq.
    pub digest: [u8; 16],
    /// Oldest seq still in the log (head + 1 when everything was pruned).
    pub retained_from: u64,
}

/// State shared by the gRPC handlers, the stream fan-out and the writer.
#[derive(Debug)]
pub struct Shared {
    /// Random id of this database, made at init.
    pub epoch: String,
    /// Orgs and root keys.
    pub keys: std::sync::RwLock<KeyRing>,
    /// Revoked family and branch ids.
    pub revoked: std::sync::RwLock<Revoked>,
    /// Head of the log; changes after each commit that appended to it.
    pub head: tokio::sync::watch::Sender<LogHead>,
    /// Live revocations, in seq order, after they are durable.
    pub events: tokio::sync::broadcast::Sender<std::sync::Arc<crate::log::LogEvent>>,
    /// Times a subscriber fell behind the fan-out and caught up from the database.
    pub catch_ups: std::sync::atomic::AtomicU64,
    /// Subscribers connected now.
    pub subscribers: std::sync::atomic::AtomicU64,
    /// Group commits the writer made (each one fsync).
    pub commits: std::sync::atomic::AtomicU64,
    /// Changes those commits carried (changes ÷ commits: the mean group size).
    pub committed_changes: std::sync::atomic::AtomicU64,
    /// Time from BEGIN to the end of COMMIT (its fsync included) of each
    /// group commit that succeeded (as counted in `commits`).
    pub commit_duration: prometheus_client::metrics::histogram::Histogram,
}
