//! The token text's base64, through the `base64` crate: encoding as Tally
//! writes it (url-safe, unpadded), and decoding whatever other libraries
//! print, straight into a caller's buffer. Decoding accepts either alphabet
//! (url-safe `-_` or standard `+/`, even mixed), padded or not, and is
//! strict where it matters: padding only up to a whole group of four,
//! invalid characters, a dangling character and non-zero trailing bits are
//! errors, so one text decodes to one byte string and back.
//!
//! Decoding is on every check's path. The url-safe engine runs first; only a
//! text that fails on `+` or `/` is rewritten to the url-safe alphabet and
//! decoded again, so Tally's own tokens pay for one pass. Against the
//! hand-written decoder this replaced (eight characters at a time through
//! pre-shifted tables), in alternating rounds of one run on the shared
//! 2-vCPU VM (fastest round per call; 2026-12-07): a 5-caveat token's 252
//! characters decode in 109 ns against 83-94 ns, 1,270 characters in 491-498
//! ns against 395 ns, and decoding, parsing and verifying the 5-caveat token
//! takes 1.475 µs against 1.400 µs (+5 %). Kept: one base64 in the tree is
//! worth that. Before the change, the two decoders answered alike on every
//! text of up to 7 characters over `AQw+/-_=!` (5.4 million) and on 160,000
//! longer ones with characters changed or cut.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Decoded bytes kept inline: a typical token fits, so decoding does not allocate.
pub(crate) const TEXT_INLINE: usize = 512;

/// A buffer for decoded bytes.
pub(crate) type TextBytes = smallvec::SmallVec<[u8; TEXT_INLINE]>;

const fn url_safe(padding: DecodePaddingMode) -> GeneralPurpose {
    GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(padding),
    )
}

/// Tally's text: url-safe, no padding; decodes a text without `=`.
const UNPADDED: GeneralPurpose = url_safe(DecodePaddingMode::RequireNone);

/// Decodes a text that ends in `=`: its padding must complete the last group.
const PADDED: GeneralPurpose = url_safe(DecodePaddingMode::RequireCanonical);

/// Appends the url-safe, unpadded base64 of `bytes` to `out`.
pub(crate) fn encode_to(bytes: &[u8], out: &mut String) {
    UNPADDED.encode_string(bytes, out);
}

/// Room [`decode_to`] needs for a text of `len` characters (a bound).
pub(crate) fn decoded_len_bound(len: usize) -> usize {
    base64::decoded_len_estimate(len)
}

/// Decodes `text` into the start of `dst` (at least [`decoded_len_bound`]
/// long) and returns how many bytes it holds. On error, `dst` holds garbage.
pub(crate) fn decode_to(text: &[u8], dst: &mut [u8]) -> Result<usize, ()> {
    let engine = if text.last() == Some(&b'=') { &PADDED } else { &UNPADDED };
    match engine.decode_slice(text, dst) {
        Ok(len) => Ok(len),
        Err(base64::DecodeSliceError::DecodeError(base64::DecodeError::InvalidByte(_, b'+' | b'/'))) => {
            let url_safe: TextBytes = text
                .iter()
                .map(|&c| match c {
                    b'+' => b'-',
                    b'/' => b'_',
                    c => c,
                })
                .collect();
            engine.decode_slice(&url_safe, dst).map_err(drop)
        }
        Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    use super::{decode_to, decoded_len_bound};

    fn decode(text: &str) -> Result<Vec<u8>, ()> {
        let mut out = vec![0xaa; decoded_len_bound(text.len())];
        decode_to(text.as_bytes(), &mut out).map(|len| out[..len].to_vec())
    }

    #[test]
    fn decodes_every_flavour() {
        let data: Vec<u8> = (0..600u32).map(|i| (i * 97 % 256) as u8).collect();
        for len in 0..data.len() {
            let bytes = &data[..len];
            for text in [STANDARD.encode(bytes), URL_SAFE.encode(bytes), URL_SAFE_NO_PAD.encode(bytes)] {
                assert_eq!(decode(&text).as_deref(), Ok(bytes), "{text}");
                if let Some(unpadded) = text.strip_suffix('=') {
                    assert_eq!(decode(unpadded.trim_end_matches('=')).as_deref(), Ok(bytes));
                }
            }
        }
    }

    #[test]
    fn rejects_what_is_not_base64() {
        for bad in
            ["A", "AB=", "A===", "AB!D", "AB D", "AB\\nD", "QQ=x", "QR", "QUJ", "=", "QQ===", "QQ=", "Q===", "QUJD===="]
        {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode("QQ"), Ok(b"A".to_vec()));
        assert_eq!(decode("QQ=="), Ok(b"A".to_vec()));
        assert_eq!(decode("QUI"), Ok(b"AB".to_vec()));
        assert_eq!(decode("QUI="), Ok(b"AB".to_vec()));
        assert_eq!(decode(""), Ok(Vec::new()));
    }

    #[test]
    fn either_alphabet_even_mixed() {
        let bytes = [0xfb, 0xff, 0xbf, 0xfb, 0xef, 0xfe];
        assert_eq!(STANDARD_NO_PAD.encode(bytes), "+/+/++/+");
        for text in ["+/+/++/+", "-_-_--_-", "+_-/+-_+"] {
            assert_eq!(decode(text).as_deref(), Ok(&bytes[..]), "{text}");
        }
        assert!(decode("+/+/++/!").is_err());
    }
}
