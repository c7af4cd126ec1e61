//! What `tally-verifier serve` runs: the verifier on its Check port (and the
//! metrics endpoint beside it when asked) until SIGINT or SIGTERM.

use std::sync::Arc;

use tally_service::tls::ServerTls;

use crate::args::{Args, Command};
use crate::error::Error;
use crate::server::serve_with;
use crate::upstream::Upstream;
use crate::verifier::{Settings, Verifier};

/// Runs the command `args` names.
pub async fn run(args: Args) -> Result<(), Error> {
    let Command::Serve(a) = args.command;
    let mut upstream = Upstream::with_token_file(&a.authority, &a.token_file, a.authority_timeout.into())?;
    // TLS files are checked here, before serving: a bad one is a startup error naming it.
    let https = a.authority.iter().filter(|u| u.starts_with("https://")).count();
    if https != 0 && https != a.authority.len() {
        return Err(Error::Config("--authority: every URL https://, or none".into()));
    }
    match &a.authority_ca {
        Some(_) if https == 0 => {
            return Err(Error::Config(format!(
                "--authority-ca needs an https:// --authority URL, not {}",
                a.authority.join(", ")
            )));
        }
        Some(ca) => {
            let identity = a.tls_client_cert.as_deref().zip(a.tls_client_key.as_deref());
            let config = tally_proto::tls::client_config(ca, identity).map_err(|e| {
                Error::Config(format!("authority TLS (--authority-ca, --tls-client-cert, --tls-client-key): {e}"))
            })?;
            upstream = upstream.with_tls(config)?;
        }
        None if https != 0 => {
            return Err(Error::Config(
                "an https:// --authority needs --authority-ca (the CA its certificate chains to)".into(),
            ));
        }
        None => {}
    }
    let check_tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(
            ServerTls::load(cert, key, None)
                .map_err(|e| Error::Config(format!("Check-port TLS (--tls-cert, --tls-key): {e}")))?,
        ),
        _ => None,
    };
    let settings = Settings {
        region: a.region,
        fail_closed_after: a.fail_closed_after.into(),
        cache_capacity: a.cache_capacity,
        memo_capacity: a.memo_capacity,
        max_authority_calls: a.max_authority_calls,
        breaker_failures: a.breaker_failures,
        breaker_cool_down: a.breaker_cool_down.into(),
        negative_ttl: a.negative_ttl.into(),
        skew: a.clock_skew.into(),
        org: a.org,
        failback_after: a.failback_after.into(),
        ..Settings::default()
    };
    let verifier = Arc::new(Verifier::new(upstream, settings));
    let (listener, shutdown) =
        tally_service::start(&a.listen, a.metrics_listen.as_deref(), |r| verifier.register_metrics(r))
            .await
            .map_err(|e| Error::Config(format!("listener: {e}")))?;
    serve_with(listener, verifier, check_tls, shutdown).await
}
