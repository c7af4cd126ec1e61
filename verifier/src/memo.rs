//! The token memo: token texts the cache answered for recently, each with
//! what the cache vouched for it (family, key, org, expiry) and its caveats,
//! so a token presented again is answered without decoding it or hashing its
//! prefix: one lookup by text, one comparison of the whole text, and the
//! caveats (kept parsed) evaluated for the request, as on every check.
//!
//! It is a memo *of the cache*, never a source of its own: an entry is made
//! only from a cache answer that found the chain genuine and not revoked, and
//! it carries the cache's generation at the moment that check began. Anything
//! that takes an entry out of the cache (a streamed revocation, a key
//! retirement, a reset, failing closed) bumps the generation, and an entry of
//! an older generation is never used. So the memo can answer only where the
//! cache would have answered the same, at the same time.
//!
//! Direct-mapped (a slot per hash of the text's tail, which is the token's
//! signature; a new entry replaces the old one in its slot): bounded memory,
//! no eviction bookkeeping. Holds token texts, which are secrets: `Debug`
//! shows only counts.

use std::fmt;
use std::sync::{Arc, RwLock};

use tally_token::{CompiledCaveats, FamilyId};

/// What a memo hit hands to the evaluation.
pub(crate) struct Memoized<'a> {
    pub(crate) caveats: &'a CompiledCaveats,
    pub(crate) family: FamilyId,
    pub(crate) org: &'a Arc<str>,
}

/// What the cache vouched for, to memoize with a token's text.
#[derive(Clone)]
pub(crate) struct Vouched {
    pub(crate) family: FamilyId,
    pub(crate) org: Arc<str>,
    /// The entry's own expiry (unix ms): the memo never outlives it.
    pub(crate) expires_at_ms: i64,
    pub(crate) generation: u64,
}

struct Entry {
    text: Box<str>,
    caveats: CompiledCaveats,
    vouched: Vouched,
}

/// The memo (see the module documentation).
pub(crate) struct Memo {
    slots: Box<[RwLock<Option<Box<Entry>>>]>,
    seed: u64,
}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memo").field("slots", &self.slots.len()).finish_non_exhaustive()
    }
}

/// Texts shorter than this are not memoized (no token is that short).
const TAIL: usize = 16;

impl Memo {
    /// A memo of `capacity` slots (rounded up to a power of two; 0: off).
    pub(crate) fn new(capacity: usize) -> Self {
        let slots = if capacity == 0 { 0 } else { capacity.next_power_of_two() };
        let mut seed = [0u8; 8];
        let _ = getrandom::getrandom(&mut seed);
        Self { slots: (0..slots).map(|_| RwLock::new(None)).collect(), seed: u64::from_le_bytes(seed) }
    }

    /// The slot of a text: a hash of its last 16 bytes (the end of the
    /// token's signature, in base64), salted per process so that which
    /// tokens share a slot cannot be planned from outside.
    fn slot(&self, text: &str) -> Option<&RwLock<Option<Box<Entry>>>> {
        let bytes = text.as_bytes();
        if self.slots.is_empty() || bytes.len() < TAIL {
            return None;
        }
        let tail = &bytes[bytes.len() - TAIL..];
        let a = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(tail[8..].try_into().expect("8 bytes"));
        let h = (a ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        Some(&self.slots[(h >> 32) as usize & (self.slots.len() - 1)])
    }

    /// Calls `answer` with the entry for `text` when it holds one of
    /// `generation` that is alive at `now_ms`.
    pub(crate) fn with<R>(
        &self,
        text: &str,
        generation: u64,
        now_ms: i64,
        answer: impl FnOnce(Memoized<'_>) -> R,
    ) -> Option<R> {
        let slot = self.slot(text)?.read().expect("memo slot lock");
        let e = slot.as_deref()?;
        if e.vouched.generation != generation || now_ms >= e.vouched.expires_at_ms || *e.text != *text {
            return None;
        }
        Some(answer(Memoized { caveats: &e.caveats, family: e.vouched.family, org: &e.vouched.org }))
    }

    /// Memoizes `text`, a token with these first-party caveats, as `vouched`.
    pub(crate) fn insert<'c>(&self, text: &str, caveats: impl Iterator<Item = &'c [u8]>, vouched: Vouched) {
        let Some(slot) = self.slot(text) else { return };
        let entry = Entry { text: text.into(), caveats: CompiledCaveats::compile(caveats), vouched };
        *slot.write().expect("memo slot lock") = Some(Box::new(entry));
    }

    /// Drops every entry (their memory, not only their validity).
    pub(crate) fn clear(&self) {
        for slot in &self.slots {
            slot.write().expect("memo slot lock").take();
        }
    }

    /// Entries held (a scan).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.read().expect("memo slot lock").is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vouched(generation: u64, expires_at_ms: i64) -> Vouched {
        Vouched { family: FamilyId([1; 16]), org: "acme".into(), expires_at_ms, generation }
    }

    const TEXT: &str = "tly_AgJpZAAPb3JnID0gYWNtZQAABiDRandomSignatureTail";
    const CAVEATS: [&[u8]; 3] = [b"org = acme", b"", b"action in read"];

    fn caveats(memo: &Memo, text: &str, generation: u64, now_ms: i64) -> Option<CompiledCaveats> {
        memo.with(text, generation, now_ms, |m| m.caveats.clone())
    }

    #[test]
    fn answers_only_for_the_same_text_generation_and_lifetime() {
        let memo = Memo::new(8);
        memo.insert(TEXT, CAVEATS.into_iter(), vouched(3, 1_000));
        assert_eq!(caveats(&memo, TEXT, 3, 999), Some(CompiledCaveats::compile(CAVEATS)));
        assert_eq!(caveats(&memo, TEXT, 4, 999), None, "the cache changed since");
        assert_eq!(caveats(&memo, TEXT, 3, 1_000), None, "expired with its cache entry");
        // Same tail (same slot), different text: a miss, never the other token's entry.
        let other = format!("x{}", &TEXT[1..]);
        assert_eq!(caveats(&memo, &other, 3, 0), None);
        assert_eq!(memo.len(), 1);
        memo.clear();
        assert_eq!(memo.len(), 0);
        assert_eq!(caveats(&memo, TEXT, 3, 0), None);
    }

    #[test]
    fn off_and_short_texts_hold_nothing() {
        let off = Memo::new(0);
        off.insert(TEXT, CAVEATS.into_iter(), vouched(0, i64::MAX));
        assert_eq!(caveats(&off, TEXT, 0, 0), None);
        let memo = Memo::new(4);
        memo.insert("tly_short", CAVEATS.into_iter(), vouched(0, i64::MAX));
        assert_eq!(memo.len(), 0);
    }

    #[test]
    fn capacity_bounds_the_entries() {
        let memo = Memo::new(5);
        for i in 0..100 {
            memo.insert(&format!("{TEXT}{i:04}"), CAVEATS.into_iter(), vouched(0, i64::MAX));
        }
        assert!(memo.len() <= 8, "8 slots at most, held {}", memo.len());
    }
}
