//! The one error type of the token crate.
//!
//! Messages name what went wrong and where, never the bytes of a signature or
//! a key: errors end up in logs and gRPC statuses.

use crate::KeyId;

/// Everything that can go wrong while decoding, building or verifying tokens,
/// parsing a caveat, or bounding a check's request fields.
///
/// Variants are precise so callers (and tests) can match them; a caveat that
/// does not hold is not an error of this type but a [`crate::Denial`] (whose
/// kind carries this error when the caveat does not parse). Every variant
/// holds static text and numbers, so the type is `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is empty (or only whitespace).
    #[error("empty token")]
    Empty,
    /// The text is neither a `tly_` token nor base64 of any flavour.
    #[error("invalid base64 in token text")]
    Base64,
    /// The binary form is not a well-formed libmacaroons V2 macaroon.
    #[error("malformed macaroon: {0}")]
    Malformed(&'static str),
    /// The binary form starts with a version byte other than V2.
    #[error("unsupported macaroon format (version byte {0:#04x}); only libmacaroons V2 is accepted")]
    UnsupportedVersion(u8),
    /// A size limit was exceeded; checked before any cryptography.
    #[error("token exceeds limit: {what} is {actual}, at most {max} allowed")]
    TooLarge {
        /// Which limit.
        what: &'static str,
        /// The offending value.
        actual: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A bundle (`TOKEN,DISCHARGE,…`) has an empty part.
    #[error("bundle part {0} is empty")]
    EmptyBundlePart(usize),
    /// The identifier is not in Tally's layout (foreign macaroon) where a key id is needed.
    #[error("identifier is not a Tally identifier: {0}")]
    ForeignIdentifier(&'static str),
    /// No root key with this id.
    #[error("unknown key id {0}")]
    UnknownKey(KeyId),
    /// The root key with this id was retired.
    #[error("key id {0} is retired")]
    RetiredKey(KeyId),
    /// The HMAC chain does not reproduce the signature.
    #[error("signature mismatch")]
    BadSignature,
    /// A third-party caveat has no discharge with its caveat id.
    #[error("no discharge for third-party caveat {0}")]
    MissingDischarge(usize),
    /// A discharge was supplied that no third-party caveat asks for (or one asked twice).
    #[error("discharge {0} is not used by any third-party caveat")]
    UnusedDischarge(usize),
    /// A discharge's chain or its binding to the root token does not hold.
    #[error("discharge for third-party caveat {0} is invalid or not bound to this token")]
    BadDischarge(usize),
    /// The verification id of a third-party caveat could not be decrypted.
    #[error("third-party caveat {0} cannot be decrypted")]
    BadVerificationId(usize),
    /// Third-party caveats nest deeper than allowed.
    #[error("discharges nest deeper than {0} levels")]
    TooDeep(usize),
    /// A key or other hex input is not what was expected.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A request field of a check is longer than its bound; checked before
    /// anything else is done with the field.
    #[error("request field {field} is {len} bytes, at most {max} allowed")]
    FieldTooLong {
        /// Which field (`action`, `resource`, `service`, `subject`, `client_ip`, `org`).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The client IP of a check is not an IP address.
    #[error("request field client_ip is not an IP address")]
    BadClientIp,
    /// The org of a check is not an org name.
    #[error("request field org is not an org name (1 to 64 of a-z, 0-9, '-', '_', '.')")]
    BadOrg,
    /// A caveat text is not a predicate of the caveat language (unknown key,
    /// wrong operator, malformed value). The message is the reason alone:
    /// callers quote the caveat beside it, as caveats are not secret.
    #[error("{0}")]
    InvalidCaveat(&'static str),
}
