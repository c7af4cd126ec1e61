//! Full verification of a bundle: the root token's HMAC chain under its root
//! key, then every third-party caveat's discharge, recursively, each bound to
//! the root token's signature. Caveat *evaluation* is separate
//! ([`crate::evaluate`]): what is verified here does not depend on the request,
//! which is what makes it cacheable.

use crate::crypto::{self, DerivedKey, Signature};
use crate::macaroon::step;
use crate::prefix::{RevocationId, revocation_ids};
use crate::view::{BundleRef, MacaroonRef};
use crate::{Bundle, Error, KeyId, Limits, TallyId};

/// Looks up root keys by key id: the authority's key store implements it.
pub trait RootKeyProvider {
    /// The derived key for `key_id`, or [`Error::UnknownKey`] /
    /// [`Error::RetiredKey`].
    fn derived_key(&self, key_id: KeyId) -> Result<DerivedKey, Error>;
}

/// A bundle whose signatures all hold. Borrows the caveats from the bundle.
#[derive(Debug, Clone)]
pub struct Verified<'b> {
    /// The Tally identifier (absent when verified with an explicit key and a
    /// foreign identifier).
    pub id: Option<TallyId>,
    /// The root token's chain: element k is the genuine signature after its
    /// first k caveats (`caveats + 1` elements). Secret.
    pub chain: Vec<Signature>,
    /// Every first-party caveat to evaluate: the root token's, then each
    /// discharge's in the order they were reached.
    pub first_party: Vec<&'b [u8]>,
    /// For each discharge of the bundle, in bundle order, its genuine final
    /// signature before binding (what a cache needs to check a rebound
    /// discharge without the caveat key). Secret.
    pub discharges: Vec<Signature>,
}

impl Verified<'_> {
    /// The token's revocation ids (family and every branch), when it has a Tally identifier.
    pub fn revocation_ids(&self) -> Vec<RevocationId> {
        self.id.map(|id| revocation_ids(id.family, &self.chain)).unwrap_or_default()
    }
}

/// Verifies a bundle whose root token carries a Tally identifier, looking up
/// its root key through `keys`.
pub fn verify<'b>(bundle: &'b Bundle, keys: &impl RootKeyProvider, limits: &Limits) -> Result<Verified<'b>, Error> {
    verify_view(&bundle.view(), keys, limits)
}

/// Verifies a bundle under an explicit derived root key, whatever its identifier.
pub fn verify_with_key<'b>(bundle: &'b Bundle, key: &DerivedKey, limits: &Limits) -> Result<Verified<'b>, Error> {
    verify_view_with_key(&bundle.view(), key, limits)
}

/// [`verify`] on a borrowed bundle (no copies of its fields).
pub fn verify_view<'b>(
    bundle: &BundleRef<'b>,
    keys: &impl RootKeyProvider,
    limits: &Limits,
) -> Result<Verified<'b>, Error> {
    check_limits(bundle, limits)?;
    let id = TallyId::decode(bundle.root.identifier)?;
    let key = keys.derived_key(id.key_id)?;
    let mut verified = verify_view_with_key(bundle, &key, limits)?;
    verified.id = Some(id);
    Ok(verified)
}

/// [`verify_with_key`] on a borrowed bundle.
pub fn verify_view_with_key<'b>(
    bundle: &BundleRef<'b>,
    key: &DerivedKey,
    limits: &Limits,
) -> Result<Verified<'b>, Error> {
    check_limits(bundle, limits)?;
    let n = bundle.discharges.len();
    let first_party = Vec::with_capacity(bundle.root.caveats.len());
    let mut walk = Walk { bundle, limits, used: vec![false; n], first_party, discharges: vec![None; n] };
    let chain = walk.macaroon(&bundle.root, key, None, 0)?;
    if let Some(unused) = walk.used.iter().position(|u| !u) {
        return Err(Error::UnusedDischarge(unused));
    }
    let id = TallyId::decode(bundle.root.identifier).ok();
    // Every discharge was used (checked above), so every one has its signature.
    let discharges = walk.discharges.into_iter().flatten().collect();
    Ok(Verified { id, chain, first_party: walk.first_party, discharges })
}

