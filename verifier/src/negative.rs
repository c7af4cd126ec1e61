//! A short-lived cache of negative answers (forged, revoked, unknown key…),
//! keyed by a hash of the whole bundle text, signature included: a forgery
//! must never shadow the genuine token with the same caveats. Expired answers
//! are dropped once per TTL, so the map holds about what the last TTL or two
//! added (distinct forgeries arriving steadily would otherwise pile up until
//! the capacity). Bounded: when full, expired answers go first, then
//! everything; and each remembered detail is cut to [`MAX_DETAIL`] bytes (the
//! authority's text may quote a caveat of the token, up to a 2 KiB field), so
//! the whole cache stays within capacity × a few hundred bytes. Time is
//! passed in (the check's reading of the clock).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tally_token::Reason;

/// Longest denial detail remembered, in bytes.
const MAX_DETAIL: usize = 256;

/// A remembered denial.
#[derive(Debug, Clone)]
pub struct Denied {
    pub reason: Reason,
    pub detail: String,
}

/// The negative cache.
#[derive(Debug)]
pub struct NegativeCache {
    ttl: Duration,
    capacity: usize,
    map: Mutex<Map>,
}

#[derive(Debug)]
struct Map {
    entries: HashMap<[u8; 32], (Instant, Denied)>,
    /// When expired answers are dropped next (`None`: at the first insert).
    next_sweep: Option<Instant>,
}

impl NegativeCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let map = Map { entries: HashMap::new(), next_sweep: None };
        Self { ttl, capacity: capacity.max(1), map: Mutex::new(map) }
    }

    fn key(bundle: &str) -> [u8; 32] {
        Sha256::new().chain_update(b"tally-negative-v1\0").chain_update(bundle.as_bytes()).finalize().into()
    }

    /// A denial remembered for this exact bundle text, if still fresh at `now`.
    pub fn get(&self, bundle: &str, now: Instant) -> Option<Denied> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().expect("negative cache lock");
        map.entries.get(&Self::key(bundle)).filter(|(until, _)| now < *until).map(|(_, d)| d.clone())
    }

    /// Remembers a denial for the TTL from `now`.
    pub fn insert(&self, bundle: &str, mut denied: Denied, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        if denied.detail.len() > MAX_DETAIL {
            let cut = (0..=MAX_DETAIL).rev().find(|&i| denied.detail.is_char_boundary(i)).unwrap_or(0);
            denied.detail.truncate(cut);
            denied.detail.push('…');
        }
        let mut map = self.map.lock().expect("negative cache lock");
        if map.next_sweep.is_none_or(|at| now >= at) || map.entries.len() >= self.capacity {
            // O(entries) once per TTL: about what one TTL added, when the sweep keeps up.
            map.entries.retain(|_, (until, _)| now < *until);
            map.next_sweep = Some(now + self.ttl);
            if map.entries.len() >= self.capacity {
                map.entries.clear();
            }
        }
        map.entries.insert(Self::key(bundle), (now + self.ttl, denied));
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.map.lock().expect("negative cache lock").entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_expiring() {
        let (c, now) = (NegativeCache::new(Duration::from_secs(60), 2), Instant::now());
        let d = Denied { reason: Reason::Forged, detail: String::new() };
        c.insert("a", d.clone(), now);
        c.insert("b", d.clone(), now);
        c.insert("c", d.clone(), now);
        assert!(c.get("c", now).is_some());
        assert!(c.map.lock().unwrap().entries.len() <= 2);
        let long = Denied { reason: Reason::Forged, detail: "é".repeat(1000) };
        c.insert("long", long, now);
        let kept = c.get("long", now).unwrap().detail;
        assert!(kept.len() <= MAX_DETAIL + '…'.len_utf8() && kept.ends_with('…'), "{} bytes", kept.len());
        let off = NegativeCache::new(Duration::ZERO, 2);
        off.insert("a", d, now);
        assert!(off.get("a", now).is_none());
    }

    /// Regression (found by `cargo xtask soak`): expired answers were dropped
    /// only once the map was full (100 000 by default), so a verifier seeing
    /// distinct forgeries steadily grew for hours.
    #[test]
    fn expired_answers_are_dropped_before_the_cache_is_full() {
        let (ttl, t0) = (Duration::from_millis(20), Instant::now());
        let c = NegativeCache::new(ttl, 1000);
        let d = Denied { reason: Reason::Forged, detail: String::new() };
        for i in 0..100 {
            c.insert(&format!("forgery {i}"), d.clone(), t0);
        }
        // Every answer expired, and a sweep is due.
        let later = t0 + 2 * ttl;
        c.insert("another", d, later);
        assert_eq!(c.map.lock().unwrap().entries.len(), 1);
        assert!(c.get("another", later).is_some());
    }
}
