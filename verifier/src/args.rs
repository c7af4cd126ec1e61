//! Command-line flags of `tally-verifier serve`; each also from a
//! `TALLY_VERIFIER_*` environment variable.

use std::path::PathBuf;

use tally_verifier::{
    DEFAULT_BREAKER_FAILURES, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_AUTHORITY_CALLS, DEFAULT_MEMO_CAPACITY,
};

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The authority's gRPC URL, e.g. http://127.0.0.1:7700.
    #[arg(long, env = "TALLY_VERIFIER_AUTHORITY")]
    pub(crate) authority: String,
    /// File holding this verifier's token (`role = verifier`).
    #[arg(long, env = "TALLY_VERIFIER_TOKEN_FILE")]
    pub(crate) token_file: PathBuf,
    /// Address for the Check API.
    #[arg(long, env = "TALLY_VERIFIER_LISTEN", default_value = "127.0.0.1:7800")]
    pub(crate) listen: String,
    /// Region name (for operators).
    #[arg(long, env = "TALLY_VERIFIER_REGION", default_value = "default")]
    pub(crate) region: String,
    /// Silence from the authority after which the cache is dropped and checks go to the authority.
    #[arg(long, env = "TALLY_VERIFIER_FAIL_CLOSED_AFTER", default_value = "10s")]
    pub(crate) fail_closed_after: humantime::Duration,
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
    #[arg(long, env = "TALLY_VERIFIER_CLOCK_SKEW", default_value = "2s", value_parser = clock_skew)]
    pub(crate) clock_skew: humantime::Duration,
    /// How long a negative answer (forged, revoked…) is reused.
    #[arg(long, env = "TALLY_VERIFIER_NEGATIVE_TTL", default_value = "5s")]
    pub(crate) negative_ttl: humantime::Duration,
    /// Verify calls to the authority in flight at most; past it a check is denied at once (authority unavailable).
    #[arg(long, env = "TALLY_VERIFIER_MAX_AUTHORITY_CALLS", default_value_t = DEFAULT_MAX_AUTHORITY_CALLS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_authority_calls: u64,
    /// Verify calls failing in a row (unreachable, timed out, overloaded) after which checks needing the authority are denied at once, one probe per --breaker-cool-down (0: never).
    #[arg(long, env = "TALLY_VERIFIER_BREAKER_FAILURES", default_value_t = DEFAULT_BREAKER_FAILURES)]
    pub(crate) breaker_failures: u32,
    /// How long checks needing the authority are denied at once between probe calls, once the breaker opened.
    #[arg(long, env = "TALLY_VERIFIER_BREAKER_COOL_DOWN", default_value = "1s")]
    pub(crate) breaker_cool_down: humantime::Duration,
    /// Deadline for a Verify call to the authority.
    #[arg(long, env = "TALLY_VERIFIER_AUTHORITY_TIMEOUT", default_value = "2s")]
    pub(crate) authority_timeout: humantime::Duration,
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

/// A clock-skew allowance: a typo such as `2h` would keep expired tokens alive.
fn clock_skew(s: &str) -> Result<humantime::Duration, String> {
    const LONGEST: std::time::Duration = std::time::Duration::from_secs(300);
    match s.parse::<humantime::Duration>() {
        Ok(d) if *d <= LONGEST => Ok(d),
        Ok(_) => Err("must be at most 5m".into()),
        Err(e) => Err(e.to_string()),
    }
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

    #[test]
    fn skew_and_org_are_checked() {
        assert!(clock_skew("2s").is_ok() && clock_skew("5m").is_ok());
        assert!(clock_skew("6m").is_err() && clock_skew("2h").is_err() && clock_skew("soon").is_err());
        assert_eq!(org_name("acme-1.eu"), Ok("acme-1.eu".to_owned()));
        assert!(org_name("Acme").is_err() && org_name("").is_err() && org_name(&"a".repeat(65)).is_err());
    }
}
