//! What the stream has revoked, as a deny list: family and branch ids, and
//! retired key ids. Needed beyond pruning the cache because a descendant of a
//! cached token may lie on a revoked branch that was never cached itself.

use std::collections::HashSet;
use std::sync::RwLock;

use tally_token::{FamilyId, KeyId, RevocationId, Signature};

#[allow(clippy::len_without_is_empty)]
/// Revoked ids (cleared only on a reset, which replays the retained log).
#[derive(Debug, Default)]
pub struct Revoked {
    inner: RwLock<Sets>,
}

/// Ids are random nonces or hashes: their own bytes are a good hash.
type Fast = std::hash::BuildHasherDefault<crate::cache::KeyBytesHasher>;

#[derive(Debug, Default)]
struct Sets {
    families: HashSet<[u8; 16], Fast>,
    branches: HashSet<[u8; 16], Fast>,
    keys: HashSet<KeyId>,
}

impl Revoked {
    /// Adds a family.
    pub fn add_family(&self, family: FamilyId) {
        self.inner.write().expect("revoked lock").families.insert(family.0);
    }

    /// Adds a branch id.
    pub fn add_branch(&self, id: [u8; 16]) {
        self.inner.write().expect("revoked lock").branches.insert(id);
    }

    /// Adds a retired key.
    pub fn add_key(&self, key: KeyId) {
        self.inner.write().expect("revoked lock").keys.insert(key);
    }

    /// Whether a token of this key and family is denied outright: its key
    /// retired, or its family revoked (one lock for both).
    pub fn denies(&self, key: KeyId, family: &FamilyId) -> Option<Denied> {
        let sets = self.inner.read().expect("revoked lock");
        if sets.keys.contains(&key) {
            Some(Denied::KeyRetired)
        } else if sets.families.contains(&family.0) {
            Some(Denied::Family)
        } else {
            None
        }
    }

    /// True when the chain position with signature `sig` lies on a revoked
    /// branch. Hashes the signature only when some branch is revoked at all.
    pub fn on_revoked_branch(&self, sig: &Signature) -> bool {
        if self.inner.read().expect("revoked lock").branches.is_empty() {
            return false;
        }
        let id = RevocationId::branch(sig);
        self.inner.read().expect("revoked lock").branches.contains(id.bytes())
    }

    /// Forgets everything (on reset: a replay follows).
    pub fn clear(&self) {
        let mut sets = self.inner.write().expect("revoked lock");
        sets.families.clear();
        sets.branches.clear();
        sets.keys.clear();
    }

    /// Ids and keys held.
    pub(crate) fn len(&self) -> usize {
        let sets = self.inner.read().expect("revoked lock");
        sets.families.len() + sets.branches.len() + sets.keys.len()
    }
}

/// Why [`Revoked::denies`] refuses a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    KeyRetired,
    Family,
}
