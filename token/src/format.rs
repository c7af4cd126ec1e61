//! The libmacaroons V2 binary format: a version byte 0x02, then fields of
//! (type, LEB128 length, bytes), sections closed by an end-of-section byte.
//!
//! ```text
//! 0x02 [location] identifier EOS  ( [location] identifier [vid] EOS )*  EOS  signature
//! ```
//!
//! Decoding enforces [`Limits`] before allocating or hashing anything.

use crate::crypto::{KEY_LEN, Signature};
use crate::view::{CaveatRef, MacaroonRef};
use crate::{Error, Limits, Macaroon};

const VERSION_V2: u8 = 2;
pub(crate) const EOS: u8 = 0;
const LOCATION: u8 = 1;
pub(crate) const IDENTIFIER: u8 = 2;
pub(crate) const VID: u8 = 4;
const SIGNATURE: u8 = 6;

impl Macaroon {
    /// Serialises to libmacaroons V2 binary.
    pub fn encode_v2(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        out.push(VERSION_V2);
        if let Some(loc) = &self.location {
            put_field(&mut out, LOCATION, loc.as_bytes());
        }
        put_field(&mut out, IDENTIFIER, &self.identifier);
        out.push(EOS);
        for caveat in &self.caveats {
            if let Some(loc) = &caveat.location {
                put_field(&mut out, LOCATION, loc.as_bytes());
            }
            put_field(&mut out, IDENTIFIER, &caveat.id);
            if let Some(vid) = &caveat.vid {
                put_field(&mut out, VID, vid);
            }
            out.push(EOS);
        }
        out.push(EOS);
        put_field(&mut out, SIGNATURE, self.signature.as_bytes());
        out
    }

    fn encoded_len_hint(&self) -> usize {
        let fields: usize = self
            .caveats
            .iter()
            .map(|c| c.id.len() + c.vid.as_ref().map_or(0, Vec::len) + c.location.as_ref().map_or(0, String::len) + 8)
            .sum();
        self.identifier.len() + self.location.as_ref().map_or(0, String::len) + fields + KEY_LEN + 12
    }

    /// Parses libmacaroons V2 binary within `limits`.
    pub fn decode_v2(bytes: &[u8], limits: &Limits) -> Result<Self, Error> {
        MacaroonRef::decode_v2(bytes, limits).map(|m| m.to_owned())
    }
}

impl<'a> MacaroonRef<'a> {
    /// Parses libmacaroons V2 binary within `limits`, borrowing every field
    /// from `bytes`: the one parser (the owned form copies out of it).
    pub fn decode_v2(bytes: &'a [u8], limits: &Limits) -> Result<Self, Error> {
        Limits::check("token size", bytes.len(), limits.max_token_bytes)?;
        let mut r = Reader { buf: bytes, pos: 0, limits, canonical: true };
        match r.byte()? {
            VERSION_V2 => {}
            other => return Err(Error::UnsupportedVersion(other)),
        }
        let (location, identifier, prefix_start) = r.header()?;
        let mut caveats = smallvec::SmallVec::new();
        let prefix_end = loop {
            if r.peek()? == EOS {
                r.pos += 1;
                break r.pos - 1;
            }
            Limits::check("caveat count", caveats.len() + 1, limits.max_caveats)?;
            caveats.push(r.caveat()?);
        };
        let canonical = r.canonical.then(|| &bytes[prefix_start..prefix_end]);
        let (ty, sig) = r.field()?;
        if ty != SIGNATURE {
            return Err(Error::Malformed("expected signature field"));
        }
        let sig: [u8; KEY_LEN] = sig.try_into().map_err(|_| Error::Malformed("signature is not 32 bytes"))?;
        if r.pos != bytes.len() {
            return Err(Error::Malformed("trailing bytes after signature"));
        }
        Ok(MacaroonRef {
            location,
            identifier,
            caveats,
            signature: Signature::from_bytes(sig),
            canonical: canonical.into(),
        })
    }
}

