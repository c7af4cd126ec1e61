//! Serving: the gRPC server (authority, health, reflection) on an
//! already-bound listener, so tests can bind port 0; background pruning;
//! graceful shutdown (streams end, in-flight calls finish).

use std::sync::Arc;
use std::time::Duration;

use tally_proto::telemetry::RpcLayer;
use tally_proto::v1::authority_server::AuthorityServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
// Accepted sockets get TCP_NODELAY: without it small gRPC responses wait ~40 ms for Nagle.
use tonic::transport::server::TcpIncoming;

use crate::authority::Authority;
use crate::error::{Error, Result};
use crate::grpc::AuthorityService;

/// Largest request message accepted.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Serves until `shutdown` fires, then drains.
pub async fn serve(
    listener: TcpListener,
    authority: Arc<Authority>,
    prune_every: Option<Duration>,
    shutdown: CancellationToken,
) -> Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // Migrations ran and the state loaded when `authority` was opened.
    health.set_serving::<AuthorityServer<AuthorityService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tally_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(format!("reflection: {e}")))?;
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
                        Ok(0) => {}
                        Ok(n) => tracing::info!(pruned = n, "pruned expired revocations"),
                        Err(e) => tracing::warn!(error = %e, "pruning failed"),
                    },
                }
            }
        });
    }

    let addr = listener.local_addr().map_err(|e| Error::Config(format!("listener: {e}")))?;
    tracing::info!(%addr, epoch = authority.epoch(), "authority serving");
    let stopping = shutdown.clone();
    let drained = async move {
        stopping.cancelled().await;
        tracing::info!("shutting down: ending streams, finishing calls");
        health.set_not_serving::<AuthorityServer<AuthorityService>>().await;
    };
    Server::builder()
        .layer(RpcLayer::new(authority.rpc_metrics()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), drained)
        .await
        .map_err(|e| Error::Config(format!("server: {e}")))?;
    tracing::info!("authority stopped");
    Ok(())
}
