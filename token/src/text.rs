//! Text forms: a token is `tly_` + unpadded base64url of the V2 bytes, so
//! secret scanners can spot a leaked one; a bundle is `TOKEN,DISCHARGE,…`.
//! Input also accepts bare standard or url-safe base64, padded or not, as
//! other macaroon libraries print it.

use crate::base64url;
use crate::view::{DecodedBundle, MacaroonRef};
use crate::{Error, Limits, Macaroon};

/// The prefix of Tally's token text.
pub const TEXT_PREFIX: &str = "tly_";

impl Macaroon {
    /// `tly_` + unpadded base64url of the V2 binary.
    pub fn to_text(&self) -> String {
        let mut out = String::from(TEXT_PREFIX);
        base64url::encode_to(&self.encode_v2(), &mut out);
        out
    }

    /// Parses the text form (with or without prefix; any base64 flavour).
    pub fn from_text(text: &str, limits: &Limits) -> Result<Self, Error> {
        let decoded = DecodedBundle::decode_one(text, limits)?;
        Ok(decoded.view(limits)?.root.to_owned())
    }
}

/// A token together with the discharges for its third-party caveats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The token being presented.
    pub root: Macaroon,
    /// Discharges, each bound to `root`'s signature.
    pub discharges: Vec<Macaroon>,
}

impl Bundle {
    /// A bundle without discharges.
    pub fn single(root: Macaroon) -> Self {
        Self { root, discharges: Vec::new() }
    }

    /// Parses `TOKEN[,DISCHARGE…]`; limits on count and size are checked
    /// before anything is decoded.
    pub fn parse(text: &str, limits: &Limits) -> Result<Self, Error> {
        let decoded = DecodedBundle::decode(text, limits)?;
        let view = decoded.view(limits)?;
        Ok(Self { root: view.root.to_owned(), discharges: view.discharges.iter().map(MacaroonRef::to_owned).collect() })
    }

    /// `TOKEN,DISCHARGE,…` in Tally's text form.
    pub fn to_text(&self) -> String {
        let mut out = self.root.to_text();
        for d in &self.discharges {
            out.push(',');
            out.push_str(&d.to_text());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::RootKey;

    fn token() -> Macaroon {
        let mut m = Macaroon::mint(&RootKey::from_bytes([1; 32]), b"some id".to_vec(), Some("loc".into()));
        m.add_first_party("service = web");
        m
    }

    #[test]
    fn text_round_trip_and_foreign_flavours() {
        let m = token();
        let text = m.to_text();
        assert!(text.starts_with("tly_") && !text.contains('='));
        let limits = Limits::default();
        assert_eq!(Macaroon::from_text(&text, &limits).unwrap(), m);
        let bytes = m.encode_v2();
        for engine in [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE] {
            let padded = engine.encode(&bytes);
            assert_eq!(Macaroon::from_text(&padded, &limits).unwrap(), m);
            assert_eq!(Macaroon::from_text(padded.trim_end_matches('='), &limits).unwrap(), m);
        }
    }

    #[test]
    fn bad_text() {
        let limits = Limits::default();
        assert_eq!(Macaroon::from_text("  ", &limits), Err(Error::Empty));
        assert_eq!(Macaroon::from_text("tly_!!!", &limits), Err(Error::Base64));
        assert_eq!(Bundle::parse(&format!("{},", token().to_text()), &limits), Err(Error::EmptyBundlePart(1)));
        assert_eq!(Bundle::parse(",", &limits), Err(Error::EmptyBundlePart(0)));
        let many = vec![token().to_text(); 40].join(",");
        assert!(matches!(Bundle::parse(&many, &limits), Err(Error::TooLarge { what: "discharge count", .. })));
    }

    #[test]
    fn bundle_round_trip() {
        let b = Bundle { root: token(), discharges: vec![token()] };
        assert_eq!(Bundle::parse(&b.to_text(), &Limits::default()).unwrap(), b);
    }
}
