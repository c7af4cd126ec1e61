//! The cryptographic steps of libmacaroons: key derivation, the HMAC-SHA256
//! chain, third-party caveat key encryption (NaCl secretbox) and discharge
//! binding. Secret-bearing types redact their `Debug` and compare in constant
//! time.

use std::fmt;
use std::sync::LazyLock;

use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::Error;

type HmacSha256 = Hmac<Sha256>;

/// Size of every key and signature in the chain.
pub const KEY_LEN: usize = 32;
/// Size of the random nonce in front of a third-party caveat's encrypted key.
pub const SECRETBOX_NONCE_LEN: usize = 24;
const SECRETBOX_TAG_LEN: usize = 16;
/// Exact size of a verification id made by libmacaroons-compatible libraries.
pub const VID_LEN: usize = SECRETBOX_NONCE_LEN + SECRETBOX_TAG_LEN + KEY_LEN;

/// libmacaroons derives the chain's first key by keying HMAC with this
/// constant (HMAC pads it with zeros, as libmacaroons does to 32 bytes).
const KEY_GENERATOR: &[u8] = b"macaroons-key-generator";

static KEY_GENERATOR_MAC: LazyLock<HmacSha256> =
    LazyLock::new(|| <HmacSha256 as Mac>::new_from_slice(KEY_GENERATOR).expect("HMAC takes any key size"));

macro_rules! secret_bytes {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }

            /// The raw bytes. Handle with care: they are secret.
            pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
                &self.0
            }

            /// Parses 64 hex characters (surrounding whitespace ignored).
            pub fn from_hex(text: &str) -> Result<Self, Error> {
                decode_hex32(text).map(Self)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                ct_eq32(&self.0, &other.0)
            }
        }

        impl Eq for $name {}
    };
}

/// Constant-time equality of 32 bytes, compared as four words (a compare on
/// every check's path: `subtle` over 32 single bytes costs several times more).
fn ct_eq32(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> bool {
    let words = |x: &[u8; KEY_LEN]| -> [u64; 4] {
        std::array::from_fn(|i| u64::from_ne_bytes(x[i * 8..i * 8 + 8].try_into().expect("8 bytes")))
    };
    words(a).ct_eq(&words(b)).into()
}

secret_bytes! {
    /// A root key as the operator holds it (before libmacaroons derivation).
    RootKey
}
/// A root key after libmacaroons derivation: the HMAC key of the chain's
/// first step. It keeps the two SHA-256 states the HMAC key schedule starts
/// from, so the first step of every verification under it saves two of its
/// four compressions. Secret: `Debug` is redacted, `==` is constant-time.
#[derive(Clone)]
pub struct DerivedKey {
    bytes: [u8; KEY_LEN],
    pads: HmacPads,
}

impl DerivedKey {
    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self { bytes, pads: HmacPads::new(&bytes) }
    }

    /// The raw bytes. Handle with care: they are secret.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        decode_hex32(text).map(Self::from_bytes)
    }
}

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKey(<redacted>)")
    }
}

impl PartialEq for DerivedKey {
    fn eq(&self, other: &Self) -> bool {
        ct_eq32(&self.bytes, &other.bytes)
    }
}

impl Eq for DerivedKey {}
secret_bytes! {
    /// A signature of the HMAC chain (at any position). Secret: whoever holds
    /// the signature at position k can append caveats from there.
    Signature
}

impl RootKey {
    /// libmacaroons key derivation: `HMAC-SHA256(key = "macaroons-key-generator", root key)`.
    pub fn derive(&self) -> DerivedKey {
        DerivedKey::from_bytes(derive_key(&self.0))
    }
}

pub(crate) fn derive_key(key: &[u8]) -> [u8; KEY_LEN] {
    let mut mac = KEY_GENERATOR_MAC.clone();
    mac.update(key);
    mac.finalize().into_bytes().into()
}

