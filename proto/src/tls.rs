//! TLS files for Tally's gRPC clients and servers: PEM certificates and keys
//! loaded into rustls (ring provider) with errors that name the file at
//! fault, and a client's TLS for tonic. The SDK, the CLI and the verifier's
//! upstream use [`client_config`]; the servers' accept loop (in
//! `tally-service`) builds on the loaders here.
//!
//! Nothing here ever prints key material: errors carry the path and rustls'
//! reason, never file contents.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::Error;

/// Largest PEM file read (certificates and keys are a few KiB).
const MAX_PEM_FILE: u64 = 1 << 20;

/// The crypto provider every Tally TLS config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The bytes of a PEM file (`what` names it in errors), at most [`MAX_PEM_FILE`].
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

/// The error for a certificate (`what`: "certificate", "client certificate")
/// and key that rustls refused as a pair, naming both files.
pub fn pair_error(what: &str, cert: &Path, key: &Path, e: &rustls::Error) -> Error {
    let reason = match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the private key does not belong to the certificate".into()
        }
        other => other.to_string(),
    };
    Error::Rejected { what: format!("{what} {} with key {}", cert.display(), key.display()), reason }
}

/// Certificates in PEM text, at least one.
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

/// The private key in PEM text (PKCS#8, PKCS#1 or SEC1).
fn private_key(what: &'static str, path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| Error::Pem {
        what,
        path: path.to_owned(),
        reason: pem_reason(&e, "PRIVATE KEY (PKCS#8, RSA or EC)"),
    })
}

/// The certificate chain in the PEM file at `path` (`what` names it in errors).
pub fn load_chain(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    certificates(what, path, &read(what, path)?)
}

/// The private key in the PEM file at `path` (`what` names it in errors).
pub fn load_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    private_key(what, path, &read(what, path)?)
}

/// A trust store of the CA certificates in the PEM file at `path`.
pub fn load_roots(what: &'static str, path: &Path) -> Result<RootCertStore, Error> {
    roots(what, path).map(|(_, store)| store)
}

/// [`load_roots`], and the file's PEM text.
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
        builder.with_client_auth_cert(chain, key_der).map_err(|e| pair_error("client certificate", cert, key, &e))?;
        config = config.identity(Identity::from_pem(cert_pem, key_pem));
    }
    Ok(config)
}
