//! The key-encryption key: root keys are stored only sealed under it
//! (XChaCha20-Poly1305, a random 24-byte nonce per seal, the key id and org as
//! associated data so a sealed key cannot be moved to another row). Its file
//! should be its owner's alone: a warning says so when it is not.

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
    /// Warns (as ssh does of a private key) when group or others may read or
    /// write it: whoever reads it and a copy of the database (a backup) has
    /// every root key, and whoever writes it can keep the authority from
    /// opening them. A warning, not a refusal: some deployments share the
    /// file with a group on purpose (a Kubernetes secret mounted for the
    /// pod's fsGroup). Never the file's content, only its name and mode.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read KEK file {}: {e}", path.display())))?;
        if let Some(mode) = too_open(path) {
            tracing::warn!(
                "permissions {mode:04o} for KEK file {} are too open: it should be readable by its owner only (chmod 600)",
                path.display()
            );
        }
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
        getrandom::getrandom(&mut nonce)?;
        let aad = aad(key_id, org);
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: key.as_bytes(), aad: &aad })
            .map_err(|_| Error::Seal(key_id.0))?;
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

/// Group and others: none of their bits should be set on a KEK file.
#[cfg(unix)]
const NOT_OWNER: u32 = 0o077;

/// The file's permission bits when group or others may read, write or
/// execute it; `None` when only its owner may (or it cannot be told).
#[cfg(unix)]
fn too_open(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & NOT_OWNER != 0).then_some(mode)
}

/// Elsewhere permissions are not unix modes: nothing to say.
#[cfg(not(unix))]
fn too_open(_path: &Path) -> Option<u32> {
    None
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

    #[cfg(unix)]
    #[test]
    fn a_kek_file_open_to_group_or_others_is_too_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.hex");
        std::fs::write(&path, "11".repeat(32)).unwrap();
        for (mode, open) in [(0o600, false), (0o400, false), (0o644, true), (0o640, true), (0o604, true), (0o620, true)]
        {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(too_open(&path), open.then_some(mode), "{mode:o}");
            // Warned about or not, the KEK is read.
            assert!(Kek::from_file(&path).is_ok(), "{mode:o}");
        }
        assert_eq!(too_open(&dir.path().join("missing")), None);
    }
}
