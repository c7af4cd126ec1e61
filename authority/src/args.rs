//! Command-line flags of `tally-authority`; each also from a
//! `TALLY_AUTHORITY_*` environment variable.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// SQLite database file to create (must not exist).
    #[arg(long, env = "TALLY_AUTHORITY_DB")]
    pub(crate) db: PathBuf,
    /// File holding the 32-byte key-encryption key as 64 hex characters.
    #[arg(long, env = "TALLY_AUTHORITY_KEK_FILE")]
    pub(crate) kek_file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// SQLite database file (made by `init`).
    #[arg(long, env = "TALLY_AUTHORITY_DB")]
    pub(crate) db: PathBuf,
    /// File holding the key-encryption key (64 hex characters).
    #[arg(long, env = "TALLY_AUTHORITY_KEK_FILE")]
    pub(crate) kek_file: PathBuf,
    /// Address for the gRPC API.
    #[arg(long, env = "TALLY_AUTHORITY_LISTEN", default_value = "127.0.0.1:7700")]
    pub(crate) listen: String,
    /// Address for Prometheus text metrics (`GET /metrics`); off when unset.
    #[arg(long, env = "TALLY_AUTHORITY_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<String>,
    /// Idle interval between heartbeats on the revocation stream.
    #[arg(long, env = "TALLY_AUTHORITY_HEARTBEAT_INTERVAL", default_value = "1s")]
    pub(crate) heartbeat_interval: humantime::Duration,
    /// Lifetime of minted tokens when Mint gives none.
    #[arg(long, env = "TALLY_AUTHORITY_DEFAULT_TTL", default_value = "1h")]
    pub(crate) default_ttl: humantime::Duration,
    /// How often expired revocations are pruned from the log.
    #[arg(long, env = "TALLY_AUTHORITY_PRUNE_INTERVAL", default_value = "10m")]
    pub(crate) prune_interval: humantime::Duration,
}

/// Cancels `token` on SIGINT or SIGTERM.
pub(crate) async fn cancel_on_signal(token: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    token.cancel();
}