pub(crate) fn put_field(out: &mut Vec<u8>, ty: u8, data: &[u8]) {
    out.push(ty);
    put_uvarint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn put_uvarint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

struct Reader<'a, 'l> {
    buf: &'a [u8],
    pos: usize,
    limits: &'l Limits,
    /// No location field and no over-long length seen (since last reset).
    canonical: bool,
}

impl<'a> Reader<'a, '_> {
    fn peek(&self) -> Result<u8, Error> {
        self.buf.get(self.pos).copied().ok_or(Error::Malformed("truncated"))
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn uvarint(&mut self) -> Result<u64, Error> {
        // Almost every field is shorter than 128 bytes: one length byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    self.canonical = false; // over-long: a zero last byte
                }
                return Ok(n);
            }
        }
        Err(Error::Malformed("varint too long"))
    }

    /// One field: type and payload. The payload borrows from the input.
    fn field(&mut self) -> Result<(u8, &'a [u8]), Error> {
        let ty = self.byte()?;
        if ty == EOS {
            return Ok((EOS, &[]));
        }
        if !matches!(ty, LOCATION | IDENTIFIER | VID | SIGNATURE) {
            return Err(Error::Malformed("unknown field type"));
        }
        let len = self.uvarint()?;
        let len = usize::try_from(len).map_err(|_| Error::Malformed("field length overflows"))?;
        Limits::check("field size", len, self.limits.max_field_bytes.max(KEY_LEN))?;
        let end =
            self.pos.checked_add(len).filter(|&e| e <= self.buf.len()).ok_or(Error::Malformed("truncated field"))?;
        let data = &self.buf[self.pos..end];
        self.pos = end;
        Ok((ty, data))
    }

    /// `[location] identifier`, the start of the header and of every caveat.
    /// An empty location counts as none (some libraries always write one).
    /// Also returns where the identifier field starts.
    fn located_identifier(&mut self) -> Result<(Option<&'a str>, &'a [u8], usize), Error> {
        let mut start = self.pos;
        let (mut ty, mut data) = self.field()?;
        let mut location = None;
        if ty == LOCATION {
            location = Some(utf8_location(data)?).filter(|l| !l.is_empty());
            start = self.pos;
            (ty, data) = self.field()?;
        }
        if ty != IDENTIFIER {
            return Err(Error::Malformed("expected identifier field"));
        }
        Ok((location, data, start))
    }

    /// `[location] identifier EOS` of the macaroon itself, and where the
    /// identifier field starts.
    fn header(&mut self) -> Result<(Option<&'a str>, &'a [u8], usize), Error> {
        let (location, identifier, start) = self.located_identifier()?;
        if self.field()?.0 != EOS {
            return Err(Error::Malformed("unexpected field in header"));
        }
        Ok((location, identifier, start))
    }

    /// `[location] identifier [vid] EOS` of one caveat.
    fn caveat(&mut self) -> Result<CaveatRef<'a>, Error> {
        // Fast path for the common first-party caveat: `identifier EOS` with a
        // one-byte length (what every library writes for a short caveat).
        // Anything else, including every error, takes the general path below.
        if let Some([IDENTIFIER, len, rest @ ..]) = self.buf.get(self.pos..) {
            let len = usize::from(*len);
            if len < 0x80 && len <= self.limits.max_field_bytes && rest.get(len) == Some(&EOS) {
                self.pos += len + 3;
                return Ok(CaveatRef { location: None, id: &rest[..len], vid: None });
            }
        }
        let at = self.pos;
        let (location, id, start) = self.located_identifier()?;
        if start != at {
            // A location field came first: not in the canonical prefix encoding.
            self.canonical = false;
        }
        let (ty, data) = self.field()?;
        let vid = match ty {
            EOS => None,
            VID => {
                if self.field()?.0 != EOS {
                    return Err(Error::Malformed("unexpected field in caveat"));
                }
                Some(data)
            }
            _ => return Err(Error::Malformed("unexpected field in caveat")),
        };
        Ok(CaveatRef { location, id, vid })
    }
}

fn utf8_location(data: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(data).map_err(|_| Error::Malformed("location is not UTF-8"))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::RootKey;

    fn sample() -> Macaroon {
        let key = RootKey::from_bytes([1; 32]);
        let mut m = Macaroon::mint(&key, b"id".to_vec(), Some("https://tally.example".into()));
        m.add_first_party("action in read");
        m.add_third_party(Some("https://auth.example".into()), &RootKey::from_bytes([2; 32]), b"tp".to_vec(), [3; 24]);
        m
    }

    #[test]
    fn short_caveats_and_every_other_shape_decode_alike() {
        let key = RootKey::from_bytes([1; 32]);
        let mut m = Macaroon::mint(&key, b"id".to_vec(), None);
        m.add_first_party("a = b"); // the fast path: one-byte length, no vid
        m.add_first_party(format!("resource = {}", "x".repeat(200))); // two-byte length
        m.add_first_party("y".repeat(127)); // the longest one-byte length
        m.add_third_party(Some("https://auth.example".into()), &RootKey::from_bytes([2; 32]), b"tp".to_vec(), [3; 24]);
        let bytes = m.encode_v2();
        let back = Macaroon::decode_v2(&bytes, &Limits::default()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encode_v2(), bytes);
        // A short caveat over the field limit is refused as by the general path.
        let tight = Limits { max_field_bytes: 4, ..Limits::default() };
        let err = MacaroonRef::decode_v2(&bytes, &tight).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = m.encode_v2();
        assert_eq!(bytes[0], 2);
        assert_eq!(Macaroon::decode_v2(&bytes, &Limits::default()).unwrap(), m);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode_v2();
        for len in 0..bytes.len() {
            assert!(Macaroon::decode_v2(&bytes[..len], &Limits::default()).is_err(), "prefix {len}");
        }
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut bytes = sample().encode_v2();
        bytes.push(0);
        assert_eq!(
            Macaroon::decode_v2(&bytes, &Limits::default()),
            Err(Error::Malformed("trailing bytes after signature"))
        );
    }

    #[test]
    fn v1_rejected_clearly() {
        assert_eq!(Macaroon::decode_v2(b"0040location", &Limits::default()), Err(Error::UnsupportedVersion(b'0')));
    }

    #[test]
    fn limits_checked_before_allocation() {
        // A field claiming 2^60 bytes must fail on the limit, not try to allocate.
        let mut bytes = vec![2, IDENTIFIER];
        put_uvarint(&mut bytes, 1 << 60);
        assert!(matches!(
            Macaroon::decode_v2(&bytes, &Limits::default()),
            Err(Error::TooLarge { what: "field size", .. })
        ));
        let mut m = Macaroon::mint(&RootKey::from_bytes([0; 32]), b"x".to_vec(), None);
        for _ in 0..5 {
            m.add_first_party("a");
        }
        let limits = Limits { max_caveats: 4, ..Limits::default() };
        assert!(matches!(
            Macaroon::decode_v2(&m.encode_v2(), &limits),
            Err(Error::TooLarge { what: "caveat count", actual: 5, max: 4 })
        ));
    }
}
