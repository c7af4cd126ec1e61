//! The authority's answer to Verify, in the verifier's terms (read from the
//! wire's `tally.v1.VerifyResponse` in convert.rs).

use std::sync::Arc;

use tally_token::{FamilyId, Reason, Signature};

/// What the authority said of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Genuine and not revoked (caveats aside: they are evaluated here).
    Verified(Verified),
    /// Not good: why, and the family when the authority could tell it.
    Refused { reason: Reason, detail: String, family: Option<FamilyId> },
}

/// What a valid Verify answer vouches for (`Debug` redacts the signatures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub org: Arc<str>,
    pub family: Option<FamilyId>,
    /// The token's expiry (unix ms) as the authority reads it; `None`: none.
    pub expires_at_ms: Option<i64>,
    /// The epoch of the authority's log the answer was given in.
    pub epoch: String,
    /// Caveats before the first signature of `chain` (the minted length).
    pub chain_from: usize,
    /// The token's chain signatures from `chain_from` caveats on, the last
    /// being the token's own; empty when the authority handed out none (its
    /// own API tokens) or a malformed one: nothing is cached then.
    pub chain: Vec<Signature>,
}
