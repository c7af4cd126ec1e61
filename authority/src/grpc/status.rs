//! The one place where authority errors become gRPC statuses. Storage and
//! configuration detail goes to the log, never to the caller.

use tonic::{Code, Status};

use crate::error::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            // Worth a retry: the call changed nothing.
            e @ Error::Randomness(_) => Status::unavailable(e.to_string()),
            e @ Error::StorageUnavailable(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Status::unavailable("the authority's database is unavailable; retry")
            }
            other @ (Error::Storage(_)
            | Error::Migrate(_)
            | Error::WrongKek(_)
            | Error::Seal(_)
            | Error::Corrupt(_)
            | Error::Config(_)
            | Error::Serve { .. }) => {
                tracing::error!(error = %other, "internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}
