//! The verifier's cache. An entry says: "the chain of identifier
//! I with exactly these first k caveats is genuine, with signature S", keyed
//! by the prefix hash of I and those caveats, never by identifier or signature
//! alone. Request-dependent facts are never stored: caveats are evaluated on
//! every check.
//!
//! One map under one `RwLock` (checks take the read lock), plus an index from
//! family to its entries so a streamed revocation prunes in O(entries of that
//! family). Capacity is bounded; eviction samples a few random entries and
//! drops the least recently used (as Redis does), which needs no list upkeep
//! on the hot path: a hit only stores a coarse timestamp.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use indexmap::IndexMap;
use tally_token::{FamilyId, KeyId, PrefixKey, Signature};

/// Random entries looked at to choose one to evict.
const EVICTION_SAMPLE: usize = 8;
/// Most entries one family may hold: a holder minting endless attenuations
/// cannot fill the cache with one family (nor make its index, searched on
/// every eviction of its entries, long). Its descendants still hit through
/// the entries it has, by continuing the chain.
pub const MAX_PER_FAMILY: usize = 1024;

/// Hashes a key by its first 8 bytes: prefix keys are SHA-256 outputs and
/// family ids random nonces, so their bytes are already uniformly spread.
#[derive(Default, Clone, Copy)]
pub struct KeyBytesHasher(u64);

impl Hasher for KeyBytesHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The key's own bytes arrive last (after a length prefix), and win.
        if bytes.len() >= 8 {
            self.0 = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        } else {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
    }
}

type Fast = BuildHasherDefault<KeyBytesHasher>;

/// Coarse time of use for eviction: unix seconds (wrapping in 2106).
fn secs(now_ms: i64) -> u32 {
    (now_ms / 1000) as u32
}

/// What a hit returns (copied out from under the lock).
#[derive(Debug, Clone)]
pub struct Cached {
    /// Genuine signature at this prefix (secret).
    pub sig: Signature,
    pub family: FamilyId,
    pub key_id: KeyId,
    /// Entry dies at this instant (unix ms): the token's own expiry.
    pub expires_at_ms: i64,
    pub org: Arc<str>,
}

#[derive(Debug)]
struct Entry {
    sig: Signature,
    family: FamilyId,
    key_id: KeyId,
    expires_at_ms: i64,
    org: Arc<str>,
    /// Seconds since the cache was made, at the last hit.
    last_used: AtomicU32,
}

#[derive(Debug, Default)]
struct Inner {
    map: IndexMap<PrefixKey, Entry, Fast>,
    by_family: HashMap<FamilyId, Family, Fast>,
    rng: u64,
}

/// A family's entries: their keys (what pruning it removes) and the prefix
/// lengths they cover, so a lookup hashes only prefixes that may be cached.
#[derive(Debug, Default)]
struct Family {
    keys: Vec<(PrefixKey, u8)>,
    lengths: PrefixLengths,
}

impl Family {
    fn add(&mut self, key: PrefixKey, caveats: usize) {
        let bit = PrefixLengths::bit(caveats);
        self.keys.push((key, bit));
        self.lengths.0 |= 1 << bit;
    }

    fn remove(&mut self, key: &PrefixKey) {
        self.keys.retain(|(k, _)| k != key);
        self.lengths = PrefixLengths(self.keys.iter().fold(0, |m, (_, bit)| m | 1 << bit));
    }
}

/// The prefix lengths (caveat counts k) a family has entries for: bit
/// `min(k, 127)` (the default limit allows 128 caveats, so only longer
/// prefixes share a bit).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PrefixLengths(u128);

impl PrefixLengths {
    fn bit(k: usize) -> u8 {
        k.min(127) as u8
    }

    /// Lengths from `caveats` down to 0 that may be cached, longest first.
    fn longest_first(self, caveats: usize) -> impl Iterator<Item = usize> {
        (0..=caveats).rev().filter(move |&k| self.0 & (1 << Self::bit(k)) != 0)
    }
}

/// The positive cache.
#[derive(Debug)]
pub struct Cache {
    inner: RwLock<Inner>,
    capacity: usize,
    evictions: AtomicU64,
    /// Bumped by every removal other than eviction (a revocation, a key
    /// retirement, a flush): what a memo of cache answers is checked against.
    generation: AtomicU64,
}