fn check_limits(bundle: &BundleRef<'_>, limits: &Limits) -> Result<(), Error> {
    Limits::check("discharge count", bundle.discharges.len(), limits.max_discharges)?;
    for m in std::iter::once(&bundle.root).chain(&bundle.discharges) {
        Limits::check("caveat count", m.caveats.len(), limits.max_caveats)?;
    }
    Ok(())
}

struct Walk<'r, 'b, 'l> {
    bundle: &'r BundleRef<'b>,
    limits: &'l Limits,
    used: Vec<bool>,
    first_party: Vec<&'b [u8]>,
    discharges: Vec<Option<Signature>>,
}

impl<'b> Walk<'_, 'b, '_> {
    /// Checks one macaroon's chain (bound to the root when it is a discharge),
    /// then its discharges. Returns its chain signatures.
    fn macaroon(
        &mut self,
        m: &MacaroonRef<'b>,
        key: &DerivedKey,
        root_sig: Option<&Signature>,
        depth: usize,
    ) -> Result<Vec<Signature>, Error> {
        let mut chain = Vec::with_capacity(m.caveats.len() + 1);
        let mut sig = crypto::initial_signature(key, m.identifier);
        for caveat in &m.caveats {
            let next = step(&sig, caveat.id, caveat.vid);
            chain.push(sig);
            sig = next;
        }
        chain.push(sig);
        let last = chain.last().expect("chain has the initial signature");
        let expected = match root_sig {
            None => last.clone(),
            Some(root) => crypto::bind_signature(root, last),
        };
        // Constant time (`Signature`'s `==`).
        if expected != m.signature {
            return Err(Error::BadSignature);
        }
        // The chain is genuine; now its caveats.
        let root_sig = root_sig.unwrap_or(&m.signature);
        for (i, caveat) in m.caveats.iter().enumerate() {
            let Some(vid) = caveat.vid else {
                self.first_party.push(caveat.id);
                continue;
            };
            if depth + 1 > self.limits.max_depth {
                return Err(Error::TooDeep(self.limits.max_depth));
            }
            let caveat_key = crypto::decrypt_caveat_key(&chain[i], vid).ok_or(Error::BadVerificationId(i))?;
            let bundle = self.bundle;
            let j = (0..bundle.discharges.len())
                .find(|&j| !self.used[j] && bundle.discharges[j].identifier == caveat.id)
                .ok_or(Error::MissingDischarge(i))?;
            self.used[j] = true;
            let chain =
                self.macaroon(&bundle.discharges[j], &caveat_key, Some(root_sig), depth + 1).map_err(|e| match e {
                    Error::BadSignature => Error::BadDischarge(i),
                    other => other,
                })?;
            self.discharges[j] = chain.last().cloned();
        }
        Ok(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Macaroon;
    use crate::RootKey;
    use std::collections::HashMap;

    struct Keys(HashMap<u64, Result<DerivedKey, Error>>);

    impl RootKeyProvider for Keys {
        fn derived_key(&self, key_id: KeyId) -> Result<DerivedKey, Error> {
            self.0.get(&key_id.0).cloned().unwrap_or(Err(Error::UnknownKey(key_id)))
        }
    }

    fn root_key() -> RootKey {
        RootKey::from_bytes([1; 32])
    }

    fn keys() -> Keys {
        Keys(HashMap::from([(7, Ok(root_key().derive())), (8, Err(Error::RetiredKey(KeyId(8))))]))
    }

    fn mint(key_id: u64) -> Macaroon {
        let mut m = Macaroon::mint(&root_key(), TallyId::new(KeyId(key_id), [9; 16]).encode(), None);
        m.add_first_party("service = web");
        m
    }

    #[test]
    fn verifies_and_reports_chain() {
        let bundle = Bundle::single(mint(7));
        let v = verify(&bundle, &keys(), &Limits::default()).unwrap();
        assert_eq!(v.chain.len(), 2);
        assert_eq!(&v.chain[1], bundle.root.signature());
        assert_eq!(v.first_party, vec![b"service = web".as_slice()]);
        assert_eq!(v.revocation_ids().len(), 3);
    }

    #[test]
    fn key_lookup_errors() {
        let limits = Limits::default();
        assert_eq!(verify(&Bundle::single(mint(9)), &keys(), &limits).unwrap_err(), Error::UnknownKey(KeyId(9)));
        assert_eq!(verify(&Bundle::single(mint(8)), &keys(), &limits).unwrap_err(), Error::RetiredKey(KeyId(8)));
        let foreign = Bundle::single(Macaroon::mint(&root_key(), b"foreign".to_vec(), None));
        assert!(matches!(verify(&foreign, &keys(), &limits), Err(Error::ForeignIdentifier(_))));
        assert!(verify_with_key(&foreign, &root_key().derive(), &limits).is_ok());
    }

    #[test]
    fn third_party_round_trip_and_failures() {
        let limits = Limits::default();
        let tp_key = RootKey::from_bytes([5; 32]);
        let mut root = mint(7);
        root.add_third_party(Some("https://idp".into()), &tp_key, b"cav-1".to_vec(), [4; 24]);
        let mut discharge = Macaroon::mint(&tp_key, b"cav-1".to_vec(), None);
        discharge.add_first_party("subject = alice");

        let good = Bundle { root: root.clone(), discharges: vec![root.bind(&discharge)] };
        let v = verify(&good, &keys(), &limits).unwrap();
        assert_eq!(v.discharges, vec![discharge.signature().clone()]);
        assert_eq!(v.first_party, vec![b"service = web".as_slice(), b"subject = alice".as_slice()]);

        let unbound = Bundle { root: root.clone(), discharges: vec![discharge.clone()] };
        assert_eq!(verify(&unbound, &keys(), &limits).unwrap_err(), Error::BadDischarge(1));

        let missing = Bundle::single(root.clone());
        assert_eq!(verify(&missing, &keys(), &limits).unwrap_err(), Error::MissingDischarge(1));

        let extra = Bundle { root: root.clone(), discharges: vec![root.bind(&discharge), root.bind(&discharge)] };
        assert_eq!(verify(&extra, &keys(), &limits).unwrap_err(), Error::UnusedDischarge(1));

        // A discharge bound to another token does not transfer.
        let other = mint(7);
        let stolen = Bundle { root: root.clone(), discharges: vec![other.bind(&discharge)] };
        assert_eq!(verify(&stolen, &keys(), &limits).unwrap_err(), Error::BadDischarge(1));
    }

    #[test]
    fn nested_discharges_bound_to_root_and_depth_limited() {
        let k1 = RootKey::from_bytes([11; 32]);
        let k2 = RootKey::from_bytes([12; 32]);
        let mut root = mint(7);
        root.add_third_party(None, &k1, b"d1".to_vec(), [1; 24]);
        let mut d1 = Macaroon::mint(&k1, b"d1".to_vec(), None);
        d1.add_third_party(None, &k2, b"d2".to_vec(), [2; 24]);
        let d2 = Macaroon::mint(&k2, b"d2".to_vec(), None);

        let good = Bundle { root: root.clone(), discharges: vec![root.bind(&d1), root.bind(&d2)] };
        assert!(verify(&good, &keys(), &Limits::default()).is_ok());
        // d2 bound to d1 instead of the root token is rejected.
        let wrong = Bundle { root: root.clone(), discharges: vec![root.bind(&d1), d1.bind(&d2)] };
        assert_eq!(verify(&wrong, &keys(), &Limits::default()).unwrap_err(), Error::BadDischarge(0), "caveat 0 of d1");
        let shallow = Limits { max_depth: 1, ..Limits::default() };
        assert_eq!(verify(&good, &keys(), &shallow).unwrap_err(), Error::TooDeep(1));
    }
}
