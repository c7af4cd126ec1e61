//! Tally's authority: the one service that holds root keys and the truth about
//! revocation. `Authority` is the domain, composed of the key ring (`keys`),
//! the authorizer (`authorizer`) and the revocation log (`log`) over a store
//! (`store`); `grpc` adapts it to `tally.v1`; `server::serve` runs it on a
//! bound listener; `run` is the daemon's command line (`Args`).

mod admission;
mod args;
mod authority;
mod authorizer;
mod clock;
mod error;
mod grpc;
mod keys;
mod log;
mod metrics;
mod registry;
mod revocation;
mod run;
mod scrape;
mod server;
mod store;

pub use admission::{
    DEFAULT_MAX_ANONYMOUS, DEFAULT_MAX_ANONYMOUS_PER_CLIENT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_STREAMS_PER_CONNECTION,
    DEFAULT_READ_TIMEOUT, DEFAULT_RPC_TIMEOUT, Limits, MAX_MESSAGE_BYTES,
};
pub use args::Args;
pub use authority::{
    AuditQuery, Authority, AuthorityStatus, DEFAULT_ANONYMOUS_REVOKES_PER_SECOND, DEFAULT_AUDIT_LIMIT,
    DEFAULT_AUDIT_RETENTION, DEFAULT_MAX_BRANCH_REVOCATIONS, DEFAULT_MAX_SUBSCRIBERS, DEFAULT_REGISTRY_REMEMBERED,
    MAX_AUDIT_LIMIT, MAX_REGISTRY_REMEMBERED, MintSpec, Minted, Pruned, Reason, RevokeTarget, Settings, Verdict,
    default_replica_id,
};
pub use authorizer::{Caller, Role};
pub use clock::{Clock, SystemClock, unix_ms};
pub use error::{Error, Result};
pub use grpc::AuthorityService;
pub use keys::{Kek, KeyInfo, OrgInfo, SYSTEM_ORG};
pub use log::{Position, StreamEvent};
pub use revocation::{LogEvent, LogHead, Target, next_digest};
pub use run::run;
pub use server::{DEFAULT_KEEPALIVE, DEFAULT_PRUNE_INTERVAL, ServeOptions, serve, serve_with};
pub use store::{AuditEntry, Db};
