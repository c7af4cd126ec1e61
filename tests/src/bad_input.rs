//! Bad tokens for the bad-input matrices (`tests/bad_input_*.rs`), built
//! offline from genuine ones: attenuated, forged, malformed and oversized.

use tally_token::{KeyId, Limits, Macaroon, RootKey, Signature, TallyId};

/// `token` with `caveats` appended (anyone holding a token may).
pub fn attenuate(token: &str, caveats: &[&str]) -> String {
    let mut m = Macaroon::from_text(token, &Limits::default()).expect("a genuine token");
    for c in caveats {
        m.add_first_party(c.as_bytes());
    }
    m.to_text()
}

/// `token` with one signature bit flipped: well-formed, but a forgery.
pub fn forge(token: &str) -> String {
    let m = Macaroon::from_text(token, &Limits::default()).expect("a genuine token");
    let mut sig = *m.signature().as_bytes();
    sig[31] ^= 1;
    Macaroon::from_parts(None, m.identifier().to_vec(), m.caveats().to_vec(), Signature::from_bytes(sig)).to_text()
}

/// An operator-looking token with `identifier`, signed under a root key the
/// authority never had.
pub fn stranger(identifier: Vec<u8>) -> String {
    let mut m = Macaroon::mint(&RootKey::from_bytes([7; 32]), identifier, None);
    m.add_first_party("role = operator");
    m.to_text()
}

/// The key id in a Tally token's identifier.
pub fn key_id_of(token: &str) -> KeyId {
    let m = Macaroon::from_text(token, &Limits::default()).expect("a genuine token");
    TallyId::decode(m.identifier()).expect("a Tally identifier").key_id
}

/// The hex family id in a Tally token's identifier.
pub fn family_of(token: &str) -> String {
    let m = Macaroon::from_text(token, &Limits::default()).expect("a genuine token");
    TallyId::decode(m.identifier()).expect("a Tally identifier").family.to_hex()
}

/// Malformed and oversized bundles made from a genuine token, each refused
/// before any cryptography: (name, text).
pub fn bad_bundles(genuine: &str) -> Vec<(&'static str, String)> {
    let body = &genuine[4..];
    let field = format!("resource = {}", "a".repeat(2000));
    vec![
        ("empty", String::new()),
        ("prefix only", "tly_".into()),
        ("blank", "   ".into()),
        ("garbage", "tly_garbage!!".into()),
        ("not base64", format!("tly_{}*{}", &body[..10], &body[11..])),
        ("truncated", genuine[..genuine.len() - 12].into()),
        ("one character short", genuine[..genuine.len() - 1].into()),
        ("bad trailing bits", format!("{}{}", &genuine[..genuine.len() - 1], last_with_trailing_bits(genuine))),
        ("V2 version byte changed", format!("tly_B{}", &body[1..])),
        ("empty bundle parts", ",".into()),
        ("trailing comma", format!("{genuine},")),
        ("17 discharges", std::iter::repeat_n(genuine, 18).collect::<Vec<_>>().join(",")),
        ("200 caveats", attenuate(genuine, &["action in read"; 200])),
        ("over 16 KiB", attenuate(genuine, &[field.as_str(); 9])),
        ("one 3000-byte caveat", attenuate(genuine, &[format!("resource = {}", "a".repeat(3000)).as_str()])),
        ("100 KB of base64", format!("tly_{}", "A".repeat(100_000))),
    ]
}

/// A last character for `text` that sets the bits base64 leaves unused at
/// its end (or is not base64 at all when none are unused).
fn last_with_trailing_bits(text: &str) -> char {
    // A body of 4n+2 characters leaves 4 bits of its last unused, 4n+3 leaves 2.
    match (text.len() - 4) % 4 {
        2 | 3 => 'B',
        _ => '*',
    }
}

/// What a row of a bad-input matrix must get back.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// This error code.
    Err(tonic::Code),
    /// OK, with a reply whose summary contains this text.
    Ok(&'static str),
}
