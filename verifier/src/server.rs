//! Serving: Check and Status, Envoy's ext_authz Check, health (serving only
//! once synced with the stream) and reflection, on an already-bound listener,
//! in plain HTTP/2 or TLS; plus the stream follower and the fail-closed
//! watchdog. Everything stops on `shutdown`.

use std::sync::Arc;
use std::time::Duration;

use tally_proto::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use tally_proto::v1::verifier_server::VerifierServer;
use tally_service::telemetry::RpcLayer;
use tally_service::tls::ServerTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
// Accepted sockets get TCP_NODELAY: without it small gRPC responses wait ~40 ms for Nagle.
use tonic::transport::server::TcpIncoming;

use crate::error::Error;
use crate::ext_authz::ExtAuthzService;
use crate::grpc::VerifierService;
use crate::verifier::Verifier;

/// Largest request message accepted.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Serves plain HTTP/2 until `shutdown` fires.
pub async fn serve(listener: TcpListener, verifier: Arc<Verifier>, shutdown: CancellationToken) -> Result<(), Error> {
    serve_with(listener, verifier, None, shutdown).await
}

/// Serves until `shutdown` fires, over TLS when `tls` is given.
pub async fn serve_with(
    listener: TcpListener,
    verifier: Arc<Verifier>,
    tls: Option<ServerTls>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_not_serving::<VerifierServer<VerifierService>>().await;
    // Reflection lists what this server serves, in both versions clients
    // speak (grpcio-reflection and older grpcurl know only v1alpha).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tally_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tally_proto::ENVOY_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("tally.v1.Verifier")
            .with_service_name("envoy.service.auth.v3.Authorization")
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_error = |e| Error::Config(format!("reflection: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;

    tokio::spawn(verifier.clone().follow(shutdown.clone()));
    tokio::spawn(verifier.clone().watchdog(shutdown.clone()));
    // Readiness follows the stream: serving once synced, not while failing closed.
    tokio::spawn({
        let (verifier, shutdown, health) = (verifier.clone(), shutdown.clone(), health.clone());
        async move {
            let mut serving = false;
            loop {
                // Register for the next change before reading the state, so none is missed.
                let changed = verifier.sync.changed();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let ready = verifier.sync.synced() && !verifier.sync.fail_closed();
                if ready != serving {
                    serving = ready;
                    if ready {
                        health.set_serving::<VerifierServer<VerifierService>>().await;
                    } else {
                        health.set_not_serving::<VerifierServer<VerifierService>>().await;
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = changed => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    });

    let service =
        VerifierServer::new(VerifierService::new(verifier.clone())).max_decoding_message_size(MAX_MESSAGE_BYTES);
    // Envoy's ext_authz filter, on the same port (see docs/adopting.md, Envoy).
    let ext_authz =
        AuthorizationServer::new(ExtAuthzService::new(verifier.clone())).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let addr = listener.local_addr().map_err(|e| Error::Config(format!("listener: {e}")))?;
    tracing::info!(%addr, region = %verifier.settings().region, tls = tls.is_some(), "verifier serving");
    let router = Server::builder()
        .layer(RpcLayer::new(verifier.metrics.rpc.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .add_service(ext_authz);
    match tls {
        None => {
            router
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown.cancelled(),
                )
                .await
        }
        Some(tls) => {
            let refused = verifier.metrics.tls_refused.clone();
            router.serve_with_incoming_shutdown(tls.incoming(listener, refused), shutdown.cancelled()).await
        }
    }
    .map_err(|e| Error::Config(format!("server: {e}")))?;
    tracing::info!("verifier stopped");
    Ok(())
}
