//! Cache primitives for the verifier: prefix keys and revocation ids.
//!
//! A prefix key names "identifier I with exactly these first k caveats". A
//! verifier caches the genuine signature at k under that key; a descendant
//! (same identifier, same first k caveats, more after) continues the chain
//! from there. Because the key covers the caveats themselves, a token whose
//! first k caveats differ from the cached ones can never find that entry
//! (DESIGN §3, prefix binding).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::crypto::Signature;
use crate::view::CaveatRef;
use crate::{Caveat, FamilyId};

const PREFIX_DOMAIN: &[u8] = b"tally-prefix-v1\0";
const BRANCH_DOMAIN: &[u8] = b"tally-branch-v1\0";

/// Hash of an identifier and an exact sequence of caveats. Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrefixKey(pub [u8; 32]);

impl fmt::Debug for PrefixKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrefixKey(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Computes prefix keys incrementally: push caveats in chain order, read the
/// key of the prefix so far at any point.
#[derive(Clone, Debug)]
pub struct PrefixHasher(Sha256);

impl PrefixHasher {
    /// Starts with the identifier (the prefix of length 0).
    pub fn new(identifier: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(PREFIX_DOMAIN);
        put(&mut h, identifier);
        Self(h)
    }

    /// Extends the prefix by one caveat (id and, for third-party ones, vid:
    /// exactly what the signature covers; location hints are not).
    pub fn push(&mut self, caveat: &Caveat) {
        self.push_parts(&caveat.id, caveat.vid.as_deref());
    }

    /// [`PrefixHasher::push`] for a borrowed caveat.
    pub fn push_ref(&mut self, caveat: &CaveatRef<'_>) {
        self.push_parts(caveat.id, caveat.vid);
    }

    fn push_parts(&mut self, id: &[u8], vid: Option<&[u8]>) {
        put(&mut self.0, id);
        match vid {
            None => self.0.update([0]),
            Some(vid) => {
                self.0.update([1]);
                put(&mut self.0, vid);
            }
        }
    }

    /// The key of the prefix pushed so far.
    pub fn key(&self) -> PrefixKey {
        PrefixKey(self.0.clone().finalize().into())
    }
}

fn put(h: &mut Sha256, field: &[u8]) {
    h.update((field.len() as u32).to_be_bytes());
    h.update(field);
}

/// Key of `identifier` with exactly `caveats`.
pub fn prefix_key(identifier: &[u8], caveats: &[Caveat]) -> PrefixKey {
    let mut h = PrefixHasher::new(identifier);
    for c in caveats {
        h.push(c);
    }
    h.key()
}

/// Keys of every prefix: element k is the key of the first k caveats
/// (so there are `caveats.len() + 1`).
pub fn prefix_keys(identifier: &[u8], caveats: &[Caveat]) -> Vec<PrefixKey> {
    let mut h = PrefixHasher::new(identifier);
    let mut keys = Vec::with_capacity(caveats.len() + 1);
    keys.push(h.key());
    for c in caveats {
        h.push(c);
        keys.push(h.key());
    }
    keys
}

/// Length of a branch id.
pub const BRANCH_ID_LEN: usize = 16;

/// What a revocation names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RevocationId {
    /// A whole family: the minted token and every descendant.
    Family(FamilyId),
    /// One delegated branch: every token whose chain passes through one
    /// signature. The id is a hash of that signature, never the signature.
    Branch([u8; BRANCH_ID_LEN]),
}

impl RevocationId {
    /// The branch id of the chain position whose signature is `sig`.
    pub fn branch(sig: &Signature) -> Self {
        let mut h = Sha256::new();
        h.update(BRANCH_DOMAIN);
        h.update(sig.as_bytes());
        let digest = h.finalize();
        RevocationId::Branch(digest[..BRANCH_ID_LEN].try_into().expect("digest is 32 bytes"))
    }

    /// The 16 id bytes (family nonce or branch hash).
    pub fn bytes(&self) -> &[u8; 16] {
        match self {
            RevocationId::Family(f) => &f.0,
            RevocationId::Branch(b) => b,
        }
    }
}

impl fmt::Debug for RevocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationId::Family(id) => write!(f, "Family({id})"),
            RevocationId::Branch(_) => write!(f, "Branch({})", FamilyId(*self.bytes())),
        }
    }
}

/// Revocation ids of a token whose chain signatures are `chain` (element k is
/// the signature after k caveats): its family and every branch it lies on.
pub fn revocation_ids(family: FamilyId, chain: &[Signature]) -> Vec<RevocationId> {
    let mut ids = Vec::with_capacity(chain.len() + 1);
    ids.push(RevocationId::Family(family));
    ids.extend(chain.iter().map(RevocationId::branch));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_covered_byte() {
        let a = Caveat::first_party("action in read");
        let b = Caveat::first_party("action in write");
        let k = prefix_key(b"id", std::slice::from_ref(&a));
        assert_ne!(k, prefix_key(b"id", std::slice::from_ref(&b)));
        assert_ne!(k, prefix_key(b"id2", std::slice::from_ref(&a)));
        assert_ne!(prefix_key(b"id", &[a.clone(), b.clone()]), prefix_key(b"id", &[b.clone(), a.clone()]));
        // Field boundaries are unambiguous.
        assert_ne!(prefix_key(b"ab", &[Caveat::first_party("c")]), prefix_key(b"a", &[Caveat::first_party("bc")]));
        // A third-party caveat differs from a first-party one with the same id.
        let tp = Caveat { location: None, id: a.id.clone(), vid: Some(vec![]) };
        assert_ne!(k, prefix_key(b"id", &[tp]));
        // Location hints are not covered, as the signature does not cover them.
        let mut located = Caveat { location: None, id: b"x".to_vec(), vid: Some(vec![1]) };
        let unlocated = prefix_key(b"id", &[located.clone()]);
        located.location = Some("elsewhere".into());
        assert_eq!(unlocated, prefix_key(b"id", &[located]));
    }

    #[test]
    fn all_prefixes() {
        let cavs = [Caveat::first_party("a"), Caveat::first_party("b")];
        let keys = prefix_keys(b"id", &cavs);
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0], prefix_key(b"id", &[]));
        assert_eq!(keys[2], prefix_key(b"id", &cavs));
    }

    #[test]
    fn branch_ids() {
        let s1 = Signature::from_bytes([1; 32]);
        let s2 = Signature::from_bytes([2; 32]);
        assert_ne!(RevocationId::branch(&s1), RevocationId::branch(&s2));
        let ids = revocation_ids(FamilyId([7; 16]), &[s1, s2]);
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], RevocationId::Family(FamilyId([7; 16])));
    }
}
