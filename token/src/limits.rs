//! Size limits, enforced while decoding and before any cryptography, so hostile
//! input costs at most a bounded amount of memory and time.

use crate::Error;

/// Bounds on what the decoder and the verifier accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest binary macaroon, in bytes.
    pub max_token_bytes: usize,
    /// Most caveats (first- and third-party) in one macaroon.
    pub max_caveats: usize,
    /// Largest single field (location, identifier, caveat id, verification id).
    pub max_field_bytes: usize,
    /// Most discharges in one bundle.
    pub max_discharges: usize,
    /// Deepest nesting of third-party caveats inside discharges.
    pub max_depth: usize,
}

/// Default largest binary macaroon: ample for hundreds of short caveats.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Default caveat count per macaroon.
pub const DEFAULT_MAX_CAVEATS: usize = 128;
/// Default field size.
pub const DEFAULT_MAX_FIELD_BYTES: usize = 2048;
/// Default discharge count per bundle.
pub const DEFAULT_MAX_DISCHARGES: usize = 16;
/// Default discharge nesting depth.
pub const DEFAULT_MAX_DEPTH: usize = 4;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            max_caveats: DEFAULT_MAX_CAVEATS,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
            max_discharges: DEFAULT_MAX_DISCHARGES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

impl Limits {
    /// Largest accepted token text: the base64 of the largest binary plus a prefix.
    pub fn max_text_bytes(&self) -> usize {
        self.max_token_bytes.div_ceil(3) * 4 + 16
    }

    /// Largest accepted bundle text.
    pub fn max_bundle_bytes(&self) -> usize {
        (self.max_text_bytes() + 1) * (self.max_discharges + 1)
    }

    pub(crate) fn check(what: &'static str, actual: usize, max: usize) -> Result<(), Error> {
        if actual > max {
            return Err(Error::TooLarge { what, actual, max });
        }
        Ok(())
    }
}
