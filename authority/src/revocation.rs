//! The revocation log's entries: what is revoked, at which seq, and the
//! running digest that ties each entry to the ones before it (so a verifier
//! can tell a log that forked, e.g. after a restore from backup, from the one
//! it followed); the log's head; the set of revoked ids. Plain data, shared
//! by the log (`log/`) and the store (`store/`).

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use tally_token::KeyId;

/// What one log entry revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A whole token family (nonce).
    Family([u8; 16]),
    /// One branch (hash of a chain signature) of a family: the family is
    /// carried so verifiers can find the cache entries it may concern.
    Branch { family: [u8; 16], branch: [u8; 16] },
    /// Every token under a root key.
    Key(KeyId),
}

impl Target {
    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Family(_) => "family",
            Target::Branch { .. } => "branch",
            Target::Key(_) => "key",
        }
    }

    /// The id a token check looks for (family nonce or branch hash); none for keys.
    pub fn revoked_id(&self) -> Option<[u8; 16]> {
        match self {
            Target::Family(id) | Target::Branch { branch: id, .. } => Some(*id),
            Target::Key(_) => None,
        }
    }

    /// The `target` column.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Target::Family(b) => b.to_vec(),
            Target::Branch { family, branch } => [family.as_slice(), branch.as_slice()].concat(),
            Target::Key(k) => k.0.to_be_bytes().to_vec(),
        }
    }

    /// Back from the two columns; `None` for rows that do not fit.
    pub fn from_columns(kind: &str, bytes: &[u8]) -> Option<Self> {
        match kind {
            "family" => Some(Target::Family(bytes.try_into().ok()?)),
            "branch" if bytes.len() == 32 => {
                Some(Target::Branch { family: bytes[..16].try_into().ok()?, branch: bytes[16..].try_into().ok()? })
            }
            "key" => Some(Target::Key(KeyId(u64::from_be_bytes(bytes.try_into().ok()?)))),
            _ => None,
        }
    }
}

/// One committed revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Position in the log.
    pub seq: u64,
    /// What it revokes.
    pub target: Target,
    /// Running digest up to and including this entry.
    pub digest: [u8; 16],
    /// After this instant (unix ms) the target cannot be valid anyway.
    pub expires_at: Option<i64>,
}

/// `digest(n) = SHA-256("tally-log-v1" ‖ digest(n-1) ‖ seq ‖ kind ‖ target)[..16]`.
pub fn next_digest(prev: &[u8; 16], seq: u64, target: &Target) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"tally-log-v1\0");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(target.kind().as_bytes());
    h.update(target.bytes());
    h.finalize()[..16].try_into().expect("digest is 32 bytes")
}

/// The head of the revocation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogHead {
    /// Last assigned seq (0: empty log).
    pub seq: u64,
    /// Running digest after that seq.
    pub digest: [u8; 16],
    /// Oldest seq still in the log (head + 1 when everything was pruned).
    pub retained_from: u64,
}

/// The revoked family and branch ids (16 bytes each: family nonces and
/// branch hashes alike, which cannot collide in practice; key revocations
/// live in the key ring as retirement). Every authenticated call looks each
/// revocation id of its bearer up here (a token of n caveats has n + 2), so
/// it hashes with foldhash, seeded per process, not SipHash: the ids are
/// random nonces and SHA-256 outputs. Measured with callgrind on the
/// criterion Revoke bench: 1,380 instructions to look up a bearer's ids with
/// SipHash, 300 with foldhash.
pub type RevokedIds = HashSet<[u8; 16], foldhash::fast::RandomState>;
