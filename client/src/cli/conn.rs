//! Connecting to the authority and verifiers named by the global options,
//! and turning SDK errors into messages that say what to do next.

use std::io::Read;

use tally_client::{AuthorityClient, Error, VerifierClient};

use super::{CliError, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_USAGE, Global};

/// Largest token file we read.
const MAX_TOKEN_FILE: u64 = 1 << 20;

/// Which server a failed call went to, for the advice in the message.
#[derive(Debug, Clone, Copy)]
pub(super) enum Server {
    Authority,
    Verifier,
}

/// An authority client with the token file's token, which this command needs.
pub(super) fn authority(g: &Global) -> Result<AuthorityClient, CliError> {
    let Some(path) = &g.token_file else {
        return Err(CliError::usage(
            "this command needs an operator token: pass --token-file FILE or set TALLY_TOKEN_FILE",
        ));
    };
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::usage(format!("cannot read token file {}: {e}", path.display())))?;
    let mut token = String::new();
    file.take(MAX_TOKEN_FILE)
        .read_to_string(&mut token)
        .map_err(|e| CliError::usage(format!("cannot read token file {}: {e}", path.display())))?;
    anonymous_authority(g)?
        .with_token(&token)
        .map_err(|e| CliError::usage(format!("token file {}: {e}", path.display())))
}

/// An authority client without a token (revoking a token one holds).
pub(super) fn anonymous_authority(g: &Global) -> Result<AuthorityClient, CliError> {
    AuthorityClient::new(&g.authority).map_err(|e| CliError::usage(format!("--authority: {e}")))
}

pub(super) fn verifier(g: &Global) -> Result<VerifierClient, CliError> {
    VerifierClient::new(&g.verifier).map_err(|e| CliError::usage(format!("--verifier: {e}")))
}

/// The message and exit code for an SDK error from `server`.
pub(super) fn failed(g: &Global, server: Server, e: Error) -> CliError {
    let (name, url, flag, env) = match server {
        Server::Authority => ("authority", &g.authority, "--authority", "TALLY_AUTHORITY_URL"),
        Server::Verifier => ("verifier", &g.verifier, "--verifier", "TALLY_VERIFIER_URL"),
    };
    let token_hint = match &g.token_file {
        Some(p) => format!("the token in {}", p.display()),
        None => "no token (pass --token-file FILE or set TALLY_TOKEN_FILE)".to_owned(),
    };
    match e {
        Error::Unauthenticated(m) => {
            CliError { code: EXIT_INVALID, message: format!("the {name} did not accept {token_hint}: {m}") }
        }
        Error::PermissionDenied(m) => CliError {
            code: EXIT_INVALID,
            message: format!(
                "permission denied: {m} (use a token with `role = operator` whose org and action caveats allow this)"
            ),
        },
        Error::InvalidArgument(_)
        | Error::NotFound(_)
        | Error::AlreadyExists(_)
        | Error::FailedPrecondition(_)
        | Error::InvalidUrl { .. }
        | Error::InvalidToken(_) => CliError { code: EXIT_USAGE, message: e.to_string() },
        Error::Unavailable(m) => CliError {
            code: EXIT_UNAVAILABLE,
            message: format!("cannot reach the {name} at {url}: {m} (is it running? set {flag} or {env})"),
        },
        Error::Timeout(d) => CliError {
            code: EXIT_UNAVAILABLE,
            message: format!("the {name} at {url} did not answer within {d:?}; try again"),
        },
        other => CliError { code: EXIT_UNAVAILABLE, message: format!("the {name} at {url} failed: {other}") },
    }
}
