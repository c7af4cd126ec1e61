//! Cache primitives for the verifier: prefix keys and revocation ids.
//!
//! A prefix key names "identifier I with exactly these first k caveats". A
//! verifier caches the genuine signature at k under that key; a descendant
//! (same identifier, same first k caveats, more after) continues the chain
//! from there. Because the key covers the caveats themselves, a token whose
//! first k caveats differ from the cached ones can never find that entry:
//! a cache entry binds the exact prefix it was verified with.
//!
//! Key k is SHA-256 of a 64-byte domain block followed by the *canonical
//! prefix encoding*: the V2 fields the signature covers, in V2 layout, with
//! every location hint left out (the signature does not cover them) and
//! minimal LEB128 lengths:
//!
//! ```text
//! 0x02 len identifier 0x00  ( 0x02 len caveat-id [0x04 len vid] 0x00 )×k
//! ```
//!
//! The encoding is unambiguous (every field is typed and length-prefixed), so
//! equal keys mean equal prefixes. Tokens as Tally and libmacaroons write them
//! carry exactly these bytes, so on the check path the key is hashed straight
//! from the decoded token, in one pass that keeps the SHA-256 state at every
//! block boundary: the key of each shorter prefix then costs one or two more
//! compressions, not a rehash.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};

use crate::crypto::{Signature, compress, finish, sha256_initial, state_bytes};
use crate::format::{EOS, IDENTIFIER, VID, put_field};
use crate::view::MacaroonRef;
use crate::{Caveat, FamilyId};

/// The domain block: the tag, zero-padded to one SHA-256 block.
const PREFIX_DOMAIN: &[u8; 64] = &{
    let tag = b"tally-prefix-v2";
    let mut block = [0u8; 64];
    let mut i = 0;
    while i < tag.len() {
        block[i] = tag[i];
        i += 1;
    }
    block
};
const BRANCH_DOMAIN: &[u8] = b"tally-branch-v1\0";

/// SHA-256 state after the domain block: where every prefix hash starts.
static DOMAIN_STATE: LazyLock<[u32; 8]> = LazyLock::new(|| {
    let mut state = sha256_initial();
    compress(&mut state, PREFIX_DOMAIN);
    state
});

/// Block-boundary states kept (the first 1 KiB of a prefix); beyond, they are recomputed.
const KEPT_STATES: usize = 16;

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

/// The prefix keys of one token, for k = 0 (identifier alone) to its caveat
/// count, computed on demand. Ask for the longest first: shorter ones reuse
/// the states the first pass kept.
pub struct PrefixKeys<'a> {
    /// The canonical prefix encoding of the whole token.
    bytes: Cow<'a, [u8]>,
    caveats: usize,
    /// `states[j]`: after the domain block and `j` blocks of `bytes`.
    states: [[u32; 8]; KEPT_STATES],
    known: usize,
}

impl fmt::Debug for PrefixKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefixKeys").field("bytes", &self.bytes.len()).field("caveats", &self.caveats).finish()
    }
}

impl<'a> PrefixKeys<'a> {
    /// Keys of a decoded token: its own bytes when canonical (the usual
    /// case), else a canonical re-encoding.
    pub fn of(token: &MacaroonRef<'a>) -> Self {
        let bytes = match token.canonical_prefix() {
            Some(bytes) => Cow::Borrowed(bytes),
            None => Cow::Owned(encode(token.identifier, token.caveats.iter().map(|c| (c.id, c.vid)))),
        };
        Self::from_encoding(bytes, token.caveats.len())
    }

    fn from_encoding(bytes: Cow<'a, [u8]>, caveats: usize) -> Self {
        let mut states = [[0u32; 8]; KEPT_STATES];
        states[0] = *DOMAIN_STATE;
        Self { bytes, caveats, states, known: 1 }
    }

    /// Caveats of the token (keys exist for `0..=caveats()`).
    pub fn caveats(&self) -> usize {
        self.caveats
    }

    /// The key of the identifier with the first `k` caveats.
    ///
    /// # Panics
    /// If `k` is more than the token's caveat count.
    pub fn key(&mut self, k: usize) -> PrefixKey {
        assert!(k <= self.caveats, "prefix {k} of a token with {} caveats", self.caveats);
        let end = if k == self.caveats { self.bytes.len() } else { self.end_of(k) };
        let blocks = end / 64;
        let mut state = self.state_after(blocks);
        finish(&mut state, &self.bytes[blocks * 64..end], (64 + end) as u64);
        PrefixKey(state_bytes(&state))
    }

    /// Where the encoding of the first `k` caveats ends: walks the fields.
    fn end_of(&self, k: usize) -> usize {
        let bytes = &self.bytes[..];
        let skip_field = |pos: usize| {
            let (len, used) = uvarint(&bytes[pos + 1..]);
            pos + 1 + used + len
        };
        let mut pos = skip_field(0) + 1; // identifier, EOS
        for _ in 0..k {
            pos = skip_field(pos);
            if bytes[pos] == VID {
                pos = skip_field(pos);
            }
            pos += 1; // EOS
        }
        pos
    }

    fn state_after(&mut self, blocks: usize) -> [u32; 8] {
        let kept = blocks.min(KEPT_STATES - 1);
        while self.known <= kept {
            let j = self.known;
            let mut state = self.states[j - 1];
            compress(&mut state, block(&self.bytes, j - 1));
            self.states[j] = state;
            self.known += 1;
        }
        let mut state = self.states[kept];
        for j in kept..blocks {
            compress(&mut state, block(&self.bytes, j));
        }
        state
    }
}

