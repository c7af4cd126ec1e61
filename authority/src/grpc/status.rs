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
            other => {
                tracing::error!(error = %other, "internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}
