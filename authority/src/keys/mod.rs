//! The key ring: every org and its root keys, held decrypted (as derived
//! keys) in memory. Root keys are stored only sealed under the
//! key-encryption key (`kek.rs`): the ring opens them at startup (a wrong
//! KEK fails there), makes and seals each new one, and answers every look-up
//! (which org owns a key, whether it is active, which key an org mints
//! under, the derived key a chain is verified with). It changes only when
//! the writer has committed a change ([`KeyRing::apply`]).

mod kek;

use std::collections::BTreeMap;
use std::sync::RwLock;

use indexmap::IndexMap;
use tally_token::{BundleRef, DerivedKey, Error as TokenError, KeyId, Limits, RootKey, RootKeyProvider, Verified};

use crate::error::{Error, Result};
use crate::store::{OrgRow, SealedKeyRow};

pub use kek::Kek;

/// The org whose key signs Tally's own API tokens.
pub const SYSTEM_ORG: &str = "system";

/// The lowest random key id: below it are the sequential ids that databases
/// made before key ids were random (1, 2, … in every database alike).
const RANDOM_KEY_ID_MIN: u64 = 1 << 32;

/// A random key id in `[2^32, 2^63)`: a varint of 9 bytes in the token's
/// identifier, and a positive 64-bit integer in either store. A million keys
/// across all of an operator's databases share an id with odds of about
/// 1 in 18 million (n² / 2^64); within one database the writer also checks
/// the id is unused.
pub(crate) fn random_key_id() -> Result<KeyId> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes)?;
    let n = u64::from_le_bytes(bytes) >> 1;
    Ok(KeyId(n.max(RANDOM_KEY_ID_MIN)))
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

/// One root key as the authority serves it.
#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    /// Owning org.
    org: String,
    /// The libmacaroons-derived key (secret; its `Debug` is redacted).
    derived: DerivedKey,
    /// Unix ms.
    created_at: i64,
    /// Unix ms, when retired.
    retired_at: Option<i64>,
}

/// One org.
#[derive(Debug, Clone)]
struct OrgEntry {
    /// Unix ms.
    created_at: i64,
    /// The key new tokens are minted under.
    current_key: KeyId,
}

/// A change the writer committed, for the ring to learn.
#[derive(Debug)]
pub(crate) enum KeyChange {
    /// A new org (its first key follows).
    Org { org: String, created_at: i64 },
    /// A new key, its org's current key from now on.
    Key { key_id: KeyId, entry: KeyEntry },
    /// A key retired.
    Retired { key_id: KeyId, at: i64 },
}

/// Every org and root key.
#[derive(Debug, Default)]
struct Ring {
    /// In creation order, so keys are listed oldest first.
    keys: IndexMap<KeyId, KeyEntry>,
    /// Ordered, so orgs are listed by name.
    orgs: BTreeMap<String, OrgEntry>,
    /// The newest creation-order position read from the store (keys made
    /// after it are other replicas' to learn, [`KeyRing::learn`]).
    followed: i64,
}

impl Ring {
    /// Makes `org`'s newest active key its current one (after one retired).
    fn recompute_current(&mut self, org: &str) {
        let newest = self.keys.iter().rev().find(|(_, k)| k.org == org && k.retired_at.is_none()).map(|(id, _)| *id);
        if let (Some(entry), Some(id)) = (self.orgs.get_mut(org), newest) {
            entry.current_key = id;
        }
    }
}

impl RootKeyProvider for Ring {
    fn derived_key(&self, key_id: KeyId) -> Result<DerivedKey, TokenError> {
        match self.keys.get(&key_id) {
            None => Err(TokenError::UnknownKey(key_id)),
            Some(k) if k.retired_at.is_some() => Err(TokenError::RetiredKey(key_id)),
            Some(k) => Ok(k.derived.clone()),
        }
    }
}

/// The key ring.
#[derive(Debug)]
pub(crate) struct KeyRing {
    kek: Kek,
    ring: RwLock<Ring>,
}

impl KeyRing {
    /// Opens every sealed key of `keys` (in creation order) with
    /// `kek`: [`Error::WrongKek`] when one does not open. An org's current
    /// key is its newest active one.
    pub(crate) fn open(kek: Kek, orgs: Vec<OrgRow>, keys: Vec<SealedKeyRow>) -> Result<Self> {
        let mut ring = Ring::default();
        for OrgRow { org, created_at } in orgs {
            ring.orgs.insert(org, OrgEntry { created_at, current_key: KeyId(0) });
        }
        for SealedKeyRow { key_id, org, sealed, created_at, retired_at, ordinal } in keys {
            ring.followed = ring.followed.max(ordinal);
            let derived = kek.open(key_id, &org, &sealed)?.derive();
            if retired_at.is_none()
                && let Some(o) = ring.orgs.get_mut(&org)
            {
                o.current_key = key_id; // creation order: the newest active key wins
            }
            ring.keys.insert(key_id, KeyEntry { org, derived, created_at, retired_at });
        }
        Ok(Self { kek, ring: RwLock::new(ring) })
    }

    /// The newest creation-order position the ring has read from the store.
    pub(crate) fn followed(&self) -> i64 {
        self.read().followed
    }

