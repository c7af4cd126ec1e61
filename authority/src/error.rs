//! The authority's one error type. The gRPC adapter maps it to a status in
//! one place (`grpc/status.rs`); messages never carry secrets or database detail.

/// What can go wrong serving an authority request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No credentials, or credentials that do not verify.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Valid credentials that do not allow this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The named org, key or token does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The org (or similar) exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request conflicts with the current state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The authority cannot serve now (shutting down, overloaded).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bounded resource is full (the revocation stream subscriber cap).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The store's database failed (its own error, whose type only the store
    /// names). The detail goes to the log, not to the caller.
    #[error("storage error: {0}")]
    Storage(#[source] BoxError),
    /// The store's database cannot be reached now (connection lost, server
    /// restarting, busy): worth a retry. The detail goes to the log.
    #[error("database unavailable: {0}")]
    StorageUnavailable(#[source] BoxError),
    /// The store's schema migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[source] BoxError),
    /// A sealed root key does not open: wrong key-encryption key, or tampering.
    #[error("cannot decrypt root key {0}: wrong key-encryption key?")]
    WrongKek(u64),
    /// A fresh root key could not be sealed under the key-encryption key.
    #[error("cannot seal root key {0}")]
    Seal(u64),
    /// Stored data is not what the authority wrote (the detail says where).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The operating system gave no random bytes.
    #[error("no randomness: {0}")]
    Randomness(getrandom::Error),
    /// Startup configuration is unusable: a database or KEK file missing,
    /// in the way, malformed or in use.
    #[error("{0}")]
    Config(String),
    /// The gRPC server failed to start or to run (`what` says which part).
    #[error("{what}: {source}")]
    Serve {
        what: &'static str,
        #[source]
        source: BoxError,
    },
}

/// A foreign error kept whole for the log, without naming its type here.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl From<getrandom::Error> for Error {
    fn from(e: getrandom::Error) -> Self {
        Error::Randomness(e)
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
