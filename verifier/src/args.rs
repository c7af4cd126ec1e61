//! The command line of `tally-verifier`; each flag also from a
//! `TALLY_VERIFIER_*` environment variable. Defaults are the library's
//! (constants and `Settings::default`); ranges are checked by
//! `tally_service::flags`, in the authority's words.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tally_service::flags::{self, HumanDuration};

use crate::{
    DEFAULT_AUTHORITY_TIMEOUT, DEFAULT_BREAKER_FAILURES, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_AUTHORITY_CALLS,
    DEFAULT_MEMO_CAPACITY, Settings,
};

/// The most clock skew allowed: a typo such as `2h` would keep expired
/// tokens alive, and the authority keeps a revocation only an hour past its
/// family's expiry.
const LONGEST_SKEW: Duration = Duration::from_secs(300);

/// `tally-verifier`'s command line.
#[derive(Debug, Parser)]
#[command(name = "tally-verifier", version, about = "Tally's regional verifier")]
pub struct Args {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve Check next to the services.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The authority's gRPC URL, e.g. http://127.0.0.1:7700; repeat it (or separate with commas) for
    /// replicas, in order of preference: the stream and Verify use the first that answers.
    #[arg(long, env = "TALLY_VERIFIER_AUTHORITY", required = true, num_args = 1.., value_delimiter = ',')]
    pub(crate) authority: Vec<String>,
    /// Following a less preferred authority this long, the verifier tries the preferred ones again.
    #[arg(long, env = "TALLY_VERIFIER_FAILBACK_AFTER", default_value_t = HumanDuration(Settings::default().failback_after), value_parser = flags::duration(Duration::from_secs(1)..))]
    pub(crate) failback_after: HumanDuration,
    /// File holding this verifier's token (`role = verifier`).
    #[arg(long, env = "TALLY_VERIFIER_TOKEN_FILE")]
    pub(crate) token_file: PathBuf,
    /// Address for the Check API.
    #[arg(long, env = "TALLY_VERIFIER_LISTEN", default_value = "127.0.0.1:7800")]
    pub(crate) listen: String,
    /// Region name (for operators).
    #[arg(long, env = "TALLY_VERIFIER_REGION", default_value_t = Settings::default().region)]
    pub(crate) region: String,
    /// Silence from the authority after which the cache is dropped and checks go to the authority.
    #[arg(long, env = "TALLY_VERIFIER_FAIL_CLOSED_AFTER", default_value_t = HumanDuration(Settings::default().fail_closed_after), value_parser = flags::duration(..))]
    pub(crate) fail_closed_after: HumanDuration,
    /// Most cached token prefixes.
    #[arg(long, env = "TALLY_VERIFIER_CACHE_CAPACITY", default_value_t = DEFAULT_CACHE_CAPACITY)]
    pub(crate) cache_capacity: usize,
    /// Slots of the token memo: tokens presented again are answered without decoding (0: off).
    #[arg(long, env = "TALLY_VERIFIER_MEMO_CAPACITY", default_value_t = DEFAULT_MEMO_CAPACITY)]
    pub(crate) memo_capacity: usize,
    /// Address for Prometheus text metrics (`GET /metrics`); off when unset.
    #[arg(long, env = "TALLY_VERIFIER_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<String>,
    /// Clock skew allowed on `expires` and `not-before`; at most 5m (the authority keeps a revocation an hour past
    /// its family's expiry, well beyond any skew a verifier may allow).
    #[arg(long, env = "TALLY_VERIFIER_CLOCK_SKEW", default_value_t = HumanDuration(Settings::default().skew), value_parser = flags::duration(..=LONGEST_SKEW))]
    pub(crate) clock_skew: HumanDuration,
    /// How long a negative answer (forged, revoked…) is reused.
    #[arg(long, env = "TALLY_VERIFIER_NEGATIVE_TTL", default_value_t = HumanDuration(Settings::default().negative_ttl), value_parser = flags::duration(..))]
    pub(crate) negative_ttl: HumanDuration,
    /// Verify calls to the authority in flight at most; past it a check is denied at once (authority unavailable).
    #[arg(long, env = "TALLY_VERIFIER_MAX_AUTHORITY_CALLS", default_value_t = DEFAULT_MAX_AUTHORITY_CALLS, value_parser = flags::count::<usize>(1..))]
    pub(crate) max_authority_calls: usize,
    /// Verify calls failing in a row (unreachable, timed out, overloaded) after which checks needing the authority are denied at once, one probe per --breaker-cool-down (0: never).
    #[arg(long, env = "TALLY_VERIFIER_BREAKER_FAILURES", default_value_t = DEFAULT_BREAKER_FAILURES)]
    pub(crate) breaker_failures: u32,
    /// How long checks needing the authority are denied at once between probe calls, once the breaker opened.
    #[arg(long, env = "TALLY_VERIFIER_BREAKER_COOL_DOWN", default_value_t = HumanDuration(Settings::default().breaker_cool_down), value_parser = flags::duration(..))]
    pub(crate) breaker_cool_down: HumanDuration,
    /// Deadline for a Verify call to the authority.
    #[arg(long, env = "TALLY_VERIFIER_AUTHORITY_TIMEOUT", default_value_t = HumanDuration(DEFAULT_AUTHORITY_TIMEOUT), value_parser = flags::duration(..))]
    pub(crate) authority_timeout: HumanDuration,
    /// PEM CA certificate(s) the authority's certificate must chain to; needs an https:// `--authority`.
    #[arg(long, env = "TALLY_VERIFIER_AUTHORITY_CA", value_name = "FILE")]
    pub(crate) authority_ca: Option<PathBuf>,
    /// PEM client certificate presented to the authority (mTLS).
    #[arg(long, env = "TALLY_VERIFIER_TLS_CLIENT_CERT", requires_all = ["tls_client_key", "authority_ca"], value_name = "FILE")]
    pub(crate) tls_client_cert: Option<PathBuf>,
    /// PEM private key of `--tls-client-cert`.
    #[arg(long, env = "TALLY_VERIFIER_TLS_CLIENT_KEY", requires = "tls_client_cert", value_name = "FILE")]
    pub(crate) tls_client_key: Option<PathBuf>,
    /// PEM certificate (chain) to serve the Check port over TLS; plain HTTP/2 when unset.
    #[arg(long, env = "TALLY_VERIFIER_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "TALLY_VERIFIER_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The org the services behind this verifier belong to: a check that names no org of its own allows only
    /// tokens of this org. A multi-tenant deployment sets it here or on every service.
    #[arg(long, env = "TALLY_VERIFIER_ORG", value_parser = org_name)]
    pub(crate) org: Option<String>,
}

