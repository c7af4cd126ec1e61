//! `tally-verifier serve`: the regional verifier daemon.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tally_proto::tls::{self, ServerTls};
use tally_verifier::{Settings, Upstream, Verifier};
use tokio_util::sync::CancellationToken;

/// mimalloc gives freed pages back to the OS shortly after a burst; glibc's
/// malloc kept each burst's high-water mark (see README, Soak).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;

#[derive(Debug, Parser)]
#[command(name = "tally-verifier", version, about = "Tally's regional verifier")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve Check next to the services.
    Serve(args::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tally_proto::telemetry::run_main("tally-verifier", || run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Serve(a) = cli.command;
    let mut upstream = Upstream::with_token_file(&a.authority, &a.token_file, a.authority_timeout.into())?;
    // TLS files are checked here, before serving: a bad one is a startup error naming it.
    let https = a.authority.starts_with("https://");
    match &a.authority_ca {
        Some(ca) => {
            anyhow::ensure!(https, "--authority-ca needs an https:// --authority URL, not {}", a.authority);
            let identity = a.tls_client_cert.as_deref().zip(a.tls_client_key.as_deref());
            let config = tls::client_config(ca, identity)
                .context("authority TLS (--authority-ca, --tls-client-cert, --tls-client-key)")?;
            upstream = upstream.with_tls(config)?;
        }
        None => {
            anyhow::ensure!(!https, "an https:// --authority needs --authority-ca (the CA its certificate chains to)")
        }
    }
    let check_tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            Some(ServerTls::load(cert, key, None).context("Check-port TLS (--tls-cert, --tls-key)")?)
        }
        _ => None,
    };
    let settings = Settings {
        region: a.region,
        fail_closed_after: a.fail_closed_after.into(),
        cache_capacity: a.cache_capacity,
        memo_capacity: a.memo_capacity,
        max_authority_calls: a.max_authority_calls as usize,
        breaker_failures: a.breaker_failures,
        breaker_cool_down: a.breaker_cool_down.into(),
        negative_ttl: a.negative_ttl.into(),
        skew: a.clock_skew.into(),
        org: a.org,
        ..Settings::default()
    };
    let verifier = Arc::new(Verifier::new(upstream, settings));
    let listener = tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("binding {}", a.listen))?;
    // The bound address on stdout: scripts and tests that pass port 0 read it here.
    println!("listening on {}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    tokio::spawn(tally_proto::runtime::cancel_on_signal(shutdown.clone()));
    if let Some(addr) = &a.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        println!("metrics on {}", metrics.local_addr()?);
        let (verifier, stop) = (verifier.clone(), shutdown.clone());
        tokio::spawn(tally_proto::metrics_http::serve(metrics, move || verifier.render_metrics(), async move {
            stop.cancelled().await
        }));
    }
    tally_verifier::serve_with(listener, verifier, check_tls, shutdown).await?;
    Ok(())
}
