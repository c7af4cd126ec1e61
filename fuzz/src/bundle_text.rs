//! Bundle text (`TOKEN[,DISCHARGE…]`, each part `tly_`-prefixed or not,
//! base64 of either alphabet, padded or not): the flavours a token can be
//! written in, and a slow second reading from the rules in
//! `token/src/text.rs` and `view.rs` (split, trim, check the limits, decode
//! base64 one character at a time, then the library's V2 decoder, which
//! `token_decode` fuzzes).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use tally_token::{Bundle, Limits, Macaroon, TEXT_PREFIX};

/// The text flavours a token can be written in (see [`write_part`]).
pub const FLAVOURS: usize = 6;

/// A token's text in flavour `flavour % FLAVOURS`: Tally's `tly_` form, bare
/// base64 (standard or url-safe alphabet, padded or not), or `tly_` with
/// padded standard base64.
pub fn write_part(m: &Macaroon, flavour: usize) -> String {
    let bytes = m.encode_v2();
    match flavour % FLAVOURS {
        0 => m.to_text(),
        1 => STANDARD.encode(&bytes),
        2 => STANDARD_NO_PAD.encode(&bytes),
        3 => URL_SAFE.encode(&bytes),
        4 => URL_SAFE_NO_PAD.encode(&bytes),
        _ => format!("tly_{}", STANDARD.encode(&bytes)),
    }
}

/// The value of a base64 character in either alphabet (`+/` or `-_`).
fn sextet(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    }))
}

/// Decodes base64: padding, when present, only up to a whole group of four;
/// bits left over at the end must be zero.
pub fn base64(text: &[u8]) -> Option<Vec<u8>> {
    let body = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(text);
    if body.len() != text.len() && !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        acc = (acc << 6) | sextet(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone character (6 bits) holds no byte; other leftovers must be zero.
    (bits != 6 && acc == 0).then_some(out)
}

/// Parses a bundle text; `None` wherever the library must refuse it.
pub fn parse(text: &str, limits: &Limits) -> Option<Bundle> {
    let text = text.trim();
    if text.is_empty() || text.len() > limits.max_bundle_bytes() {
        return None;
    }
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() - 1 > limits.max_discharges {
        return None;
    }
    let mut tokens = Vec::with_capacity(parts.len());
    for part in parts {
        if part.is_empty() || part.len() > limits.max_text_bytes() {
            return None;
        }
        let body = part.strip_prefix(TEXT_PREFIX).unwrap_or(part);
        tokens.push(Macaroon::decode_v2(&base64(body.as_bytes())?, limits).ok()?);
    }
    let root = tokens.remove(0);
    Some(Bundle { root, discharges: tokens })
}
