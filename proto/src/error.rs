//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// A TLS file that cannot be used. Every variant names the file, never
/// quotes it.
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
}
