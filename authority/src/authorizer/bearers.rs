//! A memo of API tokens (bearers) whose signatures verified: the same few
//! operator and verifier tokens come with every call, and decoding one and
//! walking its HMAC chain again each time is most of what authorizing costs.
//!
//! Only what cannot change is remembered: that these exact bytes verified
//! under a key of the system org, the token's family, revocation ids, role
//! claim and parsed caveats. What can change is checked on every call
//! ([`super::Authorizer::check`]): that the key is not retired, that no
//! revocation id is revoked, and the caveats against the request and the
//! time. A hit
//! needs the whole text to be equal, not its hash. Only tokens that were let
//! in are remembered (system-org tokens, not revoked, within their caveats),
//! so only holders of working API tokens can fill it. When full, one entry
//! makes room for the next: a holder attenuating its token into endless
//! distinct texts costs the others speed (a verification), never a refusal.
//!
//! The memo holds bearer texts, which are secrets: its `Debug` shows only how
//! many it holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tally_token::{CompiledCaveats, FamilyId, KeyId, RevocationId};

/// What verifying a bearer established.
#[derive(Debug)]
pub(crate) struct VerifiedBearer {
    /// The system-org key it verified under.
    pub key_id: KeyId,
    /// Its family (for audit; never the token).
    pub family: FamilyId,
    /// Its family and branch ids, checked against the revoked set on every call.
    pub revocation_ids: Vec<RevocationId>,
    /// The value of its first `role` caveat.
    pub role: Option<String>,
    /// Its earliest `expires` (unix ms), for admission (the caveats decide per call).
    pub expires_at_ms: Option<i64>,
    /// Every first-party caveat, parsed, evaluated on every call.
    pub caveats: CompiledCaveats,
}

/// Bearer text → what verifying it established.
pub(crate) struct Bearers {
    capacity: usize,
    /// Keyed by the token's text, hashed with foldhash (seeded per process):
    /// only tokens that were let in are inserted, and every authenticated
    /// call looks its bearer up (twice: admission, then the call), and
    /// SipHash over a few hundred bytes cost 750 instructions a look-up
    /// (callgrind), foldhash 260.
    inner: Mutex<HashMap<Box<str>, Arc<VerifiedBearer>, foldhash::fast::RandomState>>,
}

impl std::fmt::Debug for Bearers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.inner.lock().map_or(0, |m| m.len());
        f.debug_struct("Bearers").field("held", &held).field("capacity", &self.capacity).finish()
    }
}

impl Bearers {
    /// Holds at most `capacity` bearers.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Mutex::default() }
    }

    /// What verifying exactly `text` established, when it was done before.
    pub(crate) fn get(&self, text: &str) -> Option<Arc<VerifiedBearer>> {
        self.inner.lock().expect("bearer memo lock").get(text).cloned()
    }

    /// Remembers that `text` verified.
    pub(crate) fn insert(&self, text: &str, verified: Arc<VerifiedBearer>) {
        let mut memo = self.inner.lock().expect("bearer memo lock");
        if memo.len() >= self.capacity
            && let Some(any) = memo.keys().next().cloned()
        {
            memo.remove(&any);
        }
        memo.insert(text.into(), verified);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().expect("bearer memo lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(n: u8) -> Arc<VerifiedBearer> {
        Arc::new(VerifiedBearer {
            key_id: KeyId(1),
            family: FamilyId([n; 16]),
            revocation_ids: vec![RevocationId::Family(FamilyId([n; 16]))],
            role: Some("operator".into()),
            expires_at_ms: None,
            caveats: CompiledCaveats::compile([b"role = operator".as_slice()]),
        })
    }

    #[test]
    fn a_hit_needs_the_same_text() {
        let memo = Bearers::new(8);
        memo.insert("token-a", verified(1));
        assert_eq!(memo.get("token-a").map(|v| v.family), Some(FamilyId([1; 16])));
        assert!(memo.get("token-b").is_none());
        assert!(memo.get("token-").is_none());
        assert!(memo.get("token-a ").is_none());
    }

    #[test]
    fn bounded_and_never_shows_a_token() {
        let memo = Bearers::new(4);
        for i in 0..10u8 {
            memo.insert(&format!("secret-token-{i}"), verified(i));
            assert_eq!(memo.len(), usize::from(i + 1).min(4));
        }
        assert!(memo.get("secret-token-9").is_some(), "the last one inserted is held");
        let shown = format!("{memo:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
    }
}