fn block(bytes: &[u8], j: usize) -> &[u8; 64] {
    bytes[j * 64..(j + 1) * 64].try_into().expect("64-byte block")
}

/// A length written by `put_field` (minimal LEB128): value and bytes used.
fn uvarint(bytes: &[u8]) -> (usize, usize) {
    let mut n = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (n, i + 1);
        }
    }
    unreachable!("canonical encodings are well formed")
}

/// The canonical prefix encoding of an identifier and caveats (id, vid).
fn encode<'c>(identifier: &[u8], caveats: impl Iterator<Item = (&'c [u8], Option<&'c [u8]>)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(identifier.len() + 64);
    put_field(&mut out, IDENTIFIER, identifier);
    out.push(EOS);
    for (id, vid) in caveats {
        put_field(&mut out, IDENTIFIER, id);
        if let Some(vid) = vid {
            put_field(&mut out, VID, vid);
        }
        out.push(EOS);
    }
    out
}

/// Key of `identifier` with exactly `caveats`.
pub fn prefix_key(identifier: &[u8], caveats: &[Caveat]) -> PrefixKey {
    owned_keys(identifier, caveats).key(caveats.len())
}

/// Keys of every prefix: element k is the key of the first k caveats
/// (so there are `caveats.len() + 1`).
pub fn prefix_keys(identifier: &[u8], caveats: &[Caveat]) -> Vec<PrefixKey> {
    let mut keys = owned_keys(identifier, caveats);
    let mut out: Vec<PrefixKey> = (0..=caveats.len()).rev().map(|k| keys.key(k)).collect();
    out.reverse();
    out
}

fn owned_keys(identifier: &[u8], caveats: &[Caveat]) -> PrefixKeys<'static> {
    let bytes = encode(identifier, caveats.iter().map(|c| (&c.id[..], c.vid.as_deref())));
    PrefixKeys::from_encoding(Cow::Owned(bytes), caveats.len())
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
        RevocationId::Branch(Self::branch_bytes(sig))
    }

    /// [`RevocationId::branch`]'s id bytes.
    pub fn branch_bytes(sig: &Signature) -> [u8; BRANCH_ID_LEN] {
        let mut h = Sha256::new();
        h.update(BRANCH_DOMAIN);
        h.update(sig.as_bytes());
        let digest = h.finalize();
        digest[..BRANCH_ID_LEN].try_into().expect("digest is 32 bytes")
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
    fn keys_are_sha256_of_the_domain_block_and_the_canonical_encoding() {
        let id = [9u8; 300]; // long enough that keys span several blocks, and kept states
        let cavs: Vec<Caveat> = (0..40)
            .map(|i| {
                let text = format!("resource = apps/{}", "x".repeat(i * 7));
                if i % 5 == 4 {
                    Caveat { location: None, id: text.into(), vid: Some(vec![i as u8; 72]) }
                } else {
                    Caveat::first_party(text)
                }
            })
            .collect();
        let keys = prefix_keys(&id, &cavs);
        for (k, key) in keys.iter().enumerate() {
            let mut h = Sha256::new();
            h.update(PREFIX_DOMAIN);
            h.update(encode(&id, cavs[..k].iter().map(|c| (&c.id[..], c.vid.as_deref()))));
            assert_eq!(key.0, <[u8; 32]>::from(h.finalize()), "prefix {k}");
            assert_eq!(*key, prefix_key(&id, &cavs[..k]), "prefix {k}");
        }
    }

    #[test]
    fn decoded_tokens_hash_their_own_bytes_or_a_canonical_encoding() {
        use crate::{Limits, RootKey};
        let mut m = crate::Macaroon::mint(&RootKey::from_bytes([1; 32]), b"id".to_vec(), Some("loc".into()));
        m.add_first_party("action in read");
        m.add_third_party(Some("https://tp.example".into()), &RootKey::from_bytes([2; 32]), b"tp".to_vec(), [3; 24]);
        m.add_first_party("service = web");
        let expected = prefix_keys(m.identifier(), m.caveats());
        // Located third-party caveat: not canonical, re-encoded.
        let bytes = m.encode_v2();
        let view = MacaroonRef::decode_v2(&bytes, &Limits::default()).unwrap();
        assert!(view.canonical_prefix().is_none());
        let mut keys = PrefixKeys::of(&view);
        assert_eq!(
            (0..=3).rev().map(|k| keys.key(k)).collect::<Vec<_>>(),
            expected.iter().rev().copied().collect::<Vec<_>>()
        );
        // Without locations: hashed as decoded.
        m.caveats[1].location = None;
        let bytes = m.encode_v2();
        let view = MacaroonRef::decode_v2(&bytes, &Limits::default()).unwrap();
        assert!(view.canonical_prefix().is_some());
        let mut keys = PrefixKeys::of(&view);
        assert_eq!(keys.key(3), expected[3]);
        assert_eq!(keys.key(1), expected[1]);
        assert_eq!(keys.key(0), expected[0]);
        // An over-long length (2 written as 0x82 0x00): not canonical, same keys.
        let mut long = vec![2, IDENTIFIER, 0x82, 0x00, b'i', b'd', EOS, IDENTIFIER, 1, b'a', EOS, EOS, 6, 32];
        long.extend_from_slice(&[0; 32]);
        let view = MacaroonRef::decode_v2(&long, &Limits::default()).unwrap();
        assert!(view.canonical_prefix().is_none());
        assert_eq!(PrefixKeys::of(&view).key(1), prefix_key(b"id", &[Caveat::first_party("a")]));
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
