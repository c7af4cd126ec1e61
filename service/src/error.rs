//! The crate's one error type.

/// What can go wrong in the daemons' shared plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A TLS file cannot be used (the error names it).
    #[error(transparent)]
    Tls(#[from] tally_proto::Error),
    /// The trace exporter or the log subscriber could not be installed.
    #[error("telemetry: {0}")]
    Telemetry(String),
}
