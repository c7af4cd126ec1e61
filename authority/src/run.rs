//! What `tally-authority` runs: `init` a database, or `serve` it (with the
//! metrics endpoint beside it when asked) until SIGINT or SIGTERM.

use std::sync::Arc;

use tally_service::tls::ServerTls;

use crate::admission::Limits;
use crate::args::{Args, Command, EpochCommand, InitArgs, ServeArgs};
use crate::authority::{Authority, Settings};
use crate::clock::SystemClock;
use crate::error::{Error, Result};
use crate::keys::Kek;
use crate::server::{ServeOptions, serve_with};

/// Runs the command `args` names.
pub async fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Init(a) => init(a).await,
        Command::Serve(a) => serve(*a).await,
        Command::Epoch(EpochCommand::Bump(a)) => {
            let db = a.db.db()?;
            let (old, new) = Authority::bump_epoch(&db).await?;
            println!("epoch of {db} bumped from {old} to {new}: every verifier flushes its cache");
            Ok(())
        }
    }
}

async fn init(a: InitArgs) -> Result<()> {
    let kek = Kek::from_file(&a.kek_file)?;
    let token = Authority::init(a.db.db()?, kek, Arc::new(SystemClock)).await?;
    println!("{token}");
    Ok(())
}

async fn serve(a: ServeArgs) -> Result<()> {
    let kek = Kek::from_file(&a.kek_file)?;
    // Checked before anything is opened: a bad file is a startup error naming it.
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = ServerTls::load(cert, key, a.tls_client_ca.as_deref())
                .map_err(|e| Error::Config(format!("TLS (--tls-cert, --tls-key, --tls-client-ca): {e}")))?;
            if !tls.requires_client_cert() {
                tracing::warn!("TLS without --tls-client-ca: any client may connect; its bearer token is all it needs");
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
        audit_retention: a.audit_retention.into(),
        replica: a.replica_id.clone().unwrap_or_else(crate::default_replica_id),
        ..Settings::default()
    };
    let authority = Authority::open(a.db.db()?, kek, Arc::new(SystemClock), settings).await?;
    let (listener, shutdown) =
        tally_service::start(&a.listen, a.metrics_listen.as_deref(), |r| authority.register_metrics(r))
            .await
            .map_err(|e| Error::Serve { what: "listener", source: e.into() })?;
    let options = ServeOptions {
        tls,
        limits: Limits {
            max_in_flight: a.max_in_flight,
            max_anonymous: a.max_anonymous,
            max_anonymous_per_client: a.max_anonymous_per_client,
            max_streams_per_connection: a.max_streams_per_connection,
            read_timeout: a.read_timeout.into(),
            rpc_timeout: a.rpc_timeout.into(),
        },
        keepalive: a.http2_keepalive.into(),
    };
    serve_with(listener, authority.clone(), Some(a.prune_interval.into()), options, shutdown).await?;
    authority.close().await
}