impl Cache {
    /// A cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::getrandom(&mut seed);
        let inner = Inner { rng: u64::from_le_bytes(seed) | 1, ..Inner::default() };
        Self {
            inner: RwLock::new(inner),
            capacity: capacity.max(1),
            evictions: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation: read it before the deny lists and the cache, and a
    /// revocation applied since shows as a newer one.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Under the write lock, after a removal: newer answers only from now on.
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Looks up a prefix; expired entries (at `now_ms`) do not count.
    pub fn get(&self, key: &PrefixKey, now_ms: i64) -> Option<Cached> {
        self.inner.read().expect("cache lock").get(key, now_ms)
    }

    /// The prefix lengths `family` has entries for, `None` when it has none.
    fn lengths(&self, family: &FamilyId) -> Option<PrefixLengths> {
        self.inner.read().expect("cache lock").by_family.get(family).map(|f| f.lengths)
    }

    /// The longest cached prefix of a token of `family` with `caveats`
    /// caveats: its length, key and entry. Only the lengths the family has
    /// entries for are tried, longest first, each keyed by `key_of(k)` (a
    /// descendant of a cached token hashes one prefix, not one per caveat; a
    /// family with nothing cached none). `key_of` runs outside the lock.
    pub fn longest(
        &self,
        family: &FamilyId,
        caveats: usize,
        now_ms: i64,
        mut key_of: impl FnMut(usize) -> PrefixKey,
    ) -> Option<(usize, PrefixKey, Cached)> {
        self.lengths(family)?.longest_first(caveats).find_map(|k| {
            let key = key_of(k);
            self.get(&key, now_ms).map(|hit| (k, key, hit))
        })
    }

    /// Inserts (or refreshes) the entry of `key`, the prefix with `caveats`
    /// caveats, evicting one when full. A new entry of a family that holds
    /// [`MAX_PER_FAMILY`] already is not added.
    pub fn insert(&self, key: PrefixKey, caveats: usize, value: Cached, now_ms: i64) {
        let now = secs(now_ms);
        let mut inner = self.inner.write().expect("cache lock");
        let new = !inner.map.contains_key(&key);
        if new && inner.by_family.get(&value.family).is_some_and(|f| f.keys.len() >= MAX_PER_FAMILY) {
            return;
        }
        if new && inner.map.len() >= self.capacity {
            inner.evict_one(now);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        let entry = Entry {
            sig: value.sig,
            family: value.family,
            key_id: value.key_id,
            expires_at_ms: value.expires_at_ms,
            org: value.org,
            last_used: AtomicU32::new(now),
        };
        if inner.map.insert(key, entry).is_none() {
            inner.by_family.entry(value.family).or_default().add(key, caveats);
        }
    }

    /// Drops every entry of a family. Returns how many.
    pub fn remove_family(&self, family: &FamilyId) -> usize {
        let mut inner = self.inner.write().expect("cache lock");
        let Some(f) = inner.by_family.remove(family) else {
            // Nothing cached, but a memo may hold what an evicted entry said.
            self.bump();
            return 0;
        };
        for (key, _) in &f.keys {
            inner.map.swap_remove(key);
        }
        self.bump();
        f.keys.len()
    }

    /// Drops every entry under a key id (rare: scans the cache).
    pub fn remove_key_id(&self, key_id: KeyId) -> usize {
        let mut inner = self.inner.write().expect("cache lock");
        let doomed: Vec<(PrefixKey, FamilyId)> =
            inner.map.iter().filter(|(_, e)| e.key_id == key_id).map(|(k, e)| (*k, e.family)).collect();
        for (key, family) in &doomed {
            inner.map.swap_remove(key);
            inner.unindex(family, key);
        }
        self.bump();
        doomed.len()
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut inner = self.inner.write().expect("cache lock");
        inner.map.clear();
        inner.by_family.clear();
        self.bump();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner.read().expect("cache lock").map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries evicted for capacity so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn get(&self, key: &PrefixKey, now_ms: i64) -> Option<Cached> {
        let e = self.map.get(key)?;
        if now_ms >= e.expires_at_ms {
            return None;
        }
        e.last_used.store(secs(now_ms), Ordering::Relaxed);
        Some(Cached {
            sig: e.sig.clone(),
            family: e.family,
            key_id: e.key_id,
            expires_at_ms: e.expires_at_ms,
            org: e.org.clone(),
        })
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: cheap, and only used to pick eviction candidates.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn evict_one(&mut self, _now: u32) {
        let len = self.map.len();
        if len == 0 {
            return;
        }
        let mut victim = (self.next_random() % len as u64) as usize;
        for _ in 1..EVICTION_SAMPLE.min(len) {
            let i = (self.next_random() % len as u64) as usize;
            let older =
                self.map[i].last_used.load(Ordering::Relaxed) < self.map[victim].last_used.load(Ordering::Relaxed);
            if older {
                victim = i;
            }
        }
        if let Some((key, entry)) = self.map.swap_remove_index(victim) {
            self.unindex(&entry.family, &key);
        }
    }

    fn unindex(&mut self, family: &FamilyId, key: &PrefixKey) {
        if let Some(f) = self.by_family.get_mut(family) {
            f.remove(key);
            if f.keys.is_empty() {
                self.by_family.remove(family);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(family: u8, key_id: u64, expires_at_ms: i64) -> Cached {
        Cached {
            sig: Signature::from_bytes([family; 32]),
            family: FamilyId([family; 16]),
            key_id: KeyId(key_id),
            expires_at_ms,
            org: "acme".into(),
        }
    }

    fn key(i: u32) -> PrefixKey {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[8..12].copy_from_slice(&i.to_be_bytes());
        PrefixKey(k)
    }

    #[test]
    fn get_insert_expire() {
        let c = Cache::new(10);
        c.insert(key(1), 0, cached(1, 1, 1000), 0);
        assert!(c.get(&key(1), 999).is_some());
        assert!(c.get(&key(1), 1000).is_none(), "never outlives the token's expiry");
        assert!(c.get(&key(2), 0).is_none());
    }

    #[test]
    fn capacity_bounded() {
        let c = Cache::new(100);
        for i in 0..1000 {
            c.insert(key(i), 0, cached((i % 7) as u8, 1, i64::MAX), 0);
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.evictions(), 900);
        // The family index stays consistent with the map.
        let total: usize = (0..7).map(|f| c.remove_family(&FamilyId([f; 16]))).sum();
        assert_eq!(total, 100);
        assert!(c.is_empty());
    }

    #[test]
    fn one_family_holds_a_bounded_share() {
        let c = Cache::new(10_000);
        for i in 0..2000 {
            c.insert(key(i), 0, cached(1, 1, i64::MAX), 0);
        }
        assert_eq!(c.len(), MAX_PER_FAMILY);
        c.insert(key(5000), 0, cached(2, 1, i64::MAX), 0);
        assert_eq!(c.len(), MAX_PER_FAMILY + 1, "other families still get in");
        // Refreshing an entry it holds is not an addition.
        let mut refreshed = cached(1, 1, 77);
        refreshed.sig = Signature::from_bytes([9; 32]);
        c.insert(key(0), 0, refreshed, 0);
        assert_eq!(c.get(&key(0), 0).map(|e| e.expires_at_ms), Some(77));
    }

    /// [`Cache::longest`] with the key of length k at `key(base + k)`, noting the lengths asked for.
    fn longest(c: &Cache, family: u8, caveats: usize, base: u32, asked: &mut Vec<usize>) -> Option<usize> {
        c.longest(&FamilyId([family; 16]), caveats, 0, |k| {
            asked.push(k);
            key(base + k as u32)
        })
        .map(|(k, _, _)| k)
    }

    #[test]
    fn lengths_name_only_what_the_family_has() {
        let c = Cache::new(100);
        c.insert(key(100), 0, cached(1, 1, i64::MAX), 0);
        c.insert(key(105), 5, cached(1, 1, i64::MAX), 0);
        c.insert(key(200), 0, cached(2, 1, i64::MAX), 0);
        c.insert(key(203), 3, cached(2, 1, i64::MAX), 0);
        let mut asked = Vec::new();
        assert_eq!(longest(&c, 1, 7, 100, &mut asked), Some(5));
        assert_eq!(asked, [5], "lengths 7, 6 (and family 2's 3) are not hashed");
        asked.clear();
        assert_eq!(longest(&c, 1, 4, 100, &mut asked), Some(0));
        assert_eq!(asked, [0], "a shorter token: only its own length and below");
        // The key decides: a candidate whose key is not cached is a miss.
        asked.clear();
        assert_eq!(longest(&c, 1, 5, 900, &mut asked), None);
        assert_eq!(asked, [5, 0]);
        assert_eq!(c.lengths(&FamilyId([9; 16])), None, "a family with nothing cached: no key at all");
        // Long prefixes: 127 and beyond share the last bit.
        c.insert(key(300), 130, cached(3, 1, i64::MAX), 0);
        c.insert(key(301), 126, cached(3, 1, i64::MAX), 0);
        let long: Vec<usize> = c.lengths(&FamilyId([3; 16])).unwrap().longest_first(131).collect();
        assert_eq!(long, [131, 130, 129, 128, 127, 126]);
    }

    #[test]
    fn lengths_follow_every_removal() {
        let c = Cache::new(3);
        c.insert(key(100), 0, cached(1, 1, i64::MAX), 0);
        c.insert(key(105), 5, cached(1, 1, i64::MAX), 0);
        c.insert(key(107), 7, cached(1, 2, i64::MAX), 0);
        let lengths = |c: &Cache| c.lengths(&FamilyId([1; 16])).map(|l| l.longest_first(10).collect::<Vec<_>>());
        assert_eq!(lengths(&c), Some(vec![7, 5, 0]));
        // Refreshing a key changes nothing.
        c.insert(key(105), 5, cached(1, 1, 99), 0);
        assert_eq!(lengths(&c), Some(vec![7, 5, 0]));
        assert_eq!(c.remove_key_id(KeyId(2)), 1);
        assert_eq!(lengths(&c), Some(vec![5, 0]));
        c.remove_family(&FamilyId([1; 16]));
        assert_eq!(lengths(&c), None);
        // Eviction: a full cache of two entries of family 1 takes one of family 9.
        let c = Cache::new(2);
        c.insert(key(100), 0, cached(1, 1, i64::MAX), 0);
        c.insert(key(105), 5, cached(1, 1, i64::MAX), 0);
        c.insert(key(900), 0, cached(9, 1, i64::MAX), 0);
        let left = lengths(&c).unwrap_or_default();
        assert_eq!(left.len(), 1, "one of the family's two entries was evicted: {left:?}");
        assert!(c.get(&key(100 + left[0] as u32), 0).is_some(), "the length left is the entry left");
        c.clear();
        assert_eq!((lengths(&c), c.lengths(&FamilyId([9; 16]))), (None, None));
    }

    #[test]
    fn prune_by_family_and_key() {
        let c = Cache::new(100);
        c.insert(key(1), 0, cached(1, 10, i64::MAX), 0);
        c.insert(key(2), 0, cached(1, 10, i64::MAX), 0);
        c.insert(key(3), 0, cached(2, 10, i64::MAX), 0);
        c.insert(key(4), 0, cached(3, 11, i64::MAX), 0);
        let g = c.generation();
        assert_eq!(c.remove_family(&FamilyId([1; 16])), 2);
        assert!(c.generation() > g, "a revocation is a new generation");
        let g = c.generation();
        assert_eq!(c.remove_family(&FamilyId([9; 16])), 0);
        assert!(c.generation() > g, "also when nothing of the family is cached (a memo may hold it)");
        let g = c.generation();
        c.insert(key(9), 0, cached(9, 10, i64::MAX), 0);
        assert_eq!(c.generation(), g, "inserting changes nothing already answered");
        assert!(c.get(&key(1), 0).is_none() && c.get(&key(3), 0).is_some());
        assert_eq!(c.remove_key_id(KeyId(10)), 2);
        assert_eq!(c.len(), 1);
        let g = c.generation();
        c.clear();
        assert!(c.generation() > g);
        assert!(c.is_empty());
    }
}