fn decode_hex32(text: &str) -> Result<[u8; KEY_LEN], Error> {
    let text = text.trim().as_bytes();
    if text.len() != KEY_LEN * 2 {
        return Err(Error::InvalidKey("expected 64 hex characters"));
    }
    let mut out = [0u8; KEY_LEN];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(Error::InvalidKey("not hex"))?;
        let lo = hex_val(pair[1]).ok_or(Error::InvalidKey("not hex"))?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// HMAC-SHA256 with a 32-byte key: the chain's one hot operation. Written
/// on the SHA-256 compression function directly (four compressions for short
/// data, on stack buffers); `tests::hmac_matches_the_hmac_crate` pins it to
/// the reference. Kept over the `hmac` crate because it measures faster on
/// the caveats tokens carry: `cargo bench -p tally-token --bench hmac`,
/// side by side, medians on a 2-vCPU Xeon (2026-12-07): a chain step over
/// 16 / 64 / 256 / 2048 bytes took 197 / 234 / 378 / 1725 ns here and 248 /
/// 294 / 430 / 1666 ns with the crate (a step's key is the previous
/// signature, so no pad state can be cached for it); only at 2 KiB, the
/// longest caveat, is the crate 3 % ahead.
#[inline]
pub(crate) fn hmac(key: &[u8; KEY_LEN], data: &[u8]) -> [u8; KEY_LEN] {
    hmac_from(&HmacPads::new(key), data)
}

/// The SHA-256 states after absorbing `key ⊕ ipad` and `key ⊕ opad`.
#[derive(Clone, Copy)]
struct HmacPads {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl HmacPads {
    #[inline]
    fn new(key: &[u8; KEY_LEN]) -> Self {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for i in 0..KEY_LEN {
            ipad[i] ^= key[i];
            opad[i] ^= key[i];
        }
        let (mut inner, mut outer) = (SHA256_IV, SHA256_IV);
        compress(&mut inner, &ipad);
        compress(&mut outer, &opad);
        Self { inner, outer }
    }
}

#[inline]
fn hmac_from(pads: &HmacPads, data: &[u8]) -> [u8; KEY_LEN] {
    const BLOCK: usize = 64;
    let mut inner = pads.inner;
    let mut chunks = data.chunks_exact(BLOCK);
    for block in &mut chunks {
        compress(&mut inner, block.try_into().expect("64-byte chunk"));
    }
    finish(&mut inner, chunks.remainder(), (BLOCK + data.len()) as u64);
    let mut outer = pads.outer;
    finish(&mut outer, &state_bytes(&inner), (BLOCK + KEY_LEN) as u64);
    state_bytes(&outer)
}

const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// The SHA-256 state before any input.
pub(crate) const fn sha256_initial() -> [u32; 8] {
    SHA256_IV
}

#[inline]
pub(crate) fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    let block = sha2::digest::generic_array::GenericArray::from_slice(block);
    sha2::compress256(state, std::slice::from_ref(block));
}

/// SHA-256 padding of the last `tail` bytes (< 64) of a message `total` bytes long.
#[inline]
pub(crate) fn finish(state: &mut [u32; 8], tail: &[u8], total: u64) {
    let mut block = [0u8; 64];
    block[..tail.len()].copy_from_slice(tail);
    block[tail.len()] = 0x80;
    if tail.len() >= 56 {
        compress(state, &block);
        block = [0u8; 64];
    }
    block[56..].copy_from_slice(&(total * 8).to_be_bytes());
    compress(state, &block);
}

#[inline]
pub(crate) fn state_bytes(state: &[u32; 8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// First step of the chain: `HMAC(derived key, identifier)`.
pub(crate) fn initial_signature(key: &DerivedKey, identifier: &[u8]) -> Signature {
    Signature(hmac_from(&key.pads, identifier))
}

/// Chain step for a first-party caveat: `HMAC(sig, caveat id)`.
#[inline]
pub(crate) fn first_party_step(sig: &Signature, cid: &[u8]) -> Signature {
    Signature(hmac(&sig.0, cid))
}

/// Chain step for a third-party caveat: `HMAC(sig, HMAC(sig, vid) ‖ HMAC(sig, cid))`.
pub(crate) fn third_party_step(sig: &Signature, vid: &[u8], cid: &[u8]) -> Signature {
    Signature(hash_pair(&sig.0, vid, cid))
}

fn hash_pair(key: &[u8; KEY_LEN], a: &[u8], b: &[u8]) -> [u8; KEY_LEN] {
    let mut both = [0u8; 2 * KEY_LEN];
    both[..KEY_LEN].copy_from_slice(&hmac(key, a));
    both[KEY_LEN..].copy_from_slice(&hmac(key, b));
    hmac(key, &both)
}

/// Binds a discharge's signature to the root token's:
/// `HMAC(0³², HMAC(0³², root sig) ‖ HMAC(0³², discharge sig))`.
pub fn bind_signature(root: &Signature, discharge: &Signature) -> Signature {
    Signature(hash_pair(&[0u8; KEY_LEN], &root.0, &discharge.0))
}

/// Encrypts a third-party caveat key under the current signature, as
/// libmacaroons does: `nonce ‖ secretbox(sig, nonce, key)`.
pub(crate) fn encrypt_caveat_key(
    sig: &Signature,
    nonce: &[u8; SECRETBOX_NONCE_LEN],
    caveat_key: &DerivedKey,
) -> Vec<u8> {
    let cipher = XSalsa20Poly1305::new(&sig.0.into());
    let sealed = cipher
        .encrypt(nonce.into(), caveat_key.bytes.as_slice())
        .expect("secretbox encryption of 32 bytes cannot fail");
    let mut vid = Vec::with_capacity(SECRETBOX_NONCE_LEN + sealed.len());
    vid.extend_from_slice(nonce);
    vid.extend_from_slice(&sealed);
    vid
}

/// Recovers a third-party caveat key from its verification id; `None` when
/// the vid is malformed or was not sealed under `sig`.
pub(crate) fn decrypt_caveat_key(sig: &Signature, vid: &[u8]) -> Option<DerivedKey> {
    if vid.len() != VID_LEN {
        return None;
    }
    let (nonce, sealed) = vid.split_at(SECRETBOX_NONCE_LEN);
    let cipher = XSalsa20Poly1305::new(&sig.0.into());
    let plain = cipher.decrypt(nonce.into(), sealed).ok()?;
    let key: [u8; KEY_LEN] = plain.as_slice().try_into().ok()?;
    Some(DerivedKey::from_bytes(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_hmac_crate() {
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let data: Vec<u8> = (0..300u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in 0..data.len() {
            let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
            mac.update(&data[..len]);
            let expected: [u8; KEY_LEN] = mac.finalize().into_bytes().into();
            assert_eq!(hmac(&key, &data[..len]), expected, "length {len}");
        }
    }

    #[test]
    fn equality_sees_every_byte() {
        let a = [7u8; KEY_LEN];
        assert!(ct_eq32(&a, &a));
        for i in 0..KEY_LEN {
            let mut b = a;
            b[i] ^= 1;
            assert!(!ct_eq32(&a, &b), "byte {i}");
            assert_ne!(Signature::from_bytes(a), Signature::from_bytes(b));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let key = RootKey::from_bytes([7; KEY_LEN]);
        assert_eq!(format!("{key:?}"), "RootKey(<redacted>)");
        assert_eq!(format!("{:?}", key.derive()), "DerivedKey(<redacted>)");
        assert_eq!(format!("{:?}", Signature::from_bytes([1; KEY_LEN])), "Signature(<redacted>)");
    }

    #[test]
    fn hex_keys() {
        let hex = "00ff".repeat(16);
        let key = RootKey::from_hex(&format!("  {hex}\n")).unwrap();
        assert_eq!(key.as_bytes()[1], 0xff);
        assert_eq!(RootKey::from_hex("abc"), Err(Error::InvalidKey("expected 64 hex characters")));
        assert_eq!(RootKey::from_hex(&"zz".repeat(32)), Err(Error::InvalidKey("not hex")));
    }

    #[test]
    fn caveat_key_round_trip_and_wrong_sig() {
        let sig = Signature::from_bytes([3; KEY_LEN]);
        let key = DerivedKey::from_bytes([9; KEY_LEN]);
        let vid = encrypt_caveat_key(&sig, &[5; SECRETBOX_NONCE_LEN], &key);
        assert_eq!(vid.len(), VID_LEN);
        assert_eq!(decrypt_caveat_key(&sig, &vid), Some(key));
        assert_eq!(decrypt_caveat_key(&Signature::from_bytes([4; KEY_LEN]), &vid), None);
        assert_eq!(decrypt_caveat_key(&sig, &vid[1..]), None);
    }
}
