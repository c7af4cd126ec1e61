//! Reading what the user points the CLI at: key files, token arguments
//! (`-` for stdin), caveats. Errors name the file, never its contents.

use std::io::Read;
use std::path::Path;

use tally_token::{Bundle, Limits, Macaroon, Predicate, RootKey};

use super::CliError;

/// Largest key file or stdin token we read; anything bigger is not ours.
const MAX_INPUT_BYTES: u64 = 1 << 20;

/// Reads a root key file: 64 hex characters (surrounding whitespace ignored).
pub(super) fn root_key_file(path: &Path) -> Result<RootKey, CliError> {
    let text = read_limited(path)?;
    RootKey::from_hex(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
}

fn read_limited(path: &Path) -> Result<String, CliError> {
    let file =
        std::fs::File::open(path).map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_INPUT_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(text)
}

/// A token argument, or stdin when it is `-`.
pub(super) fn token_text(arg: &str) -> Result<String, CliError> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_INPUT_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| CliError::usage(format!("cannot read token from stdin: {e}")))?;
    Ok(text)
}

pub(super) fn macaroon(arg: &str) -> Result<Macaroon, CliError> {
    let text = token_text(arg)?;
    if text.contains(',') {
        return Err(CliError::usage("expected one token, got a bundle (TOKEN,DISCHARGE,…)"));
    }
    Macaroon::from_text(&text, &Limits::default()).map_err(|e| CliError::usage(format!("cannot parse token: {e}")))
}

pub(super) fn bundle(arg: &str) -> Result<Bundle, CliError> {
    let text = token_text(arg)?;
    Bundle::parse(&text, &Limits::default()).map_err(|e| CliError::usage(format!("cannot parse token: {e}")))
}

/// Checks caveats against the caveat language before they are signed into a
/// token: a typo would otherwise make a token that can never be used.
pub(super) fn caveats(caveats: &[String]) -> Result<(), CliError> {
    for c in caveats {
        Predicate::parse(c).map_err(|e| CliError::usage(format!("invalid caveat {c:?}: {e}")))?;
    }
    Ok(())
}

/// Fresh random bytes from the OS.
pub(super) fn random<const N: usize>() -> Result<[u8; N], CliError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| CliError::invalid(format!("no randomness available: {e}")))?;
    Ok(buf)
}

/// The request a token is checked for: the flags `tally check` and
/// `tally token verify` share.
#[derive(Debug, clap::Args)]
pub(crate) struct RequestArgs {
    /// Requested action.
    #[arg(long)]
    pub action: Option<String>,
    /// Requested resource.
    #[arg(long)]
    pub resource: Option<String>,
    /// The checking service.
    #[arg(long)]
    pub service: Option<String>,
    /// The subject the request acts for.
    #[arg(long)]
    pub subject: Option<String>,
    /// The client's IP address.
    #[arg(long)]
    pub client_ip: Option<std::net::IpAddr>,
}
