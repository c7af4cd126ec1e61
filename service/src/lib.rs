//! What Tally's daemons (the authority and the verifier) share beyond the
//! API: the tokio runtime and `main` ([`runtime`]), the shutdown signal
//! ([`signal`]), a daemon's start ([`start`]), logging and traces ([`telemetry`]), Prometheus metrics and
//! their bounded HTTP endpoint ([`metrics`]), the TLS accept loop ([`tls`])
//! and the parsers their flags share ([`flags`]). The SDK depends on none of
//! it: `tally-proto` holds what clients need.

mod error;
pub mod flags;
pub mod metrics;
pub mod runtime;
pub mod signal;
mod start;
pub mod telemetry;
pub mod tls;

pub use error::Error;
pub use runtime::run_main;
pub use start::start;
