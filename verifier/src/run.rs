//! What `tally-verifier serve` runs: the verifier on its Check port (and the
//! metrics endpoint beside it when asked) until SIGINT or SIGTERM.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tally_service::tls::ServerTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let https = a.authority.starts_with("https://");
    match &a.authority_ca {
        Some(_) if !https => {
            return Err(Error::Config(format!(
                "--authority-ca needs an https:// --authority URL, not {}",
                a.authority
            )));
        }
        Some(ca) => {
            let identity = a.tls_client_cert.as_deref().zip(a.tls_client_key.as_deref());
            let config = tally_proto::tls::client_config(ca, identity).map_err(|e| {
                Error::Config(format!("authority TLS (--authority-ca, --tls-client-cert, --tls-client-key): {e}"))
            })?;
            upstream = upstream.with_tls(config)?;
        }
        None if https => {
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
        ..Settings::default()
    };
    let verifier = Arc::new(Verifier::new(upstream, settings));
    let listener = bind(&a.listen).await?;
    // The bound address on stdout: scripts and tests that pass port 0 read it here.
    println!("listening on {}", local_addr(&listener)?);
    let shutdown = CancellationToken::new();
    tokio::spawn(tally_service::signal::cancel_on_signal(shutdown.clone()));
    if let Some(addr) = &a.metrics_listen {
        let mut registry = Registry::default();
        verifier.register_metrics(&mut registry);
        tally_service::metrics::spawn(bind(addr).await?, registry, shutdown.clone()).map_err(listener_error)?;
    }
    serve_with(listener, verifier, check_tls, shutdown).await
}

async fn bind(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|e| Error::Config(format!("binding {addr}: {e}")))
}

fn local_addr(listener: &TcpListener) -> Result<std::net::SocketAddr, Error> {
    listener.local_addr().map_err(listener_error)
}

fn listener_error(e: std::io::Error) -> Error {
    Error::Config(format!("listener: {e}"))
}
