//! Why a token was (not) accepted: the verdicts the authority and the
//! verifiers give, in Tally's own terms (the wire's `tally.v1.Reason` is
//! converted to and from this at each gRPC edge).

use std::fmt;

/// Why a token was (not) accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Ok,
    Malformed,
    Forged,
    UnknownKey,
    RetiredKey,
    Revoked,
    Expired,
    NotYetValid,
    CaveatFailed,
    DischargeInvalid,
    AuthorityUnavailable,
    /// A genuine token of another org than the checking service's.
    WrongOrg,
    /// A reason this side does not know (a newer peer).
    Unspecified,
}

impl Reason {
    /// Lowercase snake-case name: what the CLI prints and `x-tally-reason` carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Malformed => "malformed",
            Reason::Forged => "forged",
            Reason::UnknownKey => "unknown_key",
            Reason::RetiredKey => "retired_key",
            Reason::Revoked => "revoked",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::CaveatFailed => "caveat_failed",
            Reason::DischargeInvalid => "discharge_invalid",
            Reason::AuthorityUnavailable => "authority_unavailable",
            Reason::WrongOrg => "wrong_org",
            Reason::Unspecified => "unspecified",
        }
    }

    /// The token itself is no good (as opposed to "good, but not for this
    /// request" or "cannot tell right now"): HTTP's 401 rather than 403.
    pub fn is_invalid_token(self) -> bool {
        matches!(
            self,
            Reason::Malformed
                | Reason::Forged
                | Reason::UnknownKey
                | Reason::RetiredKey
                | Reason::Revoked
                | Reason::Expired
                | Reason::NotYetValid
                | Reason::DischargeInvalid
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
