//! The SDK's one error type. gRPC statuses are sorted into the kinds a caller
//! acts on; messages carry the server's words, never a token.

use std::time::Duration;

/// What went wrong talking to an authority or a verifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The URL cannot be used as a gRPC endpoint.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The bearer token cannot travel in a header (the token itself is not repeated).
    #[error("the token is not valid header text: {0}")]
    InvalidToken(&'static str),
    /// The server did not accept the caller's token.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The token is valid but does not allow this call.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The server rejected the request's contents.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The server cannot be reached or is not serving.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No answer within the client's deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Any other status (internal errors and the like).
    #[error("{code:?}: {message}")]
    Rpc { code: tonic::Code, message: String },
    /// The server ended a stream the client expected to go on.
    #[error("the authority ended the stream")]
    StreamEnded,
}

impl Error {
    /// The gRPC code this error stands for (`Unavailable` for local transport trouble).
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::InvalidUrl { .. } | Error::InvalidToken(_) | Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) | Error::StreamEnded => Code::Unavailable,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Rpc { code, .. } => *code,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let message = message(&s);
        match s.code() {
            Code::Unauthenticated => Error::Unauthenticated(message),
            Code::PermissionDenied => Error::PermissionDenied(message),
            Code::InvalidArgument | Code::OutOfRange => Error::InvalidArgument(message),
            Code::NotFound => Error::NotFound(message),
            Code::AlreadyExists => Error::AlreadyExists(message),
            Code::FailedPrecondition => Error::FailedPrecondition(message),
            Code::Unavailable => Error::Unavailable(message),
            code => Error::Rpc { code, message },
        }
    }
}

/// The status message, with the transport's cause when the status came from
/// the client side (a refused connection says only "tcp connect error" else).
fn message(s: &tonic::Status) -> String {
    let mut text = s.message().to_owned();
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text = if text.is_empty() { part } else { format!("{text}: {part}") };
        }
        source = e.source();
    }
    if text.is_empty() { format!("{:?}", s.code()) } else { text }
}
