//! Prefix keys the slow way: the `sha2` crate over the domain block and the
//! canonical prefix encoding written out field by field (see
//! `token/src/prefix.rs`), to check the library's own SHA-256 with its kept
//! block states and its hashing of a decoded token's bytes in place.

use sha2::{Digest, Sha256};
use tally_token::{Caveat, PrefixKey};

/// The domain tag, zero-padded to one 64-byte block.
const DOMAIN: &[u8] = b"tally-prefix-v2";

fn field(out: &mut Vec<u8>, ty: u8, data: &[u8]) {
    out.push(ty);
    let mut n = data.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(data);
}

/// The key of `identifier` with exactly `caveats` (locations left out).
pub fn key(identifier: &[u8], caveats: &[Caveat]) -> PrefixKey {
    let mut block = [0u8; 64];
    block[..DOMAIN.len()].copy_from_slice(DOMAIN);
    let mut bytes = block.to_vec();
    field(&mut bytes, 2, identifier);
    bytes.push(0);
    for c in caveats {
        field(&mut bytes, 2, &c.id);
        if let Some(vid) = &c.vid {
            field(&mut bytes, 4, vid);
        }
        bytes.push(0);
    }
    PrefixKey(Sha256::digest(&bytes).into())
}
