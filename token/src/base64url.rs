//! Decoding the token text: base64 of either alphabet (url-safe `-_` or
//! standard `+/`), padded or not, straight into a caller's buffer. Decoding is
//! on every check's path. Strict where it matters:
//! invalid characters, a dangling character and non-zero trailing bits are
//! errors, so one text decodes to one byte string and back. Eight characters
//! at a time through pre-shifted tables: no SIMD, no `unsafe`.

/// Decoded bytes kept inline: a typical token fits, so decoding does not allocate.
pub(crate) const TEXT_INLINE: usize = 512;

/// A buffer for decoded bytes.
pub(crate) type TextBytes = smallvec::SmallVec<[u8; TEXT_INLINE]>;

/// 0xff: not a base64 character.
const INVALID: u8 = 0xff;

const TABLE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'-' as usize] = 62;
    t[b'+' as usize] = 62;
    t[b'_' as usize] = 63;
    t[b'/' as usize] = 63;
    t
};

/// Set in a shifted-table entry for a non-base64 character: survives the OR
/// of a whole group, so one test per group finds any bad character.
const BAD: u32 = 1 << 31;

/// `TABLE` with each value already shifted to its place in a 4-character
/// group (`shift` 18, 12, 6, 0): a group decodes with four loads and three ORs.
const fn shifted(shift: u32) -> [u32; 256] {
    let mut t = [BAD; 256];
    let mut c = 0;
    while c < 256 {
        if TABLE[c] != INVALID {
            t[c] = (TABLE[c] as u32) << shift;
        }
        c += 1;
    }
    t
}

static T0: [u32; 256] = shifted(18);
static T1: [u32; 256] = shifted(12);
static T2: [u32; 256] = shifted(6);
static T3: [u32; 256] = shifted(0);

#[inline]
fn group(g: &[u8]) -> u32 {
    T0[usize::from(g[0])] | T1[usize::from(g[1])] | T2[usize::from(g[2])] | T3[usize::from(g[3])]
}

/// Room [`decode_to`] needs for a text of `len` characters (a bound).
pub(crate) fn decoded_len_bound(len: usize) -> usize {
    len / 4 * 3 + 2
}

/// Decodes `text` into the start of `dst` (at least [`decoded_len_bound`]
/// long) and returns how many bytes it holds. On error, `dst` holds garbage.
pub(crate) fn decode_to(text: &[u8], dst: &mut [u8]) -> Result<usize, ()> {
    let unpadded = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(text);
    if unpadded.len() != text.len() && !text.len().is_multiple_of(4) {
        return Err(()); // padding only to a whole group
    }
    let full = unpadded.len() / 4 * 4;
    let (body, tail) = unpadded.split_at(full);
    if tail.len() == 1 {
        return Err(());
    }
    let len = full / 4 * 3 + tail.len().saturating_sub(1);
    let dst = &mut dst[..len];
    let mut pairs = body.chunks_exact(8);
    let mut out = dst.chunks_exact_mut(6);
    for (chunk, six) in (&mut pairs).zip(&mut out) {
        let (hi, lo) = (group(&chunk[..4]), group(&chunk[4..]));
        if (hi | lo) & BAD != 0 {
            return Err(());
        }
        let v = (u64::from(hi) << 40) | (u64::from(lo) << 16);
        six.copy_from_slice(&v.to_be_bytes()[..6]);
    }
    let mut o = full / 8 * 6;
    if !pairs.remainder().is_empty() {
        let n = group(pairs.remainder());
        if n & BAD != 0 {
            return Err(());
        }
        dst[o..o + 3].copy_from_slice(&n.to_be_bytes()[1..]);
        o += 3;
    }
    let mut n: u32 = 0;
    for &ch in tail {
        let v = TABLE[usize::from(ch)];
        if v == INVALID {
            return Err(());
        }
        n = (n << 6) | u32::from(v);
    }
    match tail.len() {
        0 => {}
        2 if n & 0xf == 0 => dst[o] = (n >> 4) as u8,
        3 if n & 0x3 == 0 => dst[o..o + 2].copy_from_slice(&((n >> 2) as u16).to_be_bytes()),
        _ => return Err(()), // non-zero trailing bits
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};

    use super::{decode_to, decoded_len_bound};

    fn decode(text: &str) -> Result<Vec<u8>, ()> {
        let mut out = vec![0xaa; decoded_len_bound(text.len())];
        decode_to(text.as_bytes(), &mut out).map(|len| out[..len].to_vec())
    }

    #[test]
    fn agrees_with_the_base64_crate() {
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
        for bad in ["A", "AB=", "A===", "AB!D", "AB D", "AB\\nD", "QQ=x", "QR", "QUJ", "=", "QQ==="] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode("QQ"), Ok(b"A".to_vec()));
        assert_eq!(decode("QUI"), Ok(b"AB".to_vec()));
        assert_eq!(decode(""), Ok(Vec::new()));
    }
}
