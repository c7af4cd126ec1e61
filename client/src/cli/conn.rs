//! Connecting to the authority and verifiers named by the global options
//! (over TLS for `https://` URLs), and turning SDK errors into messages that
//! say what to do next.

use std::io::Read;
use std::path::Path;

use tally_client::{AuthorityClient, Error, VerifierClient};
use tally_proto::tls;
use tonic::transport::ClientTlsConfig;

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
    let identity = match (&g.tls_client_cert, &g.tls_client_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => {
            return Err(CliError::usage(
                "--tls-client-cert and --tls-client-key (TALLY_TLS_CLIENT_CERT, TALLY_TLS_CLIENT_KEY) go together",
            ));
        }
    };
    let ca = Ca { url: &g.authority, flag: "--authority", ca_flag: "--authority-ca", env: "TALLY_AUTHORITY_CA" };
    let client = match ca.config(g.authority_ca.as_deref(), identity)? {
        None => AuthorityClient::new(&g.authority),
        Some(tls) => AuthorityClient::with_tls(&g.authority, tls),
    };
    client.map_err(|e| CliError::usage(format!("--authority: {e}")))
}

pub(super) fn verifier(g: &Global) -> Result<VerifierClient, CliError> {
    let ca = Ca { url: &g.verifier, flag: "--verifier", ca_flag: "--verifier-ca", env: "TALLY_VERIFIER_CA" };
    let client = match ca.config(g.verifier_ca.as_deref(), None)? {
        None => VerifierClient::new(&g.verifier),
        Some(tls) => VerifierClient::with_tls(&g.verifier, tls),
    };
    client.map_err(|e| CliError::usage(format!("--verifier: {e}")))
}

/// A server URL and the flags that name it and its CA, for messages.
struct Ca<'a> {
    url: &'a str,
    flag: &'static str,
    ca_flag: &'static str,
    env: &'static str,
}

impl Ca<'_> {
    /// TLS for the URL: `https://` needs a CA file, a CA file needs `https://`.
    fn config(&self, ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Option<ClientTlsConfig>, CliError> {
        let https = self.url.starts_with("https://");
        let Ca { flag, ca_flag, env, .. } = self;
        match ca {
            None if https => Err(CliError::usage(format!("an https:// {flag} needs {ca_flag} FILE (or {env})"))),
            None if identity.is_some() => {
                Err(CliError::usage(format!("a client certificate needs an https:// {flag} and {ca_flag}")))
            }
            None => Ok(None),
            Some(_) if !https => Err(CliError::usage(format!("{ca_flag} needs an https:// {flag}, not {}", self.url))),
            Some(ca) => tls::client_config(ca, identity).map(Some).map_err(|e| CliError::usage(e.to_string())),
        }
    }
}

/// The message and exit code for an SDK error from `server`.
pub(super) fn failed(g: &Global, server: Server, e: Error) -> CliError {
    let (name, url, flag, env) = match server {
        Server::Authority => ("authority", &g.authority, "--authority", "TALLY_AUTHORITY_URL"),
        Server::Verifier => ("verifier", &g.verifier, "--verifier", "TALLY_VERIFIER_URL"),
    };
    // A refused TLS handshake often shows only as a closed connection; over
    // https, say which flags matter.
    let tls_hint = match server {
        _ if !url.starts_with("https://") => "",
        Server::Authority => "; over TLS check --authority-ca, --tls-client-cert and --tls-client-key",
        Server::Verifier => "; over TLS check --verifier-ca",
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
            message: format!("cannot reach the {name} at {url}: {m}{tls_hint} (is it running? set {flag} or {env})"),
        },
        Error::Timeout(d) => CliError {
            code: EXIT_UNAVAILABLE,
            message: format!("the {name} at {url} did not answer within {d:?}; try again"),
        },
        other => CliError { code: EXIT_UNAVAILABLE, message: format!("the {name} at {url} failed: {other}{tls_hint}") },
    }
}
