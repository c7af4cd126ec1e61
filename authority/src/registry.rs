//! A bounded memory of the token registry: family id → (org, expiry, minted
//! caveats). Revoke by family needs the first two (the org to authorize an
//! org-scoped operator and to audit, the expiry to know when the log entry
//! may be pruned), Verify the third (how far into a chain a verifier may be
//! handed signatures: only from the minted length on, so it holds nothing a
//! presenter could not compute from the minted token), and asking SQLite costs a hand-off to a
//! database thread per call. A registry row never
//! changes once written, so a remembered row is never stale. (Pruning deletes
//! the rows of long-expired families; remembering one a little longer only
//! keeps telling its org, as the database did before the prune.)
//!
//! Two generations, each a plain map: lookups read both, inserts go to the
//! young one, and when the young one is full the old one is dropped and the
//! young one takes its place. Memory is bounded by twice the generation size,
//! the last `generation` rows inserted are always remembered, and there is no
//! per-entry bookkeeping. Org names are interned: every row of an org shares
//! one `Arc<str>`, so a row is its 56 bytes in the map and nothing on the heap.
//!
//! A look-up does not move its row to the young generation. A family is
//! typically revoked once, so a row that was looked up is the least likely to
//! be asked for again; moving it would fill the young generation with spent
//! rows and, at the change of generation, drop unrevoked ones of recent mints
//! (a burst revoking the last 90k mints in mint order sent 40k of them to the
//! database when hits were promoted).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tally_token::FamilyId;

/// A remembered registry row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub org: Arc<str>,
    /// The family's expiry (unix ms), when it has one.
    pub expires_at: Option<i64>,
    /// How many caveats the token was minted with; `None` for tokens minted
    /// before the authority recorded it.
    pub minted_caveats: Option<u16>,
}

/// The cache.
#[derive(Debug)]
pub struct RegistryCache {
    generation: usize,
    inner: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    /// Family ids are random nonces: foldhash (seeded per process) is enough.
    young: HashMap<FamilyId, Registered, foldhash::fast::RandomState>,
    old: HashMap<FamilyId, Registered, foldhash::fast::RandomState>,
    /// The org names rows point to (forgotten when there are too many).
    orgs: HashSet<Arc<str>>,
}

/// Interned org names kept at most; past it the set starts again (rows keep theirs).
const MAX_INTERNED: usize = 4096;

impl RegistryCache {
    /// Remembers up to `2 × generation` rows, at least the last `generation`
    /// inserted (mints and database reads; a look-up that hits counts not).
    pub fn new(generation: usize) -> Self {
        Self { generation: generation.max(1), inner: Mutex::default() }
    }

    /// The row of `family`, if remembered.
    pub fn get(&self, family: &FamilyId) -> Option<Registered> {
        let g = self.inner.lock().expect("registry cache lock");
        g.young.get(family).or_else(|| g.old.get(family)).cloned()
    }

    /// Remembers a row read from (or just written to) the registry.
    pub fn insert(
        &self,
        family: FamilyId,
        org: &str,
        expires_at: Option<i64>,
        minted_caveats: Option<u16>,
    ) -> Registered {
        let mut g = self.inner.lock().expect("registry cache lock");
        let org = match g.orgs.get(org) {
            Some(shared) => shared.clone(),
            None => {
                if g.orgs.len() >= MAX_INTERNED {
                    g.orgs.clear();
                }
                let shared: Arc<str> = org.into();
                g.orgs.insert(shared.clone());
                shared
            }
        };
        if g.young.len() >= self.generation && !g.young.contains_key(&family) {
            g.old = std::mem::take(&mut g.young);
        }
        let row = Registered { org, expires_at, minted_caveats };
        g.young.insert(family, row.clone());
        row
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.inner.lock().expect("registry cache lock");
        g.young.len() + g.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(org: &str) -> Registered {
        Registered { org: org.into(), expires_at: Some(7), minted_caveats: Some(3) }
    }

    fn family(i: u32) -> FamilyId {
        let mut f = [0u8; 16];
        f[..4].copy_from_slice(&i.to_le_bytes());
        FamilyId(f)
    }

    #[test]
    fn bounded_and_remembers_the_last_generation_of_inserts() {
        let cache = RegistryCache::new(100);
        for i in 0..1000 {
            cache.insert(family(i), "beta", Some(7), Some(3));
            assert!(cache.len() <= 200, "after {i} inserts: {}", cache.len());
        }
        for i in 900..1000 {
            assert_eq!(cache.get(&family(i)), Some(row("beta")), "one of the last 100 inserted: {i}");
        }
        assert_eq!(cache.get(&family(0)), None, "long ago: forgotten");
    }

    #[test]
    fn look_ups_do_not_push_out_unread_rows() {
        // 150 inserted: 100 in the old generation, 50 in the young one. Reading
        // every old row (a revocation burst in mint order) must not change
        // generations and drop the old rows not yet read.
        let cache = RegistryCache::new(100);
        for i in 0..150 {
            cache.insert(family(i), "acme", Some(7), Some(3));
        }
        for i in 0..150 {
            assert_eq!(cache.get(&family(i)), Some(row("acme")), "family {i}");
        }
        assert_eq!(cache.len(), 150);
    }

    #[test]
    fn rows_of_one_org_share_its_name() {
        let cache = RegistryCache::new(100);
        let a = cache.insert(family(1), "acme", None, None);
        let b = cache.insert(family(2), &String::from("acme"), Some(9), Some(3));
        assert!(Arc::ptr_eq(&a.org, &b.org));
        assert!(Arc::ptr_eq(&cache.get(&family(1)).unwrap().org, &b.org));
        let c = cache.insert(family(3), "beta", None, None);
        assert_eq!(&*c.org, "beta");
    }
}
