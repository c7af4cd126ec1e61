//! The verifier's answer to a check, in its own terms (the wire's
//! `tally.v1.CheckResponse` is built from it in convert.rs).

use std::sync::Arc;

use tally_token::{FamilyId, Reason};

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The cache held the token's whole chain (or the token memo did).
    Cache,
    /// The cache held an ancestor, whose chain was continued here.
    Descendant,
    /// The authority was asked (or could not be: `authority unavailable`).
    Authority,
    /// A denial the authority gave lately for the same text.
    NegativeCache,
    /// The deny lists, or a bundle that is not a Tally token.
    Local,
}

/// The answer. Built without copying on the cache paths: the org is shared
/// with the cache entry, the family is its id (hex only on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    pub reason: Reason,
    pub detail: String,
    pub failed_caveat: String,
    pub org: Arc<str>,
    pub subject: String,
    pub family: Option<FamilyId>,
    pub source: Source,
    /// The token's expiry (unix ms); 0: none.
    pub expires_at_ms: i64,
}

impl Outcome {
    pub(crate) fn deny(reason: Reason, detail: impl Into<String>, source: Source) -> Self {
        Self {
            allowed: false,
            reason,
            detail: detail.into(),
            failed_caveat: String::new(),
            org: Arc::from(""),
            subject: String::new(),
            family: None,
            source,
            expires_at_ms: 0,
        }
    }
}