/// An org name as the authority takes it.
fn org_name(s: &str) -> Result<String, String> {
    if tally_token::is_org_name(s) {
        Ok(s.to_owned())
    } else {
        Err("must be 1 to 64 characters of a-z, 0-9, '-', '_' and '.'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve` with the two required flags and `extra`, parsed.
    fn serve(extra: &[&str]) -> Result<ServeArgs, String> {
        let args = ["tally-verifier", "serve", "--authority", "http://a", "--token-file", "t"].iter().chain(extra);
        let Command::Serve(a) = Args::try_parse_from(args).map_err(|e| e.to_string())?.command;
        Ok(a)
    }

    #[test]
    fn flags_default_to_the_library_defaults() {
        let a = serve(&[]).unwrap();
        let s = Settings::default();
        assert_eq!(a.region, s.region);
        assert_eq!(a.fail_closed_after.0, s.fail_closed_after);
        assert_eq!((a.cache_capacity, a.memo_capacity), (s.cache_capacity, s.memo_capacity));
        assert_eq!(a.clock_skew.0, s.skew);
        assert_eq!(a.negative_ttl.0, s.negative_ttl);
        assert_eq!(a.max_authority_calls, s.max_authority_calls);
        assert_eq!((a.breaker_failures, a.breaker_cool_down.0), (s.breaker_failures, s.breaker_cool_down));
        assert_eq!(a.authority_timeout.0, DEFAULT_AUTHORITY_TIMEOUT);
    }

    #[test]
    fn skew_and_org_are_checked() {
        assert!(serve(&["--clock-skew", "2s"]).is_ok() && serve(&["--clock-skew", "5m"]).is_ok());
        for bad in ["6m", "2h", "soon"] {
            assert!(serve(&["--clock-skew", bad]).is_err(), "{bad}");
        }
        assert!(serve(&["--clock-skew", "6m"]).unwrap_err().contains("must be at most 5m"));
        assert!(serve(&["--max-authority-calls", "0"]).unwrap_err().contains("must be at least 1"));
        assert_eq!(org_name("acme-1.eu"), Ok("acme-1.eu".to_owned()));
        assert!(org_name("Acme").is_err() && org_name("").is_err() && org_name(&"a".repeat(65)).is_err());
    }
}
