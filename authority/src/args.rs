//! The command line of `tally-authority`; each flag also from a
//! `TALLY_AUTHORITY_*` environment variable. Defaults are the library's
//! (constants and `Settings::default`); ranges are checked by
//! `tally_service::flags`, in the verifier's words.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tally_service::flags::{self, HumanDuration, POSITIVE};

use crate::{
    DEFAULT_ANONYMOUS_REVOKES_PER_SECOND, DEFAULT_AUDIT_RETENTION, DEFAULT_KEEPALIVE, DEFAULT_MAX_ANONYMOUS,
    DEFAULT_MAX_ANONYMOUS_PER_CLIENT, DEFAULT_MAX_BRANCH_REVOCATIONS, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_STREAMS_PER_CONNECTION, DEFAULT_MAX_SUBSCRIBERS, DEFAULT_PRUNE_INTERVAL, DEFAULT_READ_TIMEOUT,
    DEFAULT_REGISTRY_REMEMBERED, DEFAULT_RPC_TIMEOUT, Db, MAX_REGISTRY_REMEMBERED, Settings,
};

/// Shortest and longest HTTP/2 keep-alive interval: short enough never to
/// overflow a deadline, long enough for a pong to come back (it is also the
/// ping's timeout).
const KEEPALIVE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600);

/// `tally-authority`'s command line.
#[derive(Debug, Parser)]
#[command(name = "tally-authority", version, about = "Tally's authority: root keys, minting, revocation")]
pub struct Args {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a new database and print one bootstrap operator token.
    Init(InitArgs),
    /// Serve the authority API (boxed: far larger than `Init`'s arguments).
    Serve(Box<ServeArgs>),
    /// The database's epoch.
    #[command(subcommand)]
    Epoch(EpochCommand),
}

/// `--db` as given: parsed into a [`Db`] after the command line (by
/// [`DbFlag::open`]), so that no error of clap's can echo a URL's password;
/// never shown whole.
#[derive(Clone)]
pub(crate) struct DbFlag(String);

impl std::str::FromStr for DbFlag {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DbFlag(s.to_owned()))
    }
}

impl std::fmt::Debug for DbFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.db() {
            Ok(db) => write!(f, "{db:?}"),
            Err(_) => f.write_str("DbFlag(<unparsed>)"),
        }
    }
}

