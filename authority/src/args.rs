//! Command-line flags of `tally-authority`; each also from a
//! `TALLY_AUTHORITY_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use tally_authority::{
    DEFAULT_ANONYMOUS_REVOKES_PER_SECOND, DEFAULT_MAX_ANONYMOUS, DEFAULT_MAX_ANONYMOUS_PER_CLIENT,
    DEFAULT_MAX_BRANCH_REVOCATIONS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_STREAMS_PER_CONNECTION, DEFAULT_MAX_SUBSCRIBERS,
    DEFAULT_REGISTRY_REMEMBERED, MAX_REGISTRY_REMEMBERED,
};

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
    /// PEM certificate (chain) to serve TLS with; plain HTTP/2 when unset.
    #[arg(long, env = "TALLY_AUTHORITY_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "TALLY_AUTHORITY_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): every client must present a certificate signed by one (mTLS).
    #[arg(long, env = "TALLY_AUTHORITY_TLS_CLIENT_CA", requires = "tls_cert", value_name = "FILE")]
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// Requests with valid API credentials handled at once, over all connections, each taken once its message
    /// was read; more are answered UNAVAILABLE at once.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_IN_FLIGHT", default_value_t = DEFAULT_MAX_IN_FLIGHT, value_parser = at_least_one)]
    pub(crate) max_in_flight: usize,
    /// Requests without valid API credentials (holders revoking their tokens, refusals) admitted at once, being
    /// read or handled; more are answered UNAVAILABLE at once. They never take a slot of --max-in-flight.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_ANONYMOUS", default_value_t = DEFAULT_MAX_ANONYMOUS, value_parser = at_least_one)]
    pub(crate) max_anonymous: usize,
    /// Requests without valid API credentials admitted at once from one client address (IPv6: one /64); more are
    /// answered RESOURCE_EXHAUSTED.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_ANONYMOUS_PER_CLIENT", default_value_t = DEFAULT_MAX_ANONYMOUS_PER_CLIENT, value_parser = at_least_one)]
    pub(crate) max_anonymous_per_client: usize,
    /// Revocations of a token by its holder (Revoke with the token and no API credential) per second from one
    /// client address, twice as many in a burst; RESOURCE_EXHAUSTED past it.
    #[arg(long, env = "TALLY_AUTHORITY_ANONYMOUS_REVOKES_PER_SECOND", default_value_t = DEFAULT_ANONYMOUS_REVOKES_PER_SECOND, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) anonymous_revokes_per_second: u32,
    /// Branch revocations (a holder revoking one attenuation of a token) kept per token family; past it a holder
    /// gets RESOURCE_EXHAUSTED and the family must be revoked whole (by an operator, or by revoking the minted
    /// token). Each is kept in every verifier's memory until the family expires.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_BRANCH_REVOCATIONS", default_value_t = DEFAULT_MAX_BRANCH_REVOCATIONS, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub(crate) max_branch_revocations: u32,
    /// How long audit rows are kept; older ones are deleted at each prune (--prune-interval). Refusals are kept
    /// as one row per caller, action, org and minute, with a count.
    #[arg(long, env = "TALLY_AUTHORITY_AUDIT_RETENTION", default_value = "90days", value_parser = positive_duration)]
    pub(crate) audit_retention: Duration,
    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_STREAMS_PER_CONNECTION", default_value_t = DEFAULT_MAX_STREAMS_PER_CONNECTION, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_streams_per_connection: u32,
    /// Longest a request's message may take to arrive once its headers have; DEADLINE_EXCEEDED past it.
    #[arg(long, env = "TALLY_AUTHORITY_READ_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub(crate) read_timeout: Duration,
    /// Deadline of each call, reading its message included (Subscribe: until its stream starts);
    /// DEADLINE_EXCEEDED past it.
    #[arg(long, env = "TALLY_AUTHORITY_RPC_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub(crate) rpc_timeout: Duration,
    /// Silence on a connection after which the authority pings the client (HTTP/2); a connection that leaves
    /// the ping unanswered as long again is closed. 100ms to 1h.
    #[arg(long, env = "TALLY_AUTHORITY_HTTP2_KEEPALIVE", default_value = "20s", value_parser = keepalive)]
    pub(crate) http2_keepalive: Duration,
    /// Revocation streams served at once; a Subscribe beyond is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_SUBSCRIBERS", default_value_t = DEFAULT_MAX_SUBSCRIBERS, value_parser = at_least_one)]
    pub(crate) max_subscribers: usize,
    /// Registry rows kept in memory: revoking one of the last this many mints (or registry reads) by family id
    /// reads no database. Memory: about 13 MB at the default, up to about 23 MB per 100,000 above it. 1 to
    /// 10,000,000.
    #[arg(long, env = "TALLY_AUTHORITY_REGISTRY_REMEMBERED", default_value_t = DEFAULT_REGISTRY_REMEMBERED, value_parser = registry_rows)]
    pub(crate) registry_remembered: usize,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A registry memory size: at least one row, and a bound a typo cannot pass.
