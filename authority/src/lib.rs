//! Tally's authority: the one service that holds root keys and the truth about
//! revocation. `Authority` is the domain; `grpc` adapts it to `tally.v1`;
//! `server::serve` runs it on a bound listener; `run` is the daemon's
//! command line (`Args`).

mod admission;
mod args;
mod audit;
mod auth;
mod authority;
mod bearers;
mod clock;
mod error;
mod grpc;
mod kek;
mod log;
mod metrics;
mod registry;
mod run;
mod scrape;
mod server;
mod state;
mod store;
mod stream;
mod writer;

pub use admission::{
    DEFAULT_MAX_ANONYMOUS, DEFAULT_MAX_ANONYMOUS_PER_CLIENT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_STREAMS_PER_CONNECTION,
    DEFAULT_READ_TIMEOUT, DEFAULT_RPC_TIMEOUT, Limits, MAX_MESSAGE_BYTES,
};
pub use args::Args;
pub use audit::{AuditEntry, AuditQuery, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};
pub use auth::{Caller, Role};
pub use authority::{
    Authority, DEFAULT_ANONYMOUS_REVOKES_PER_SECOND, DEFAULT_AUDIT_RETENTION, DEFAULT_MAX_BRANCH_REVOCATIONS,
    DEFAULT_MAX_SUBSCRIBERS, DEFAULT_REGISTRY_REMEMBERED, KeyInfo, MAX_REGISTRY_REMEMBERED, MintSpec, Minted, OrgInfo,
    Pruned, Reason, RevokeTarget, SYSTEM_ORG, Settings, Verdict,
};
pub use clock::{Clock, SystemClock, unix_ms};
pub use error::{Error, Result};
pub use grpc::AuthorityService;
pub use kek::Kek;
pub use log::{LogEvent, Target, next_digest};
pub use run::run;
pub use server::{DEFAULT_KEEPALIVE, DEFAULT_PRUNE_INTERVAL, ServeOptions, serve, serve_with};
pub use state::LogHead;
pub use stream::{Position, StreamEvent};
