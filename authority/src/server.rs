//! Serving: the gRPC server (authority, health, reflection) on an
//! already-bound listener, so tests can bind port 0, in plain HTTP/2 or
//! TLS (mTLS when a client CA is given); admission (`admission.rs`);
//! background pruning; graceful shutdown (streams end, in-flight calls finish).

use std::sync::Arc;
use std::time::Duration;

use tally_proto::v1::authority_server::AuthorityServer;
use tally_service::telemetry::RpcLayer;
use tally_service::tls::ServerTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
// Accepted sockets get TCP_NODELAY: without it small gRPC responses wait ~40 ms for Nagle.
use tonic::transport::server::TcpIncoming;

use crate::admission::{AdmissionLayer, Limits, MAX_MESSAGE_BYTES};
use crate::authority::Authority;
use crate::error::{Error, Result};
use crate::grpc::AuthorityService;

/// Default interval of HTTP/2 keep-alive pings to clients.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(20);
/// Default interval between prunes of expired revocations and old audit rows.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// How to serve, beyond the listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// TLS (and client certificates, when it has a client CA); plain HTTP/2 when `None`.
    pub tls: Option<ServerTls>,
    /// Admission: slots, the anonymous budget, streams per connection, deadlines.
    pub limits: Limits,
    /// Silence on a connection (nothing read from the client) after which it
    /// is pinged over HTTP/2; a ping not answered within the same time again
    /// closes the connection. A subscriber whose path died silently (no FIN,
    /// no RST) would otherwise hold its stream and its subscriber slot for as
    /// long as TCP accepts the heartbeats; with this it is gone within about
    /// twice the interval.
    pub keepalive: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { tls: None, limits: Limits::default(), keepalive: DEFAULT_KEEPALIVE }
    }
}

/// Serves in plain HTTP/2 with the default limits until `shutdown` fires, then drains.
pub async fn serve(
    listener: TcpListener,
    authority: Arc<Authority>,
    prune_every: Option<Duration>,
    shutdown: CancellationToken,
) -> Result<()> {
    serve_with(listener, authority, prune_every, ServeOptions::default(), shutdown).await
}

/// Serves with `options` until `shutdown` fires, then drains.
pub async fn serve_with(
    listener: TcpListener,
    authority: Arc<Authority>,
    prune_every: Option<Duration>,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // Migrations ran and the state loaded when `authority` was opened.
    health.set_serving::<AuthorityServer<AuthorityService>>().await;
    // Reflection lists what this server serves, in both versions clients
    // speak (grpcio-reflection and older grpcurl know only v1alpha).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tally_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("tally.v1.Authority")
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_error = |e: tonic_reflection::server::Error| Error::Serve { what: "reflection", source: e.into() };
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let service = AuthorityServer::new(AuthorityService::new(authority.clone(), shutdown.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);

    if let Some(every) = prune_every {
        let authority = authority.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => match authority.prune().await {
                        Ok(p) if p.revocations == 0 && p.audit_rows == 0 => {}
                        Ok(p) => tracing::info!(revocations = p.revocations, audit_rows = p.audit_rows, "pruned"),
                        Err(e) => tracing::warn!(error = %e, "pruning failed"),
                    },
                }
            }
        });
    }

    let addr = listener.local_addr().map_err(|e| Error::Serve { what: "listener", source: e.into() })?;
    let tls = match &options.tls {
        None => "off",
        Some(t) if t.requires_client_cert() => "mutual (client certificates required)",
        Some(_) => "server only (no client certificates)",
    };
    tracing::info!(%addr, epoch = authority.epoch(), tls, "authority serving");
    let stopping = shutdown.clone();
    let watched = authority.clone();
    let drained = async move {
        let authority = watched;
        // Serving while this process vouches for the log (always, on SQLite;
        // a replica while it reads its database, so readiness follows the
        // heartbeat bound), checked four times per heartbeat interval.
        let mut tick = tokio::time::interval(authority.vouch_check_interval());
        let mut serving = true;
        loop {
            tokio::select! {
                _ = stopping.cancelled() => break,
                _ = tick.tick() => {
                    let vouches = authority.vouches();
                    if vouches != serving {
                        serving = vouches;
                        if vouches {
                            health.set_serving::<AuthorityServer<AuthorityService>>().await;
                        } else {
                            health.set_not_serving::<AuthorityServer<AuthorityService>>().await;
                        }
                    }
                }
            }
        }
        tracing::info!("shutting down: ending streams, finishing calls");
        health.set_not_serving::<AuthorityServer<AuthorityService>>().await;
    };
    // Outermost first: every request is timed and traced, shed ones too.
    let router = Server::builder()
        .http2_keepalive_interval(Some(options.keepalive))
        .http2_keepalive_timeout(Some(options.keepalive))
        .max_concurrent_streams(options.limits.max_streams_per_connection)
        .layer(RpcLayer::new(authority.metrics.rpc.clone()))
        .layer(AdmissionLayer::new(options.limits, authority.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service);
    match options.tls {
        None => {
            router.serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), drained).await
        }
        Some(tls) => {
            let refused = authority.metrics.tls_refused.clone();
            router.serve_with_incoming_shutdown(tls.incoming(listener, refused), drained).await
        }
    }
    .map_err(|e| Error::Serve { what: "server", source: e.into() })?;
    tracing::info!("authority stopped");
    Ok(())
}
