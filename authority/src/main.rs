//! `tally-authority`: `init` a database, or `serve` it.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tally_authority::{Authority, Kek, Limits, ServeOptions, Settings, SystemClock};
use tally_proto::tls::ServerTls;
use tokio_util::sync::CancellationToken;

/// mimalloc gives freed pages back to the OS shortly after a burst; glibc's
/// malloc kept each burst's high-water mark (see README, Soak).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;

#[derive(Debug, Parser)]
#[command(name = "tally-authority", version, about = "Tally's authority: root keys, minting, revocation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new database and print one bootstrap operator token.
    Init(args::InitArgs),
    /// Serve the authority API (boxed: far larger than `Init`'s arguments).
    Serve(Box<args::ServeArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tally_proto::telemetry::run_main("tally-authority", || run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(a) => {
            let kek = Kek::from_file(&a.kek_file)?;
            let token = Authority::init(&a.db, kek, Arc::new(SystemClock)).await?;
            println!("{token}");
            Ok(())
        }
        Command::Serve(a) => {
            let kek = Kek::from_file(&a.kek_file)?;
            // Checked before anything is opened: a bad file is a startup error naming it.
            let tls = match (&a.tls_cert, &a.tls_key) {
                (Some(cert), Some(key)) => {
                    let tls = ServerTls::load(cert, key, a.tls_client_ca.as_deref())
                        .context("TLS (--tls-cert, --tls-key, --tls-client-ca)")?;
                    if !tls.requires_client_cert() {
                        tracing::warn!(
                            "TLS without --tls-client-ca: any client may connect; its bearer token is all it needs"
                        );
                    }
                    Some(tls)
                }
                _ => None,
            };
            let settings = Settings {
                heartbeat: a.heartbeat_interval.into(),
                default_ttl: a.default_ttl.into(),
                max_subscribers: a.max_subscribers,
                registry_remembered: a.registry_remembered,
                anonymous_revokes_per_second: a.anonymous_revokes_per_second,
                max_branch_revocations: a.max_branch_revocations,
                audit_retention: a.audit_retention,
                ..Settings::default()
            };
            let authority = Authority::open(&a.db, kek, Arc::new(SystemClock), settings).await?;
            let listener =
                tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("binding {}", a.listen))?;
            // The bound address on stdout: scripts and tests that pass port 0 read it here.
            println!("listening on {}", listener.local_addr()?);
            let shutdown = CancellationToken::new();
            tokio::spawn(tally_proto::runtime::cancel_on_signal(shutdown.clone()));
            if let Some(addr) = &a.metrics_listen {
                let metrics = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
                println!("metrics on {}", metrics.local_addr()?);
                let (authority, stop) = (authority.clone(), shutdown.clone());
                tokio::spawn(tally_proto::metrics_http::serve(
                    metrics,
                    move || authority.render_metrics(),
                    async move { stop.cancelled().await },
                ));
            }
            let options = ServeOptions {
                tls,
                limits: Limits {
                    max_in_flight: a.max_in_flight,
                    max_anonymous: a.max_anonymous,
                    max_anonymous_per_client: a.max_anonymous_per_client,
                    max_streams_per_connection: a.max_streams_per_connection,
                    read_timeout: a.read_timeout,
                    rpc_timeout: a.rpc_timeout,
                },
                keepalive: a.http2_keepalive,
            };
            tally_authority::serve_with(listener, authority.clone(), Some(a.prune_interval.into()), options, shutdown)
                .await?;
            authority.close().await?;
            Ok(())
        }
    }
}
