//! The key-encryption key: root keys are stored only sealed under it
//! (XChaCha20-Poly1305, a random 24-byte nonce per seal, the key id and org as
//! associated data so a sealed key cannot be moved to another row).

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use tally_token::{KeyId, RootKey};

use crate::error::{Error, Result};

const NONCE_LEN: usize = 24;
const AAD_DOMAIN: &[u8] = b"tally-root-key-v1\0";

/// The operator's key-encryption key. `Debug` is redacted.
pub struct Kek(XChaCha20Poly1305);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// Reads a KEK file: 64 hex characters (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read KEK file {}: {e}", path.display())))?;
        Self::from_hex(&text)
            .ok_or_else(|| Error::Config(format!("KEK file {} must hold 64 hex characters (32 bytes)", path.display())))
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        let key: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(XChaCha20Poly1305::new(&key.into())))
    }

    /// Seals a root key for storage: `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, key_id: KeyId, org: &str, key: &RootKey) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| Error::Config(format!("no randomness: {e}")))?;
        let aad = aad(key_id, org);
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: key.as_bytes(), aad: &aad })
            .map_err(|_| Error::Config("sealing a root key failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a sealed root key; [`Error::WrongKek`] when it does not open.
    pub fn open(&self, key_id: KeyId, org: &str, sealed: &[u8]) -> Result<RootKey> {
        if sealed.len() < NONCE_LEN {
            return Err(Error::WrongKek(key_id.0));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let aad = aad(key_id, org);
        let plain = self
            .0
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: &aad })
            .map_err(|_| Error::WrongKek(key_id.0))?;
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| Error::WrongKek(key_id.0))?;
        Ok(RootKey::from_bytes(bytes))
    }
}

fn aad(key_id: KeyId, org: &str) -> Vec<u8> {
    let mut aad = AAD_DOMAIN.to_vec();
    aad.extend_from_slice(&key_id.0.to_be_bytes());
    aad.extend_from_slice(org.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let kek = Kek::from_hex(&"11".repeat(32)).unwrap();
        let key = RootKey::from_bytes([5; 32]);
        let sealed = kek.seal(KeyId(1), "acme", &key).unwrap();
        assert!(!sealed.windows(32).any(|w| w == key.as_bytes()));
        assert_eq!(kek.open(KeyId(1), "acme", &sealed).unwrap(), key);
        assert!(matches!(kek.open(KeyId(2), "acme", &sealed), Err(Error::WrongKek(2))));
        assert!(matches!(kek.open(KeyId(1), "other", &sealed), Err(Error::WrongKek(1))));
        let wrong = Kek::from_hex(&"22".repeat(32)).unwrap();
        assert!(matches!(wrong.open(KeyId(1), "acme", &sealed), Err(Error::WrongKek(1))));
        assert_eq!(format!("{kek:?}"), "Kek(<redacted>)");
    }
}
