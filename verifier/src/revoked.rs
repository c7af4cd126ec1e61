//! What the stream has revoked, as a deny list: family and branch ids, and
//! retired key ids. Needed beyond pruning the cache because a descendant of a
//! cached token may lie on a revoked branch that was never cached itself.

use std::collections::HashSet;
use std::sync::RwLock;

use tally_token::{KeyId, RevocationId};

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
    ids: HashSet<[u8; 16], Fast>,
    keys: HashSet<KeyId>,
}

impl Revoked {
    /// Adds a family or branch id.
    pub fn add_id(&self, id: [u8; 16]) {
        self.inner.write().expect("revoked lock").ids.insert(id);
    }

    /// Adds a retired key.
    pub fn add_key(&self, key: KeyId) {
        self.inner.write().expect("revoked lock").keys.insert(key);
    }

    /// True when any of the ids is revoked.
    pub fn any(&self, ids: &[RevocationId]) -> bool {
        let sets = self.inner.read().expect("revoked lock");
        ids.iter().any(|id| sets.ids.contains(id.bytes()))
    }

    /// True when this 16-byte id is revoked.
    pub fn contains(&self, id: &[u8; 16]) -> bool {
        self.inner.read().expect("revoked lock").ids.contains(id)
    }

    /// True when the key was retired.
    pub fn key_retired(&self, key: KeyId) -> bool {
        self.inner.read().expect("revoked lock").keys.contains(&key)
    }

    /// Forgets everything (on reset: a replay follows).
    pub fn clear(&self) {
        let mut sets = self.inner.write().expect("revoked lock");
        sets.ids.clear();
        sets.keys.clear();
    }

    /// Ids and keys held.
    pub(crate) fn len(&self) -> usize {
        let sets = self.inner.read().expect("revoked lock");
        sets.ids.len() + sets.keys.len()
    }
}
