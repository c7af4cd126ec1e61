//! The verifier's one error type, and why a credential is refused.

use std::path::Path;

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

/// Why a token is not a verifier's credential, as far as the verifier can
/// tell without a root key: what its caveats say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    /// It does not parse as a token.
    #[error("it does not hold a token")]
    Malformed,
    /// No `role` caveat: the authority refuses such a token for every call.
    #[error("its token has no `role` caveat")]
    NoRole,
    /// A role other than `verifier` (an operator token, or one attenuated
    /// with a second role, which never holds): the roles found, each once.
    #[error("its token has {}, not `verifier` alone", roles(found))]
    WrongRole { found: Vec<String> },
}

impl TokenRefused {
    /// The startup (or reload) error for the token file at `file`: one line
    /// naming the file and what it holds, never the token. A `Config` error,
    /// as every unusable setting is (ext_authz maps the enum exhaustively).
    pub fn in_file(&self, file: &Path) -> Error {
        Error::Config(format!(
            "token file {}: {self}; a verifier runs only on a `role = verifier` token",
            file.display()
        ))
    }
}

/// Most characters of a role shown in a message (a role is one word, but of any length).
const ROLE_SHOWN: usize = 32;

fn roles(found: &[String]) -> String {
    let shown: Vec<String> = found
        .iter()
        .map(|r| match r.char_indices().nth(ROLE_SHOWN) {
            Some((cut, _)) => format!("`{}…`", &r[..cut]),
            None => format!("`{r}`"),
        })
        .collect();
    let noun = if shown.len() == 1 { "role" } else { "roles" };
    format!("{noun} {}", shown.join(" and "))
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
