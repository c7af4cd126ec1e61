//! TLS for Tally's gRPC servers and clients, shared by the authority, the
//! verifier and the CLI: PEM files loaded into rustls (ring provider) with
//! errors that name the file at fault, and a server accept loop that does
//! handshakes concurrently, gives up on slow ones and logs every refusal.
//!
//! Nothing here ever prints key material: errors carry the path and rustls'
//! reason, never file contents.

use crate::error::Error;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

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
/// Largest PEM file read (certificates and keys are a few KiB).
const MAX_PEM_FILE: u64 = 1 << 20;

/// The crypto provider every Tally TLS config uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let err = |source| Error::Read { what, path: path.to_owned(), source };
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_PEM_FILE).read_to_end(&mut bytes)).map_err(err)?;
    Ok(bytes)
}

/// Why PEM text does not parse, in words that never quote the file's
/// contents (the parser's own messages can echo a line of it).
fn pem_reason(e: &rustls::pki_types::pem::Error, block: &str) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        E::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        E::Base64Decode(_) => "the base64 inside a PEM section does not decode".into(),
        E::NoItemsFound => format!("no {block} block"),
        E::SectionTooLarge => "a PEM section is too large".into(),
        _ => "unreadable PEM".into(),
    }
}

/// Why rustls refused a certificate and key.
fn pair_reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the private key does not belong to the certificate".into()
        }
        other => other.to_string(),
    }
}

/// Certificates in a PEM file, at least one.
fn certificates(what: &'static str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bad = |reason: String| Error::Pem { what, path: path.to_owned(), reason };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_reason(&e, "CERTIFICATE")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(what: &'static str, path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| Error::Pem {
        what,
        path: path.to_owned(),
        reason: pem_reason(&e, "PRIVATE KEY (PKCS#8, RSA or EC)"),
    })
}

/// A trust store of the CA certificates in `path`.
fn roots(what: &'static str, path: &Path) -> Result<(Vec<u8>, RootCertStore), Error> {
    let pem = read(what, path)?;
    let mut store = RootCertStore::empty();
    for cert in certificates(what, path, &pem)? {
        store.add(cert).map_err(|e| Error::Rejected {
            what: format!("{what} {}", path.display()),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok((pem, store))
}

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
        let chain = certificates("certificate", cert, &read("certificate", cert)?)?;
        let key_der = private_key("private key", key, &read("private key", key)?)?;
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Rejected { what: "TLS protocol versions".into(), reason: e.to_string() })?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let (_, store) = roots("client CA", ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider).build().map_err(|e| {
                        Error::Rejected { what: format!("client CA {}", ca.display()), reason: e.to_string() }
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key_der).map_err(|e| Error::Rejected {
            what: format!("certificate {} with key {}", cert.display(), key.display()),
            reason: pair_reason(&e),
        })?;
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
    pub fn incoming(
        self,
        listener: TcpListener,
        refused: Arc<AtomicU64>,
    ) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
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
                            refused.fetch_add(1, Ordering::Relaxed);
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

/// A client's TLS for tonic: trust only the CA in `ca`, and present the
/// certificate and key in `identity` when given. The files are read and
/// checked here (PEM, a key that belongs to its certificate), so a bad file
/// is a startup error, not a failed connection later.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTlsConfig, Error> {
    let (ca_pem, store) = roots("CA certificate", ca)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Rejected { what: "TLS protocol versions".into(), reason: e.to_string() })?;
    let builder = builder.with_root_certificates(store);
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some((cert, key)) = identity {
        let cert_pem = read("client certificate", cert)?;
        let key_pem = read("client key", key)?;
        let chain = certificates("client certificate", cert, &cert_pem)?;
        let key_der = private_key("client key", key, &key_pem)?;
        builder.with_client_auth_cert(chain, key_der).map_err(|e| Error::Rejected {
            what: format!("client certificate {} with key {}", cert.display(), key.display()),
            reason: pair_reason(&e),
        })?;
        config = config.identity(Identity::from_pem(cert_pem, key_pem));
    }
    Ok(config)
}
