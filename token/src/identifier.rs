//! Tally's identifier layout. Identifiers are not secret: they say which root
//! key signed the token and carry the family nonce.
//!
//! ```text
//! byte 0      version = 0x01
//! bytes 1..   key id, unsigned LEB128 (1 to 10 bytes)
//! last 16     nonce: random, the token family's id
//! ```
//!
//! Anything else (another length, another version) is a foreign identifier.

use std::fmt;

use crate::Error;

/// The identifier version this crate writes and reads.
pub const IDENTIFIER_VERSION: u8 = 1;
/// Length of the family nonce.
pub const NONCE_LEN: usize = 16;

/// Which root key signed a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A token family: the nonce shared by a minted token and all its descendants.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FamilyId(pub [u8; NONCE_LEN]);

impl FamilyId {
    /// Lowercase hex, 32 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(NONCE_LEN * 2);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// Parses 32 hex characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim().as_bytes();
        if text.len() != NONCE_LEN * 2 {
            return None;
        }
        let mut out = [0u8; NONCE_LEN];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(Self(out))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FamilyId({self})")
    }
}

/// A parsed Tally identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TallyId {
    /// The root key that signed the token.
    pub key_id: KeyId,
    /// The family nonce.
    pub family: FamilyId,
}

impl TallyId {
    /// An identifier for a new token; `nonce` must be fresh random bytes.
    pub fn new(key_id: KeyId, nonce: [u8; NONCE_LEN]) -> Self {
        Self { key_id, family: FamilyId(nonce) }
    }

    /// The identifier bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 10 + NONCE_LEN);
        out.push(IDENTIFIER_VERSION);
        let mut n = self.key_id.0;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(&self.family.0);
        out
    }

    /// Parses identifier bytes; anything not in Tally's layout is
    /// [`Error::ForeignIdentifier`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (&version, rest) = bytes.split_first().ok_or(Error::ForeignIdentifier("empty"))?;
        if version != IDENTIFIER_VERSION {
            return Err(Error::ForeignIdentifier("unknown version byte"));
        }
        if rest.len() < NONCE_LEN + 1 {
            return Err(Error::ForeignIdentifier("too short"));
        }
        let (varint, nonce) = rest.split_at(rest.len() - NONCE_LEN);
        // LEB128, canonical: continuation bits on all but the last byte, no
        // trailing zero group, and nothing past 64 bits. One identifier has one
        // byte form, so equal keys mean equal identifiers.
        let mut key_id: u64 = 0;
        let n = varint.len();
        if n > 10 || (n > 1 && varint[n - 1] == 0) || (n == 10 && varint[9] > 1) {
            return Err(Error::ForeignIdentifier("bad key id encoding"));
        }
        for (i, &b) in varint.iter().enumerate() {
            if (b & 0x80 == 0) != (i + 1 == n) {
                return Err(Error::ForeignIdentifier("bad key id encoding"));
            }
            key_id |= u64::from(b & 0x7f) << (7 * i);
        }
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let id = Self::new(KeyId(key_id), nonce);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for key in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let id = TallyId::new(KeyId(key), [0xab; NONCE_LEN]);
            assert_eq!(TallyId::decode(&id.encode()).unwrap(), id, "key {key}");
        }
    }

    #[test]
    fn foreign() {
        assert!(matches!(TallyId::decode(b""), Err(Error::ForeignIdentifier(_))));
        assert!(matches!(TallyId::decode(b"we used our secret key"), Err(Error::ForeignIdentifier(_))));
        let mut bytes = TallyId::new(KeyId(5), [1; NONCE_LEN]).encode();
        bytes.push(0);
        assert!(matches!(TallyId::decode(&bytes), Err(Error::ForeignIdentifier(_))));
        // 0x85 0x00 encodes 5 non-canonically.
        let mut bytes = vec![1, 0x85, 0x00];
        bytes.extend_from_slice(&[1; NONCE_LEN]);
        assert!(matches!(TallyId::decode(&bytes), Err(Error::ForeignIdentifier(_))));
        // Eleven bits past 64: overflow.
        let mut bytes = vec![1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        bytes.extend_from_slice(&[1; NONCE_LEN]);
        assert!(matches!(TallyId::decode(&bytes), Err(Error::ForeignIdentifier(_))));
    }

    #[test]
    fn family_hex() {
        let f = FamilyId([0x0f; NONCE_LEN]);
        assert_eq!(f.to_hex(), "0f".repeat(16));
        assert_eq!(FamilyId::from_hex(&f.to_hex()), Some(f));
        assert_eq!(FamilyId::from_hex("zz"), None);
    }
}
