//! The `tally` command tree and its exit-code convention, which scripts may
//! rely on:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (allowed, active, done) |
//! | 1 | a negative verdict (denied, invalid, inactive, not serving) or the server refused the caller's token |
//! | 2 | usage: bad arguments or files, or a request the server rejected as invalid (unknown org, duplicate, …) |
//! | 3 | unavailable: the server cannot be reached, timed out, broke the stream, or failed internally |

mod admin;
mod audit;
mod check;
mod conn;
mod input;
mod output;
mod token;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Tally: macaroon tokens that anyone can attenuate and every region can revoke.
#[derive(Debug, Parser)]
#[command(name = "tally", version)]
pub(crate) struct Args {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every online command shares (accepted before or after the command).
#[derive(Debug, clap::Args)]
pub(crate) struct Global {
    /// Print JSON (one object, or one per line for `watch`) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// The authority's gRPC URL.
    #[arg(long, global = true, env = "TALLY_AUTHORITY_URL", default_value = "http://127.0.0.1:7700")]
    authority: String,
    /// File holding the token presented to the authority (an operator token;
    /// `watch` also takes a verifier token). Never passed on the command line.
    #[arg(long, global = true, env = "TALLY_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The verifier's gRPC URL (for `check` and `status`).
    #[arg(long, global = true, env = "TALLY_VERIFIER_URL", default_value = "http://127.0.0.1:7800")]
    verifier: String,
    /// PEM CA certificate the authority's certificate must chain to (for an https:// `--authority`).
    #[arg(long, global = true, env = "TALLY_AUTHORITY_CA", value_name = "FILE")]
    authority_ca: Option<PathBuf>,
    /// PEM client certificate presented to the authority (mTLS); needs `--tls-client-key`.
    #[arg(long, global = true, env = "TALLY_TLS_CLIENT_CERT", value_name = "FILE")]
    tls_client_cert: Option<PathBuf>,
    /// PEM private key of `--tls-client-cert`.
    #[arg(long, global = true, env = "TALLY_TLS_CLIENT_KEY", value_name = "FILE")]
    tls_client_key: Option<PathBuf>,
    /// PEM CA certificate the verifier's certificate must chain to (for an https:// `--verifier`).
    #[arg(long, global = true, env = "TALLY_VERIFIER_CA", value_name = "FILE")]
    verifier_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline token commands: mint, attenuate, discharge, bundle, inspect, verify.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Create and list orgs.
    #[command(subcommand)]
    Org(admin::OrgCommand),
    /// Rotate, retire and list an org's root keys.
    #[command(subcommand)]
    Key(admin::KeyCommand),
    /// Mint a token at the authority (prints the token).
    Mint(admin::MintArgs),
    /// Revoke a token (its holder may), a family, every token of a key, or of an org.
    #[command(subcommand)]
    Revoke(admin::RevokeCommand),
    /// Ask the authority about a token. Exits 0 when active, 1 when not.
    Introspect(admin::IntrospectArgs),
    /// Read the authority's audit log: who did what (never tokens or keys).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Follow the revocation stream (replays the retained log first).
    Watch(watch::WatchArgs),
    /// Check a token for a request at a verifier. Exits 0 when allowed, 1 when denied.
    Check(check::CheckArgs),
    /// A verifier's stream and cache state (or, with `--of authority`, an
    /// authority replica's view of its database). Exits 0 when serving, 1 when not.
    Status(check::StatusArgs),
}

/// Exit code for a negative verdict or a refused credential.
pub(crate) const EXIT_INVALID: u8 = 1;
/// Exit code for usage and parse errors (as clap uses).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code for an unreachable or failing server.
pub(crate) const EXIT_UNAVAILABLE: u8 = 3;

/// A failed command: the one-line message for stderr (none when empty: the
/// output already said it) and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self { code: EXIT_USAGE, message: message.into() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self { code: EXIT_INVALID, message: message.into() }
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self { code: EXIT_UNAVAILABLE, message: message.into() }
    }
}

pub(crate) fn run(args: Args) -> Result<(), CliError> {
    let g = args.global;
    match args.command {
        Command::Token(cmd) => token::run(cmd),
        Command::Org(cmd) => online(|| admin::org(&g, cmd)),
        Command::Key(cmd) => online(|| admin::key(&g, cmd)),
        Command::Mint(a) => online(|| admin::mint(&g, a)),
        Command::Revoke(cmd) => online(|| admin::revoke(&g, cmd)),
        Command::Introspect(a) => online(|| admin::introspect(&g, a)),
        Command::Audit(cmd) => online(|| audit::run(&g, cmd)),
        Command::Watch(a) => online(|| watch::run(&g, a)),
        Command::Check(a) => online(|| check::check(&g, a)),
        Command::Status(a) => online(|| check::status(&g, a)),
    }
}

/// Runs an online command on a single-threaded runtime.
fn online<F, Fut>(command: F) -> Result<(), CliError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), CliError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::unavailable(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(command())
}
