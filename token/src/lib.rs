//! Tally's macaroon library: the libmacaroons V2 format, the HMAC-SHA256
//! chain, third-party caveats with bound discharges, and Tally's small closed
//! caveat language. Pure: no I/O, no async, no clock and no randomness of its
//! own (callers pass in the time and nonces), so it can be fuzzed and
//! property-tested alone. Also the verdicts ([`Reason`]) and the rules of
//! Tally's HTTP fronts ([`http_auth`]), pure as well, so the SDK's layer and
//! the verifier's Envoy adapter share one copy.
//!
//! Mint, serialise, attenuate, verify, evaluate:
//!
//! ```
//! use std::time::SystemTime;
//! use tally_token::{Bundle, Context, KeyId, Limits, Macaroon, RootKey, TallyId, evaluate, verify_with_key};
//!
//! let root_key = RootKey::from_bytes([42; 32]);
//! let id = TallyId::new(KeyId(1), [7; 16]); // use 16 random bytes
//! let mut token = Macaroon::mint(&root_key, id.encode(), Some("https://tally.example".into()));
//! token.add_first_party("org = acme");
//! let text = token.to_text(); // "tly_…"
//!
//! // Anyone holding the token can attenuate it, offline.
//! let mut narrower = Macaroon::from_text(&text, &Limits::default()).unwrap();
//! narrower.add_first_party("action in read");
//!
//! // The authority verifies the chain, then the caveats are evaluated per request.
//! let bundle = Bundle::single(narrower);
//! let verified = verify_with_key(&bundle, &root_key.derive(), &Limits::default()).unwrap();
//! let mut request = Context::at(SystemTime::now());
//! request.action = Some("read");
//! let claims = evaluate(verified.first_party.iter().copied(), &request).unwrap();
//! assert_eq!(claims.org, Some("acme"));
//! request.action = Some("write");
//! assert!(evaluate(verified.first_party.iter().copied(), &request).is_err());
//! ```

mod base64url;
mod cidr;
mod compiled;
mod crypto;
mod error;
mod evaluate;
mod format;
mod glob;
pub mod http_auth;
mod identifier;
mod limits;
mod macaroon;
mod predicate;
mod prefix;
mod reason;
mod request;
mod text;
mod verify;
mod view;

pub use cidr::Cidr;
pub use compiled::CompiledCaveats;
pub use crypto::{DerivedKey, KEY_LEN, RootKey, SECRETBOX_NONCE_LEN, Signature, VID_LEN, bind_signature};
pub use error::Error;
pub use evaluate::{Claims, Context, DEFAULT_SKEW, Denial, DenialKind, MAX_GLOB_WEIGHT, MAX_LIST_ITEMS, evaluate};
#[doc(hidden)]
pub use glob::glob_match_steps;
pub use glob::{glob_match, glob_weight};
pub use identifier::{FamilyId, IDENTIFIER_VERSION, KeyId, NONCE_LEN, TallyId};
pub use limits::{
    DEFAULT_MAX_CAVEATS, DEFAULT_MAX_DEPTH, DEFAULT_MAX_DISCHARGES, DEFAULT_MAX_FIELD_BYTES, DEFAULT_MAX_TOKEN_BYTES,
    Limits,
};
pub use macaroon::{Caveat, Macaroon, chain_step, chain_step_ref, continue_chain};
pub use predicate::{Predicate, PredicateRef, format_rfc3339};
pub use prefix::{BRANCH_ID_LEN, PrefixKey, PrefixKeys, RevocationId, prefix_key, prefix_keys, revocation_ids};
pub use reason::Reason;
pub use request::{
    DEFAULT_MAX_ACTION_BYTES, DEFAULT_MAX_ORG_BYTES, DEFAULT_MAX_RESOURCE_BYTES, DEFAULT_MAX_SERVICE_BYTES,
    DEFAULT_MAX_SUBJECT_BYTES, FieldLimits, MAX_CLIENT_IP_BYTES, MAX_ORG_NAME_BYTES, RequestFields, is_org_name,
};
/// The inline vector of [`MacaroonRef::caveats`].
pub use smallvec::SmallVec;
pub use text::{Bundle, TEXT_PREFIX};
pub use verify::{RootKeyProvider, Verified, verify, verify_view, verify_view_with_key, verify_with_key};
pub use view::{BundleRef, CaveatRef, DecodedBundle, MacaroonRef};
