//! The verifier's one error type.

/// What can go wrong in the verifier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (bad bundle, bad client IP…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Startup configuration is unusable.
    #[error("{0}")]
    Config(String),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            Error::Config(m) => {
                tracing::error!(error = %m, "configuration error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
