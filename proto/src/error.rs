//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// What can go wrong in the servers' shared plumbing: a TLS file (every
/// such variant names the file, never quotes it) or telemetry setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not PEM of the expected kind, or holds none.
    #[error("{what} {} is not usable PEM: {reason}", path.display())]
    Pem { what: &'static str, path: PathBuf, reason: String },
    /// rustls refused the combination: a key that does not belong to the
    /// certificate, an unsupported key type, a CA that is no CA.
    #[error("{what}: {reason}")]
    Rejected { what: String, reason: String },
    /// The trace exporter or the log subscriber could not be installed.
    #[error("telemetry: {0}")]
    Telemetry(String),
}
