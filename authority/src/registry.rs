//! A bounded memory of the token registry: family id → (org, expiry). Revoke
//! by family needs both (the org to authorize an org-scoped operator and to
//! audit, the expiry to know when the log entry may be pruned), and asking
//! SQLite costs a hand-off to a database thread per call. A registry row never
//! changes once written, so a remembered row is never stale. (Pruning deletes
//! the rows of long-expired families; remembering one a little longer only
//! keeps telling its org, as the database did before the prune.)
//!
//! Two generations, each a plain map: lookups read both, inserts go to the
//! young one, and when the young one is full the old one is dropped and the
//! young one takes its place. Memory is bounded by twice the generation size,
//! recently used rows survive (a hit in the old generation is copied to the
//! young one), and there is no per-entry bookkeeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tally_token::FamilyId;

/// A remembered registry row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub org: Arc<str>,
    /// The family's expiry (unix ms), when it has one.
    pub expires_at: Option<i64>,
}

/// The cache.
#[derive(Debug)]
pub struct RegistryCache {
    generation: usize,
    inner: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    young: HashMap<FamilyId, Registered>,
    old: HashMap<FamilyId, Registered>,
}

impl RegistryCache {
    /// Remembers up to `2 × generation` rows (at least the last `generation` used).
    pub fn new(generation: usize) -> Self {
        Self { generation: generation.max(1), inner: Mutex::default() }
    }

    /// The row of `family`, if remembered.
    pub fn get(&self, family: &FamilyId) -> Option<Registered> {
        let mut g = self.inner.lock().expect("registry cache lock");
        if let Some(row) = g.young.get(family) {
            return Some(row.clone());
        }
        let row = g.old.remove(family)?;
        self.put(&mut g, *family, row.clone());
        Some(row)
    }

    /// Remembers a row read from (or just written to) the registry.
    pub fn insert(&self, family: FamilyId, row: Registered) {
        let mut g = self.inner.lock().expect("registry cache lock");
        self.put(&mut g, family, row);
    }

    fn put(&self, g: &mut Generations, family: FamilyId, row: Registered) {
        if g.young.len() >= self.generation && !g.young.contains_key(&family) {
            g.old = std::mem::take(&mut g.young);
        }
        g.young.insert(family, row);
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
        Registered { org: org.into(), expires_at: Some(7) }
    }

    fn family(i: u32) -> FamilyId {
        let mut f = [0u8; 16];
        f[..4].copy_from_slice(&i.to_le_bytes());
        FamilyId(f)
    }

    #[test]
    fn bounded_and_keeps_what_is_used() {
        let cache = RegistryCache::new(100);
        cache.insert(family(0), row("acme"));
        for i in 1..1000 {
            cache.insert(family(i), row("beta"));
            // Family 0 is looked up all the time: it survives every generation change.
            assert_eq!(cache.get(&family(0)), Some(row("acme")), "after {i} inserts");
            assert!(cache.len() <= 200);
        }
        assert_eq!(cache.get(&family(1)), None, "long unused: forgotten");
        assert_eq!(cache.get(&family(999)), Some(row("beta")));
    }
}