fn registry_rows(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_REGISTRY_REMEMBERED).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be between 1 and {MAX_REGISTRY_REMEMBERED}")),
        Err(e) => Err(e.to_string()),
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A keep-alive interval: short enough never to overflow a deadline, long
/// enough for a pong to come back (it is also the ping's timeout).
fn keepalive(s: &str) -> Result<Duration, String> {
    const SHORTEST: Duration = Duration::from_millis(100);
    const LONGEST: Duration = Duration::from_secs(3600);
    match humantime::parse_duration(s) {
        Ok(d) if (SHORTEST..=LONGEST).contains(&d) => Ok(d),
        Ok(_) => Err("must be between 100ms and 1h".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default clap shows for `serve`'s flag `id`.
    fn default_of(id: &str) -> String {
        use clap::Args;
        let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
        let arg = cmd.get_arguments().find(|a| a.get_id() == id).expect("the flag");
        arg.get_default_values()[0].to_str().expect("utf-8").to_owned()
    }

    #[test]
    fn keepalive_is_bounded_and_defaults_to_the_library_default() {
        assert_eq!(keepalive(&default_of("http2_keepalive")), Ok(tally_authority::DEFAULT_KEEPALIVE));
        assert_eq!(keepalive("100ms"), Ok(Duration::from_millis(100)));
        assert!(keepalive("1ns").is_err());
        assert!(keepalive("2h").is_err());
        assert!(keepalive("500000000000years").is_err());
        assert!(keepalive("soon").is_err());
    }

    #[test]
    fn admission_flags_default_to_the_library_defaults() {
        let limits = tally_authority::Limits::default();
        let parsed = |id| default_of(id).parse::<u64>().unwrap();
        assert_eq!(parsed("max_in_flight"), limits.max_in_flight as u64);
        assert_eq!(parsed("max_anonymous"), limits.max_anonymous as u64);
        assert_eq!(parsed("max_anonymous_per_client"), limits.max_anonymous_per_client as u64);

        assert_eq!(parsed("max_streams_per_connection"), u64::from(limits.max_streams_per_connection));
        assert_eq!(positive_duration(&default_of("read_timeout")), Ok(limits.read_timeout));
        assert_eq!(positive_duration(&default_of("rpc_timeout")), Ok(limits.rpc_timeout));
        assert_eq!(positive_duration(&default_of("audit_retention")), Ok(tally_authority::DEFAULT_AUDIT_RETENTION));
        let settings = tally_authority::Settings::default();
        assert_eq!(parsed("anonymous_revokes_per_second"), u64::from(settings.anonymous_revokes_per_second));
        assert_eq!(parsed("max_branch_revocations"), u64::from(settings.max_branch_revocations));
    }

    #[test]
    fn registry_memory_is_bounded_and_defaults_to_the_library_default() {
        assert_eq!(registry_rows(&default_of("registry_remembered")), Ok(tally_authority::DEFAULT_REGISTRY_REMEMBERED));
        assert_eq!(registry_rows("1"), Ok(1));
        assert_eq!(registry_rows("10000000"), Ok(10_000_000));
        assert!(registry_rows("0").is_err());
        assert!(registry_rows("10000001").is_err());
        assert!(registry_rows("-5").is_err());
        assert!(registry_rows("lots").is_err());
    }
}
