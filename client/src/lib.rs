//! Tally's Rust SDK: typed clients of the authority ([`AuthorityClient`])
//! and of a regional verifier ([`VerifierClient`]), and a tower layer
//! ([`TallyAuthLayer`]) that admits a request to an HTTP or gRPC service only
//! when the local verifier allows its bearer token.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tally_client::Error> {
//! use tally_client::{Check, VerifierClient};
//! let verifier = VerifierClient::new("http://127.0.0.1:7800")?;
//! let decision = verifier
//!     .check(&Check { bundle: "tly_…".into(), action: Some("read".into()), ..Check::default() })
//!     .await?;
//! println!("allowed: {} ({})", decision.allowed, decision.reason);
//! # Ok(()) }
//! ```

mod authority;
mod channel;
mod convert;
mod error;
mod layer;
mod types;
mod verifier;

pub use authority::{AuthorityClient, DEFAULT_TIMEOUT, Subscription};
pub use channel::CONNECT_TIMEOUT;
pub use error::Error;
pub use layer::{ActionMap, AuthBody, Authorized, GrpcActions, HttpActions, Refusal, TallyAuth, TallyAuthLayer};
pub use types::{
    AuditEntry, AuditQuery, AuthorityStatus, Check, Decision, Event, Introspection, Key, MintSpec, Minted, Org,
    Position, Reason, RevokeTarget, Revoked, Source, VerifierStatus,
};
pub use verifier::{DEFAULT_CHECK_TIMEOUT, VerifierClient};