impl DbFlag {
    /// The database it names, or why it names none (never quoting a URL).
    pub(crate) fn db(&self) -> Result<Db, crate::Error> {
        self.0.parse().map_err(|e| crate::Error::Config(format!("--db: {e}")))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum EpochCommand {
    /// Give the database a new epoch: every verifier flushes its cache and
    /// starts again from the log's head. Run it after restoring from a backup
    /// or failing over to a standby that may have lost acknowledged history,
    /// with no authority serving the database.
    Bump(DbArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct DbArgs {
    /// The database: a SQLite file, or a postgres:// URL.
    #[arg(long, env = "TALLY_AUTHORITY_DB", hide_env_values = true, value_name = "PATH|URL")]
    pub(crate) db: DbFlag,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// The database to initialise: a SQLite file to create (must not exist), or
    /// a postgres:// URL of an empty database (the password from the URL,
    /// PGPASSWORD or ~/.pgpass; TLS as the URL's sslmode asks).
    #[arg(long, env = "TALLY_AUTHORITY_DB", hide_env_values = true, value_name = "PATH|URL")]
    pub(crate) db: DbFlag,
    /// File holding the 32-byte key-encryption key as 64 hex characters.
    #[arg(long, env = "TALLY_AUTHORITY_KEK_FILE")]
    pub(crate) kek_file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The database (made by `init`): a SQLite file, or a postgres:// URL.
    #[arg(long, env = "TALLY_AUTHORITY_DB", hide_env_values = true, value_name = "PATH|URL")]
    pub(crate) db: DbFlag,
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
    #[arg(long, env = "TALLY_AUTHORITY_HEARTBEAT_INTERVAL", default_value_t = HumanDuration(Settings::default().heartbeat), value_parser = flags::duration(POSITIVE))]
    pub(crate) heartbeat_interval: HumanDuration,
    /// Lifetime of minted tokens when Mint gives none.
    #[arg(long, env = "TALLY_AUTHORITY_DEFAULT_TTL", default_value_t = HumanDuration(Settings::default().default_ttl), value_parser = flags::duration(..))]
    pub(crate) default_ttl: HumanDuration,
    /// How often expired revocations are pruned from the log.
    #[arg(long, env = "TALLY_AUTHORITY_PRUNE_INTERVAL", default_value_t = HumanDuration(DEFAULT_PRUNE_INTERVAL), value_parser = flags::duration(POSITIVE))]
    pub(crate) prune_interval: HumanDuration,
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
    #[arg(long, env = "TALLY_AUTHORITY_MAX_IN_FLIGHT", default_value_t = DEFAULT_MAX_IN_FLIGHT, value_parser = flags::count::<usize>(1..))]
    pub(crate) max_in_flight: usize,
    /// Requests without valid API credentials (holders revoking their tokens, refusals) admitted at once, being
    /// read or handled; more are answered UNAVAILABLE at once. They never take a slot of --max-in-flight.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_ANONYMOUS", default_value_t = DEFAULT_MAX_ANONYMOUS, value_parser = flags::count::<usize>(1..))]
    pub(crate) max_anonymous: usize,
    /// Requests without valid API credentials admitted at once from one client address (IPv6: one /64); more are
    /// answered RESOURCE_EXHAUSTED.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_ANONYMOUS_PER_CLIENT", default_value_t = DEFAULT_MAX_ANONYMOUS_PER_CLIENT, value_parser = flags::count::<usize>(1..))]
    pub(crate) max_anonymous_per_client: usize,
    /// Revocations of a token by its holder (Revoke with the token and no API credential) per second from one
    /// client address, twice as many in a burst; RESOURCE_EXHAUSTED past it.
    #[arg(long, env = "TALLY_AUTHORITY_ANONYMOUS_REVOKES_PER_SECOND", default_value_t = DEFAULT_ANONYMOUS_REVOKES_PER_SECOND, value_parser = flags::count::<u32>(1..))]
    pub(crate) anonymous_revokes_per_second: u32,
    /// Branch revocations (a holder revoking one attenuation of a token) kept per token family; past it a holder
    /// gets RESOURCE_EXHAUSTED and the family must be revoked whole (by an operator, or by revoking the minted
    /// token). Each is kept in every verifier's memory until the family expires.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_BRANCH_REVOCATIONS", default_value_t = DEFAULT_MAX_BRANCH_REVOCATIONS, value_parser = flags::count::<u32>(1..=65_536))]
    pub(crate) max_branch_revocations: u32,
    /// How long audit rows are kept; older ones are deleted at each prune (--prune-interval). Refusals are kept
    /// as one row per caller, action, org and minute, with a count.
    #[arg(long, env = "TALLY_AUTHORITY_AUDIT_RETENTION", default_value_t = HumanDuration(DEFAULT_AUDIT_RETENTION), value_parser = flags::duration(POSITIVE))]
    pub(crate) audit_retention: HumanDuration,
    /// This process's name among the replicas of its database, in Status and as the `replica` label of its
    /// metrics (default: the host's name and the process id).
    #[arg(long, env = "TALLY_AUTHORITY_REPLICA_ID", value_parser = replica_id)]
    pub(crate) replica_id: Option<String>,
    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_STREAMS_PER_CONNECTION", default_value_t = DEFAULT_MAX_STREAMS_PER_CONNECTION, value_parser = flags::count::<u32>(1..))]
    pub(crate) max_streams_per_connection: u32,
    /// Longest a request's message may take to arrive once its headers have; DEADLINE_EXCEEDED past it.
    #[arg(long, env = "TALLY_AUTHORITY_READ_TIMEOUT", default_value_t = HumanDuration(DEFAULT_READ_TIMEOUT), value_parser = flags::duration(POSITIVE))]
    pub(crate) read_timeout: HumanDuration,
    /// Deadline of each call, reading its message included (Subscribe: until its stream starts);
    /// DEADLINE_EXCEEDED past it.
    #[arg(long, env = "TALLY_AUTHORITY_RPC_TIMEOUT", default_value_t = HumanDuration(DEFAULT_RPC_TIMEOUT), value_parser = flags::duration(POSITIVE))]
    pub(crate) rpc_timeout: HumanDuration,
    /// Silence on a connection after which the authority pings the client (HTTP/2); a connection that leaves
    /// the ping unanswered as long again is closed. 100ms to 1h.
    #[arg(long, env = "TALLY_AUTHORITY_HTTP2_KEEPALIVE", default_value_t = HumanDuration(DEFAULT_KEEPALIVE), value_parser = flags::duration(KEEPALIVE))]
    pub(crate) http2_keepalive: HumanDuration,
    /// Revocation streams served at once; a Subscribe beyond is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "TALLY_AUTHORITY_MAX_SUBSCRIBERS", default_value_t = DEFAULT_MAX_SUBSCRIBERS, value_parser = flags::count::<usize>(1..))]
    pub(crate) max_subscribers: usize,
    /// Registry rows kept in memory: revoking one of the last this many mints (or registry reads) by family id
    /// reads no database. Memory: about 13 MB at the default, up to about 23 MB per 100,000 above it. 1 to
    /// 10,000,000.
    #[arg(long, env = "TALLY_AUTHORITY_REGISTRY_REMEMBERED", default_value_t = DEFAULT_REGISTRY_REMEMBERED, value_parser = flags::count::<usize>(1..=MAX_REGISTRY_REMEMBERED))]
    pub(crate) registry_remembered: usize,
}

/// A replica id: 1 to 64 of letters, digits, `.`, `_`, `:` and `-` (it is a
/// metrics label value and a line of `tally status`).
fn replica_id(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
    if ok { Ok(s.to_owned()) } else { Err("1 to 64 letters, digits, `.`, `_`, `:` or `-`".into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `serve` with the two required flags and `extra`, parsed (no environment is read for flags given here).
    fn serve(extra: &[&str]) -> Result<ServeArgs, String> {
        let args = ["tally-authority", "serve", "--db", "db", "--kek-file", "kek"].iter().chain(extra);
        let Command::Serve(a) = Args::try_parse_from(args).map_err(|e| e.to_string())?.command else {
            panic!("`serve` parsed as another command");
        };
        Ok(*a)
    }

    #[test]
    fn flags_default_to_the_library_defaults() {
        let a = serve(&[]).unwrap();
        let limits = crate::Limits::default();
        let settings = Settings::default();
        assert_eq!(a.max_in_flight, limits.max_in_flight);
        assert_eq!(a.max_anonymous, limits.max_anonymous);
        assert_eq!(a.max_anonymous_per_client, limits.max_anonymous_per_client);
        assert_eq!(a.max_streams_per_connection, limits.max_streams_per_connection);
        assert_eq!(a.read_timeout.0, limits.read_timeout);
        assert_eq!(a.rpc_timeout.0, limits.rpc_timeout);
        assert_eq!(a.audit_retention.0, settings.audit_retention);
        assert_eq!(a.anonymous_revokes_per_second, settings.anonymous_revokes_per_second);
        assert_eq!(a.max_branch_revocations, settings.max_branch_revocations);
        assert_eq!(a.max_subscribers, settings.max_subscribers);
        assert_eq!(a.registry_remembered, settings.registry_remembered);
        assert_eq!((a.heartbeat_interval.0, a.default_ttl.0), (settings.heartbeat, settings.default_ttl));
        assert_eq!(a.http2_keepalive.0, DEFAULT_KEEPALIVE);
        assert_eq!(a.prune_interval.0, DEFAULT_PRUNE_INTERVAL);
    }

    #[test]
    fn db_is_a_path_or_a_url_and_a_url_is_never_echoed() {
        assert!(!serve(&[]).unwrap().db.db().unwrap().is_postgres());
        let args = ["tally-authority", "serve", "--kek-file", "k", "--db", "postgres://u:s3cret@h/d"];
        let Command::Serve(a) = Args::try_parse_from(args).unwrap().command else { panic!("not serve") };
        assert!(a.db.db().unwrap().is_postgres());
        assert!(!format!("{a:?}").contains("s3cret"));
        let args = ["tally-authority", "serve", "--kek-file", "k", "--db", "postgres://u:s3cret@h:x/d"];
        let Command::Serve(a) = Args::try_parse_from(args).unwrap().command else { panic!("not serve") };
        let e = a.db.db().unwrap_err().to_string();
        assert!(e.contains("not a usable PostgreSQL URL") && !e.contains("s3cret"), "{e}");
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn keepalive_is_bounded() {
        assert_eq!(serve(&["--http2-keepalive", "100ms"]).unwrap().http2_keepalive.0, Duration::from_millis(100));
        for bad in ["1ns", "2h", "500000000000years", "soon"] {
            assert!(serve(&["--http2-keepalive", bad]).is_err(), "{bad}");
        }
        assert!(serve(&["--http2-keepalive", "2h"]).unwrap_err().contains("must be between 100ms and 1h"));
    }

    #[test]
    fn registry_memory_is_bounded() {
        assert_eq!(serve(&["--registry-remembered", "1"]).unwrap().registry_remembered, 1);
        assert_eq!(serve(&["--registry-remembered", "10000000"]).unwrap().registry_remembered, 10_000_000);
        for bad in ["0", "10000001", "-5", "lots"] {
            assert!(serve(&["--registry-remembered", bad]).is_err(), "{bad}");
        }
        assert!(serve(&["--registry-remembered", "0"]).unwrap_err().contains("must be between 1 and 10000000"));
    }

    #[test]
    fn zero_is_refused_where_it_means_nothing() {
        for flag in ["--heartbeat-interval", "--prune-interval", "--read-timeout", "--rpc-timeout", "--audit-retention"]
        {
            assert!(serve(&[flag, "0s"]).unwrap_err().contains("must be longer than zero"), "{flag}");
        }
        for flag in ["--max-in-flight", "--max-anonymous", "--max-subscribers", "--max-streams-per-connection"] {
            assert!(serve(&[flag, "0"]).unwrap_err().contains("must be at least 1"), "{flag}");
        }
    }
}
