//! The soak's token population, bounded so that the verifiers' caches reach
//! a steady state early instead of growing for the whole run: [`POOL`] live
//! families, each with a fixed set of attenuations and one fixed forgery (so
//! a family holds a fixed number of cache entries), a queue of freshly
//! minted ones not yet checked anywhere (the cache misses), the recently
//! revoked ones (checked to be denied), and the ones taken out whose
//! revocation is not acknowledged yet (retried). Every family that leaves
//! the live set is revoked, which prunes it from the caches: a family nobody
//! checks any more is never left behind to fill them. Families leave oldest
//! first, so at the churn rate none lives much past [`POOL`] / churn
//! (250 s), far from its [`TTL`]: no valid token expires while checked.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use rand::Rng;
use rand::rngs::SmallRng;
use tally_proto::v1 as pb;
use tally_token::{KEY_LEN, KeyId, Limits, Macaroon, NONCE_LEN, RootKey, TallyId};

/// Live families checked all along.
pub(crate) const POOL: usize = 500;
/// Lifetime of every soak token: well past a family's time in the live set,
/// well under the run, so revocations expire and leave the deny lists.
pub(crate) const TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// The caveat every soak token is minted with.
pub(crate) const MINT_CAVEAT: &str = "action in read,write";
/// Revoked families kept for deny checks.
const REVOKED_KEPT: usize = 256;

/// An attenuation of a live token and a resource it allows.
#[derive(Debug)]
pub(crate) struct Variant {
    pub(crate) token: String,
    pub(crate) resource: &'static str,
}

/// One minted family and the tokens the load derives from it.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) token: String,
    /// Hex family id.
    pub(crate) family: Arc<str>,
    pub(crate) key_id: u64,
    /// Fixed attenuations: one or two caveats added.
    pub(crate) variants: Vec<Variant>,
    /// The same identifier and caveats signed under a wrong key.
    pub(crate) forged: String,
}

/// Caveats added by each variant, and the resource the check then asks for.
const VARIANTS: [(&[&str], &str); 4] = [
    (&["resource = r0/*"], "r0/doc"),
    (&["resource = r1/*"], "r1/doc"),
    (&["resource = r2/*", "action in read"], "r2/doc"),
    (&["resource = r3/*", "resource = r3/a/*"], "r3/a/doc"),
];

impl Family {
    /// Derives the attenuations and the forgery of a freshly minted token.
    pub(crate) fn new(minted: pb::MintResponse, rng: &mut SmallRng) -> anyhow::Result<Self> {
        let root = Macaroon::from_text(&minted.token, &Limits::default()).context("parsing a minted token")?;
        let variants = VARIANTS
            .iter()
            .map(|(caveats, resource)| {
                let mut m = root.clone();
                for c in *caveats {
                    m.add_first_party(*c);
                }
                Variant { token: m.to_text(), resource }
            })
            .collect();
        let mut forged = Macaroon::mint(&random_key(rng), root.identifier().to_vec(), None);
        forged.add_first_party(MINT_CAVEAT);
        Ok(Self {
            token: minted.token,
            family: minted.family.into(),
            key_id: minted.key_id,
            variants,
            forged: forged.to_text(),
        })
    }
}

/// A well-formed token of the soak's key id and a family never minted,
/// signed under a random key: the verifier must ask the authority each time.
pub(crate) fn unknown_forgery(key_id: u64, rng: &mut SmallRng) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce);
    let mut m = Macaroon::mint(&random_key(rng), TallyId::new(KeyId(key_id), nonce).encode(), None);
    m.add_first_party(MINT_CAVEAT);
    m.to_text()
}

fn random_key(rng: &mut SmallRng) -> RootKey {
    let mut key = [0u8; KEY_LEN];
    rng.fill(&mut key);
    RootKey::from_bytes(key)
}

#[derive(Debug, Default)]
struct Sets {
    /// Oldest first.
    live: VecDeque<Arc<Family>>,
    fresh: VecDeque<Arc<Family>>,
    revoked: VecDeque<Arc<Family>>,
    unacked: Vec<Arc<Family>>,
    /// Families taken out of the live set (revoked or being revoked).
    gone: HashSet<Arc<str>>,
}

/// The population, shared by the load's tasks.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    sets: Mutex<Sets>,
}

impl Pool {
    fn sets(&self) -> MutexGuard<'_, Sets> {
        self.sets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A random live family.
    pub(crate) fn live(&self, rng: &mut SmallRng) -> Option<Arc<Family>> {
        let sets = self.sets();
        (!sets.live.is_empty()).then(|| sets.live[rng.random_range(0..sets.live.len())].clone())
    }

    /// A random recently revoked family.
    pub(crate) fn revoked(&self, rng: &mut SmallRng) -> Option<Arc<Family>> {
        let sets = self.sets();
        (!sets.revoked.is_empty()).then(|| sets.revoked[rng.random_range(0..sets.revoked.len())].clone())
    }

    /// The oldest minted family not checked yet.
    pub(crate) fn take_fresh(&self) -> Option<Arc<Family>> {
        self.sets().fresh.pop_front()
    }

    pub(crate) fn add_fresh(&self, f: Family) {
        self.sets().fresh.push_back(Arc::new(f));
    }

    pub(crate) fn add_live(&self, f: Arc<Family>) {
        self.sets().live.push_back(f);
    }

    /// Live and fresh families together.
    pub(crate) fn size(&self) -> usize {
        let sets = self.sets();
        sets.live.len() + sets.fresh.len()
    }

    /// The next family to revoke: an unacknowledged one first, else the
    /// oldest live one while more than `keep` are live. It is out of the live set.
    pub(crate) fn take_for_revocation(&self, keep: usize) -> Option<(Arc<Family>, bool)> {
        let mut sets = self.sets();
        if let Some(f) = sets.unacked.pop() {
            return Some((f, true));
        }
        if sets.live.len() <= keep {
            return None;
        }
        let f = sets.live.pop_front()?;
        sets.gone.insert(f.family.clone());
        Some((f, false))
    }

    /// A revocation was acknowledged.
    pub(crate) fn revoked_ack(&self, f: Arc<Family>) {
        let mut sets = self.sets();
        if sets.revoked.len() >= REVOKED_KEPT {
            sets.revoked.pop_front();
        }
        sets.revoked.push_back(f);
    }

    /// A revocation failed or timed out: retried later.
    pub(crate) fn revoke_failed(&self, f: Arc<Family>) {
        self.sets().unacked.push(f);
    }

    /// Revocations waiting for a retry.
    pub(crate) fn unacked(&self) -> usize {
        self.sets().unacked.len()
    }

    /// Whether a family was taken out of the live set (a check of it may race its revocation).
    pub(crate) fn is_gone(&self, family: &str) -> bool {
        self.sets().gone.contains(family)
    }
}