    /// Learns keys other replicas made (`rows`: keys after [`Self::followed`],
    /// in creation order, each with its org's creation time), their orgs
    /// with them; a key it knows already (its own) is skipped. Each org's
    /// current key is its newest active one. A key that does not open under
    /// the KEK fails the whole lot.
    pub(crate) fn learn(&self, rows: Vec<(SealedKeyRow, i64)>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut opened = Vec::with_capacity(rows.len());
        {
            let ring = self.read();
            for (row, org_created) in rows {
                let known = ring.keys.contains_key(&row.key_id);
                let derived =
                    if known { None } else { Some(self.kek.open(row.key_id, &row.org, &row.sealed)?.derive()) };
                opened.push((row, org_created, derived));
            }
        }
        let mut ring = self.ring.write().expect("key ring lock");
        for (row, org_created, derived) in opened {
            ring.followed = ring.followed.max(row.ordinal);
            let org =
                ring.orgs.entry(row.org.clone()).or_insert(OrgEntry { created_at: org_created, current_key: KeyId(0) });
            if row.retired_at.is_none() {
                org.current_key = row.key_id;
            }
            if let Some(derived) = derived {
                let entry = KeyEntry { org: row.org, derived, created_at: row.created_at, retired_at: row.retired_at };
                ring.keys.insert(row.key_id, entry);
            }
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring.read().expect("key ring lock")
    }

    /// Verifies `bundle`'s chains under the ring's active keys.
    pub(crate) fn verify<'b>(&self, bundle: &BundleRef<'b>, limits: &Limits) -> Result<Verified<'b>, TokenError> {
        tally_token::verify_view(bundle, &*self.read(), limits)
    }

    /// The org owning a key.
    pub(crate) fn org_of(&self, key_id: KeyId) -> Option<String> {
        self.read().keys.get(&key_id).map(|k| k.org.clone())
    }

    /// Whether `key_id` exists and is not retired.
    pub(crate) fn is_active(&self, key_id: KeyId) -> bool {
        self.read().keys.get(&key_id).is_some_and(|k| k.retired_at.is_none())
    }

    /// Whether org `org` exists.
    pub(crate) fn has_org(&self, org: &str) -> bool {
        self.read().orgs.contains_key(org)
    }

    /// The key `org` mints under now, and its derived key.
    pub(crate) fn signing_key(&self, org: &str) -> Result<(KeyId, DerivedKey)> {
        let ring = self.read();
        let key_id = ring.orgs.get(org).ok_or_else(|| Error::NotFound(format!("org {org:?}")))?.current_key;
        let derived = ring
            .derived_key(key_id)
            .map_err(|_| Error::FailedPrecondition(format!("org {org:?} has no active key")))?;
        Ok((key_id, derived))
    }

    /// Every org, by name.
    pub(crate) fn orgs(&self) -> Vec<OrgInfo> {
        self.read()
            .orgs
            .iter()
            .map(|(org, e)| OrgInfo { org: org.clone(), created_at_ms: e.created_at, current_key: e.current_key })
            .collect()
    }

    /// Every key of `org`, oldest first.
    pub(crate) fn keys_of(&self, org: &str) -> Result<Vec<KeyInfo>> {
        let ring = self.read();
        let current = ring.orgs.get(org).ok_or_else(|| Error::NotFound(format!("org {org:?}")))?.current_key;
        let list: Vec<KeyInfo> = ring
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
        Ok(list)
    }

    /// A fresh random root key `key_id` for `org`: its sealed form, for the
    /// store, and the change the ring applies once that is committed.
    pub(crate) fn generate(&self, key_id: KeyId, org: &str, now: i64) -> Result<(Vec<u8>, KeyChange)> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)?;
        let key = RootKey::from_bytes(bytes);
        let sealed = self.kek.seal(key_id, org, &key)?;
        let entry = KeyEntry { org: org.to_owned(), derived: key.derive(), created_at: now, retired_at: None };
        Ok((sealed, KeyChange::Key { key_id, entry }))
    }

    /// Learns committed changes, all under one lock.
    pub(crate) fn apply(&self, changes: impl IntoIterator<Item = KeyChange>) {
        let mut ring = self.ring.write().expect("key ring lock");
        for change in changes {
            match change {
                KeyChange::Org { org, created_at } => {
                    ring.orgs.insert(org, OrgEntry { created_at, current_key: KeyId(0) });
                }
                KeyChange::Key { key_id, entry } => {
                    if let Some(org) = ring.orgs.get_mut(&entry.org) {
                        org.current_key = key_id;
                    }
                    ring.keys.insert(key_id, entry);
                }
                KeyChange::Retired { key_id, at } => {
                    if let Some(k) = ring.keys.get_mut(&key_id) {
                        k.retired_at.get_or_insert(at);
                        let org = k.org.clone();
                        // Retired by another replica, an org's current key
                        // gives way to its newest active one.
                        if ring.orgs.get(&org).is_some_and(|o| o.current_key == key_id) {
                            ring.recompute_current(&org);
                        }
                    }
                }
            }
        }
    }
}
