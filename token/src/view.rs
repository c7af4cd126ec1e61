//! Borrowed views of macaroons and bundles: every field a slice of the decoded
//! bytes, so parsing a token allocates (almost) nothing. Verification works on
//! views; the owned [`Macaroon`] and [`Bundle`] are built from them.

use smallvec::SmallVec;

use crate::base64url::{self, TEXT_INLINE, TextBytes};
use crate::crypto::Signature;
use crate::text::TEXT_PREFIX;
use crate::{Bundle, Caveat, Error, Limits, Macaroon};

/// A caveat, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaveatRef<'a> {
    /// Location hint (third-party caveats).
    pub location: Option<&'a str>,
    /// Predicate text, or the third party's caveat id.
    pub id: &'a [u8],
    /// Verification id, for third-party caveats.
    pub vid: Option<&'a [u8]>,
}

impl CaveatRef<'_> {
    /// True for third-party caveats.
    pub fn is_third_party(&self) -> bool {
        self.vid.is_some()
    }

    /// The owned caveat.
    pub fn to_owned(&self) -> Caveat {
        Caveat { location: self.location.map(str::to_owned), id: self.id.to_vec(), vid: self.vid.map(<[u8]>::to_vec) }
    }
}

/// A macaroon, borrowed. `Debug` never shows the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacaroonRef<'a> {
    pub location: Option<&'a str>,
    pub identifier: &'a [u8],
    /// Inline up to 8: parsing a typical token allocates nothing.
    pub caveats: SmallVec<[CaveatRef<'a>; 8]>,
    pub signature: Signature,
    /// The decoded bytes of the identifier and caveats, when they are the
    /// canonical prefix encoding (see [`crate::PrefixKeys`]).
    pub(crate) canonical: CanonicalBytes<'a>,
}

/// Bytes the prefix keys can hash as they are. Not part of a macaroon's
/// value: views of the same macaroon compare equal whatever their source.
#[derive(Clone, Copy, Default)]
pub(crate) struct CanonicalBytes<'a>(Option<&'a [u8]>);

impl<'a> From<Option<&'a [u8]>> for CanonicalBytes<'a> {
    fn from(bytes: Option<&'a [u8]>) -> Self {
        Self(bytes)
    }
}

impl PartialEq for CanonicalBytes<'_> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CanonicalBytes<'_> {}

impl std::fmt::Debug for CanonicalBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", if self.0.is_some() { "canonical" } else { "re-encode" })
    }
}

impl<'a> MacaroonRef<'a> {
    /// The canonical prefix encoding, when the view was decoded from one.
    pub(crate) fn canonical_prefix(&self) -> Option<&'a [u8]> {
        self.canonical.0
    }
}

impl MacaroonRef<'_> {
    /// The owned macaroon.
    pub fn to_owned(&self) -> Macaroon {
        Macaroon::from_parts(
            self.location.map(str::to_owned),
            self.identifier.to_vec(),
            self.caveats.iter().map(CaveatRef::to_owned).collect(),
            self.signature.clone(),
        )
    }
}

impl Macaroon {
    /// A borrowed view of this macaroon.
    pub fn view(&self) -> MacaroonRef<'_> {
        MacaroonRef {
            location: self.location.as_deref(),
            identifier: &self.identifier,
            caveats: self
                .caveats
                .iter()
                .map(|c| CaveatRef { location: c.location.as_deref(), id: &c.id, vid: c.vid.as_deref() })
                .collect(),
            signature: self.signature.clone(),
            canonical: CanonicalBytes::default(),
        }
    }
}

/// A bundle, borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRef<'a> {
    pub root: MacaroonRef<'a>,
    pub discharges: Vec<MacaroonRef<'a>>,
}

impl Bundle {
    /// A borrowed view of this bundle.
    pub fn view(&self) -> BundleRef<'_> {
        BundleRef { root: self.root.view(), discharges: self.discharges.iter().map(Macaroon::view).collect() }
    }
}

impl BundleRef<'_> {
    /// Caveats of the root token.
    pub fn caveats_len(&self) -> usize {
        self.root.caveats.len()
    }
}

/// The binary forms of a bundle's parts, decoded from text into one buffer.
/// `Debug` shows only sizes: the bytes hold signatures.
#[derive(Clone)]
pub struct DecodedBundle {
    /// Initialised scratch, never shorter than the inline buffer; the parts
    /// fill `bytes[..end]` (what lies beyond is never read).
    bytes: TextBytes,
    end: usize,
    /// Parts decoded so far.
    count: usize,
    /// The root token is `bytes[..root_end]`.
    root_end: usize,
    /// Discharge i ends here (it starts where the one before ended).
    discharge_ends: Vec<usize>,
}

