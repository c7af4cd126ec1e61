//! The macaroon data model and the operations a holder or minter performs:
//! mint, attenuate (first- and third-party caveats), bind a discharge.

use crate::crypto::{self, DerivedKey, RootKey, SECRETBOX_NONCE_LEN, Signature};

/// A caveat as it travels: a caveat id, plus for third-party caveats a
/// verification id (the encrypted caveat key) and a location hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caveat {
    /// Where to get a discharge (third-party caveats); not covered by the signature.
    pub location: Option<String>,
    /// For first-party caveats, the predicate text; for third-party ones, the
    /// identifier the third party understands.
    pub id: Vec<u8>,
    /// Verification id; present exactly for third-party caveats.
    pub vid: Option<Vec<u8>>,
}

impl Caveat {
    /// A first-party caveat with this predicate.
    pub fn first_party(predicate: impl Into<Vec<u8>>) -> Self {
        Self { location: None, id: predicate.into(), vid: None }
    }

    /// True for third-party caveats (those with a verification id).
    pub fn is_third_party(&self) -> bool {
        self.vid.is_some()
    }
}

/// A macaroon: location hint, identifier, caveats and the chain's final signature.
///
/// `Debug` never shows the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macaroon {
    pub(crate) location: Option<String>,
    pub(crate) identifier: Vec<u8>,
    pub(crate) caveats: Vec<Caveat>,
    pub(crate) signature: Signature,
}

impl Macaroon {
    /// Mints a new macaroon under `key` (derived the libmacaroons way).
    pub fn mint(key: &RootKey, identifier: impl Into<Vec<u8>>, location: Option<String>) -> Self {
        Self::mint_with_derived(&key.derive(), identifier, location)
    }

    /// Mints under an already derived key (callers that cache derived keys).
    pub fn mint_with_derived(key: &DerivedKey, identifier: impl Into<Vec<u8>>, location: Option<String>) -> Self {
        let identifier = identifier.into();
        let signature = crypto::initial_signature(key, &identifier);
        Self { location: location.filter(|l| !l.is_empty()), identifier, caveats: Vec::new(), signature }
    }

    /// Assembles a macaroon from parts, as decoded; nothing is checked.
    pub fn from_parts(
        location: Option<String>,
        identifier: Vec<u8>,
        caveats: Vec<Caveat>,
        signature: Signature,
    ) -> Self {
        Self { location: location.filter(|l| !l.is_empty()), identifier, caveats, signature }
    }

    /// The location hint.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The raw identifier bytes.
    pub fn identifier(&self) -> &[u8] {
        &self.identifier
    }

    /// All caveats, in chain order.
    pub fn caveats(&self) -> &[Caveat] {
        &self.caveats
    }

    /// The chain's final signature (secret).
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Appends a first-party caveat (attenuation; anyone holding the token may).
    pub fn add_first_party(&mut self, predicate: impl Into<Vec<u8>>) {
        let caveat = Caveat::first_party(predicate);
        self.signature = crypto::first_party_step(&self.signature, &caveat.id);
        self.caveats.push(caveat);
    }

    /// Appends a third-party caveat: `caveat_key` is the secret shared with the
    /// third party, `cid` what it needs to recognise the caveat, `nonce` 24
    /// random bytes for the encryption of the caveat key.
    pub fn add_third_party(
        &mut self,
        location: Option<String>,
        caveat_key: &RootKey,
        cid: impl Into<Vec<u8>>,
        nonce: [u8; SECRETBOX_NONCE_LEN],
    ) {
        let cid = cid.into();
        let vid = crypto::encrypt_caveat_key(&self.signature, &nonce, &caveat_key.derive());
        self.signature = crypto::third_party_step(&self.signature, &vid, &cid);
        self.caveats.push(Caveat { location: location.filter(|l| !l.is_empty()), id: cid, vid: Some(vid) });
    }

    /// Returns `discharge` with its signature bound to this (root) macaroon's,
    /// ready to travel in a bundle with it.
    pub fn bind(&self, discharge: &Macaroon) -> Macaroon {
        let mut bound = discharge.clone();
        bound.signature = crypto::bind_signature(&self.signature, &discharge.signature);
        bound
    }
}

/// Continues the HMAC chain from a signature known to be genuine at some
/// position over further caveats, giving the signature at the end. This is how
/// a verifier checks a descendant of a cached token without the root key.
pub fn continue_chain(from: &Signature, caveats: &[Caveat]) -> Signature {
    let mut sig = from.clone();
    for caveat in caveats {
        sig = chain_step(&sig, caveat);
    }
    sig
}

/// One step of the HMAC chain: the signature after appending `caveat` to a
/// chain whose signature is `sig`.
#[inline]
pub fn chain_step(sig: &Signature, caveat: &Caveat) -> Signature {
    step(sig, &caveat.id, caveat.vid.as_deref())
}

/// [`chain_step`] for a borrowed caveat.
#[inline]
pub fn chain_step_ref(sig: &Signature, caveat: &crate::CaveatRef<'_>) -> Signature {
    step(sig, caveat.id, caveat.vid)
}

/// A chain step over a caveat's id and, for third-party caveats, its vid.
#[inline]
pub(crate) fn step(sig: &Signature, id: &[u8], vid: Option<&[u8]>) -> Signature {
    match vid {
        None => crypto::first_party_step(sig, id),
        Some(vid) => crypto::third_party_step(sig, vid, id),
    }
}
