//! The servers' TLS: a certificate and key (and a client CA for mTLS) from
//! PEM files, loaded by `tally_proto::tls`, and an accept loop that does
//! handshakes concurrently, gives up on slow ones and logs and counts every
//! refusal.
//!
//! Nothing here ever prints key material: errors carry the path and rustls'
//! reason, never file contents.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rustls::server::WebPkiClientVerifier;
use tally_proto::tls::{load_chain, load_key, load_roots, pair_error, provider};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::Error;

/// A handshake that has not finished by then is dropped (a client that opens
/// a connection and sends nothing must not hold a slot for ever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's
/// accept backlog.
const MAX_HANDSHAKES: usize = 256;
/// Finished handshakes waiting for the server to take them.
const ACCEPTED_BUFFER: usize = 64;
/// Pause after a failed `accept` (out of file descriptors, say), so the loop
/// does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// The one application protocol gRPC speaks.
const ALPN_H2: &[u8] = b"h2";

/// A server's TLS: its certificate and key and, when given, the CA whose
/// client certificates it requires.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    client_auth: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("client_auth", &self.client_auth).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads `cert` (the server's chain) and `key`; with `client_ca`, every
    /// client must present a certificate signed by it.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, Error> {
        let rejected = |what: String, reason: String| Error::Tls(tally_proto::Error::Rejected { what, reason });
        let chain = load_chain("certificate", cert)?;
        let key_der = load_key("private key", key)?;
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected("TLS protocol versions".into(), e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let store = load_roots("client CA", ca)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
                    .build()
                    .map_err(|e| rejected(format!("client CA {}", ca.display()), e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_single_cert(chain, key_der).map_err(|e| pair_error("certificate", cert, key, &e))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)), client_auth: client_ca.is_some() })
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.client_auth
    }

    /// Accepted connections of `listener` after their TLS handshake, for
    /// tonic's `serve_with_incoming*`. Handshakes run concurrently (at most
    /// [`MAX_HANDSHAKES`], each within [`HANDSHAKE_TIMEOUT`]); each refused
    /// or abandoned one is logged with the peer's address and counted in
    /// `refused`. The loop ends when the stream is dropped.
    pub fn incoming(self, listener: TcpListener, refused: Counter) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = mpsc::channel(ACCEPTED_BUFFER);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                let slot = tokio::select! {
                    _ = tx.closed() => return,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                };
                let (tcp, peer) = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                            continue;
                        }
                    },
                };
                // Without it small gRPC responses wait ~40 ms for Nagle.
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx, refused) = (self.acceptor.clone(), tx.clone(), refused.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match handshake(&acceptor, tcp).await {
                        Ok(tls) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Err(why) => {
                            refused.inc();
                            tracing::warn!(%peer, reason = %why, "TLS handshake refused");
                        }
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no handshake within {HANDSHAKE_TIMEOUT:?}")),
    }
}