impl Default for DecodedBundle {
    fn default() -> Self {
        // The whole inline buffer, zeroed once: decoding a token that fits
        // needs no fill loop and no allocation.
        let bytes = TextBytes::from_buf([0; TEXT_INLINE]);
        Self { bytes, end: 0, count: 0, root_end: 0, discharge_ends: Vec::new() }
    }
}

impl std::fmt::Debug for DecodedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedBundle").field("bytes", &self.end).field("parts", &self.count).finish()
    }
}

impl DecodedBundle {
    /// Decodes `TOKEN[,DISCHARGE…]` (each `tly_…` or bare base64 of either
    /// alphabet, padded or not). Limits on count and size come first.
    #[inline]
    pub fn decode(text: &str, limits: &Limits) -> Result<Self, Error> {
        let mut out = Self::default();
        out.decode_into(text, limits)?;
        Ok(out)
    }

    /// [`DecodedBundle::decode`] into `self`, replacing what it held: the hot
    /// path's form, since returning a `DecodedBundle` copies its inline
    /// buffer on every move. On error `self` holds no part.
    #[inline]
    pub fn decode_into(&mut self, text: &str, limits: &Limits) -> Result<(), Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Empty);
        }
        Limits::check("bundle text size", text.len(), limits.max_bundle_bytes())?;
        self.reset(text.len());
        if text.len() <= limits.max_text_bytes() {
            // The common case, a token without discharges, costs no scan for
            // commas: a comma is not base64, so a bundle fails here first.
            match self.push_part(text, limits) {
                Ok(()) => return Ok(()),
                Err(Error::Base64) if text.as_bytes().contains(&b',') => self.reset(text.len()),
                Err(e) => return self.fail(e),
            }
        }
        // Count before decoding anything (stopping early), so a flood of parts costs nothing.
        let count = text.split(',').take(limits.max_discharges + 2).count();
        if let Err(e) = Limits::check("discharge count", count - 1, limits.max_discharges) {
            return self.fail(e);
        }
        self.discharge_ends.reserve(count - 1);
        for (i, part) in text.split(',').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                return self.fail(Error::EmptyBundlePart(i));
            }
            if let Err(e) = self.push_part(part, limits) {
                return self.fail(e);
            }
        }
        Ok(())
    }

    /// Empty, with room for the bytes of `text_len` characters of base64.
    #[inline]
    fn reset(&mut self, text_len: usize) {
        let needed = base64url::decoded_len_bound(text_len);
        if self.bytes.len() < needed {
            self.bytes.resize(needed, 0);
        }
        self.end = 0;
        self.count = 0;
        self.root_end = 0;
        self.discharge_ends.clear();
    }

    fn fail(&mut self, e: Error) -> Result<(), Error> {
        self.count = 0;
        Err(e)
    }

    /// Decodes one token's text.
    pub(crate) fn decode_one(text: &str, limits: &Limits) -> Result<Self, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Empty);
        }
        let mut out = Self::default();
        out.reset(text.len());
        out.push_part(text, limits)?;
        Ok(out)
    }

    fn push_part(&mut self, part: &str, limits: &Limits) -> Result<(), Error> {
        Limits::check("token text size", part.len(), limits.max_text_bytes())?;
        let body = part.strip_prefix(TEXT_PREFIX).unwrap_or(part).as_bytes();
        let needed = self.end + base64url::decoded_len_bound(body.len());
        if self.bytes.len() < needed {
            self.bytes.resize(needed, 0);
        }
        self.end += base64url::decode_to(body, &mut self.bytes[self.end..]).map_err(|()| Error::Base64)?;
        if self.count == 0 {
            self.root_end = self.end;
        } else {
            self.discharge_ends.push(self.end);
        }
        self.count += 1;
        Ok(())
    }

    /// Parses the decoded parts; the first is the token, the rest discharges.
    pub fn view(&self, limits: &Limits) -> Result<BundleRef<'_>, Error> {
        if self.count == 0 {
            return Err(Error::Empty);
        }
        let root = MacaroonRef::decode_v2(&self.bytes[..self.root_end], limits)?;
        let mut start = self.root_end;
        let discharges = self
            .discharge_ends
            .iter()
            .map(|&end| {
                let part = &self.bytes[start..end];
                start = end;
                MacaroonRef::decode_v2(part, limits)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BundleRef { root, discharges })
    }
}
