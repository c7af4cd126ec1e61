//! What the stream has revoked, as a deny list: family and branch ids, and
//! retired key ids. Needed beyond pruning the cache because a descendant of a
//! cached token may lie on a revoked branch that was never cached itself.
//!
//! A revocation carries the instant after which nothing it targets can be
//! valid (the family's expiry). Past that instant and the clock-skew
//! allowance every token it covers fails its own `expires` caveat, so the id
//! is dropped ([`Revoked::prune`]): the list holds what is revoked and still
//! alive, not every revocation since the last reset. Retired keys and ids
//! without an expiry stay until a reset.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::RwLock;

use tally_token::{FamilyId, KeyId, RevocationId, Signature};

/// Expiry of an id that never expires (the stream's 0).
const NEVER: i64 = i64::MAX;

#[allow(clippy::len_without_is_empty)]
/// Revoked ids (dropped past their expiry, or all on a reset, which replays the retained log).
#[derive(Debug, Default)]
pub struct Revoked {
    inner: RwLock<Sets>,
}

/// Ids are random nonces or hashes: their own bytes are a good hash.
type Fast = std::hash::BuildHasherDefault<crate::cache::KeyBytesHasher>;

#[derive(Debug, Default)]
struct Sets {
    /// Family id → unix ms after which it may be forgotten.
    families: HashMap<[u8; 16], i64, Fast>,
    /// Branch id → the same.
    branches: HashMap<[u8; 16], i64, Fast>,
    keys: HashSet<KeyId>,
    /// (expiry, is a branch, id) of every id with an expiry, soonest first.
    expiring: BTreeSet<(i64, bool, [u8; 16])>,
}

impl Sets {
    fn add(&mut self, branch: bool, id: [u8; 16], expires_at_ms: i64) {
        let expires = if expires_at_ms <= 0 { NEVER } else { expires_at_ms };
        let map = if branch { &mut self.branches } else { &mut self.families };
        let kept = map.entry(id).and_modify(|e| *e = (*e).max(expires)).or_insert(expires);
        if *kept == expires && expires != NEVER {
            self.expiring.insert((expires, branch, id));
        }
    }
}

impl Revoked {
    /// Adds a family that may be forgotten after `expires_at_ms` (unix ms; 0: never).
    pub fn add_family(&self, family: FamilyId, expires_at_ms: i64) {
        self.inner.write().expect("revoked lock").add(false, family.0, expires_at_ms);
    }

    /// Adds a branch id, as [`Revoked::add_family`].
    pub fn add_branch(&self, id: [u8; 16], expires_at_ms: i64) {
        self.inner.write().expect("revoked lock").add(true, id, expires_at_ms);
    }

    /// Adds a retired key.
    pub fn add_key(&self, key: KeyId) {
        self.inner.write().expect("revoked lock").keys.insert(key);
    }

    /// Forgets ids whose expiry is before `cutoff_ms` (now minus the skew
    /// allowance). Returns how many. Costs O(ids dropped), so it can run on
    /// every watchdog tick.
    pub fn prune(&self, cutoff_ms: i64) -> usize {
        if self.inner.read().expect("revoked lock").expiring.first().is_none_or(|e| e.0 >= cutoff_ms) {
            return 0;
        }
        let mut sets = self.inner.write().expect("revoked lock");
        let mut dropped = 0;
        while let Some(&(expires, branch, id)) = sets.expiring.first() {
            if expires >= cutoff_ms {
                break;
            }
            sets.expiring.pop_first();
            let map = if branch { &mut sets.branches } else { &mut sets.families };
            // A later revocation of the same id may have pushed its expiry out.
            if map.get(&id) == Some(&expires) {
                map.remove(&id);
                dropped += 1;
            }
        }
        dropped
    }

    /// Whether a token of this key and family is denied outright: its key
    /// retired, or its family revoked (one lock for both).
    pub fn denies(&self, key: KeyId, family: &FamilyId) -> Option<Denied> {
        let sets = self.inner.read().expect("revoked lock");
        if sets.keys.contains(&key) {
            Some(Denied::KeyRetired)
        } else if sets.families.contains_key(&family.0) {
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
        self.inner.read().expect("revoked lock").branches.contains_key(id.bytes())
    }

    /// Forgets everything (on reset: a replay follows).
    pub fn clear(&self) {
        *self.inner.write().expect("revoked lock") = Sets::default();
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

#[cfg(test)]
mod tests {
    use super::*;

    const F: FamilyId = FamilyId([1; 16]);
    const G: FamilyId = FamilyId([2; 16]);

    #[test]
    fn ids_are_forgotten_only_past_their_expiry() {
        let r = Revoked::default();
        r.add_family(F, 1_000);
        r.add_family(G, 0); // never expires
        r.add_branch([3; 16], 2_000);
        r.add_key(KeyId(9));
        assert_eq!(r.prune(1_000), 0, "not before the expiry instant has passed");
        assert_eq!(r.denies(KeyId(1), &F), Some(Denied::Family));
        assert_eq!(r.prune(1_001), 1);
        assert_eq!(r.denies(KeyId(1), &F), None);
        assert_eq!(r.denies(KeyId(1), &G), Some(Denied::Family));
        assert_eq!(r.denies(KeyId(9), &F), Some(Denied::KeyRetired));
        assert_eq!(r.len(), 3);
        assert_eq!(r.prune(i64::MAX), 1, "the branch goes; the key and the unexpiring family stay");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn a_later_revocation_with_a_later_expiry_keeps_the_id() {
        let r = Revoked::default();
        r.add_family(F, 1_000);
        r.add_family(F, 5_000);
        r.add_family(F, 3_000); // an earlier expiry never shortens it
        assert_eq!(r.prune(4_000), 0);
        assert_eq!(r.denies(KeyId(1), &F), Some(Denied::Family));
        assert_eq!(r.prune(5_001), 1);
        assert_eq!(r.denies(KeyId(1), &F), None);
        r.add_family(G, 1_000);
        r.add_family(G, 0);
        assert_eq!(r.prune(i64::MAX), 0, "revoked once without an expiry: kept");
        assert_eq!(r.denies(KeyId(1), &G), Some(Denied::Family));
    }
}
