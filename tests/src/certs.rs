//! A throwaway PKI for mTLS, as PEM files: a CA; the authority's server
//! certificate; client certificates for verifiers and operators; a server
//! certificate for a verifier's Check port; and a second, "rogue" CA with a
//! client certificate of its own, which the authority must refuse. `cargo
//! xtask certs DIR` and the mTLS tests both make theirs here.
//!
//! The CAs' private keys are never written: to add a certificate, make a new
//! set. Keys are ECDSA P-256; private key files are readable by the owner only.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// How long the certificates are valid from now.
const VALIDITY: time::Duration = time::Duration::days(365);
/// Names every server certificate carries, so loopback works out of the box.
const LOOPBACK_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// Where [`generate`] wrote each file.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub dir: PathBuf,
    /// The CA every genuine certificate chains to (`--tls-client-ca`, `--authority-ca`).
    pub ca: PathBuf,
    /// The authority's server certificate and key (`--tls-cert`, `--tls-key`).
    pub authority_cert: PathBuf,
    pub authority_key: PathBuf,
    /// A verifier's client certificate and key (`--tls-client-cert`, `--tls-client-key`).
    pub verifier_cert: PathBuf,
    pub verifier_key: PathBuf,
    /// A verifier's server certificate for its Check port (`tally-verifier --tls-cert`).
    pub check_cert: PathBuf,
    pub check_key: PathBuf,
    /// An operator's client certificate for the `tally` CLI.
    pub operator_cert: PathBuf,
    pub operator_key: PathBuf,
    /// A CA the authority does not trust, and a client certificate it signed.
    pub rogue_ca: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

impl CertFiles {
    fn in_dir(dir: &Path) -> Self {
        let f = |name: &str| dir.join(name);
        Self {
            dir: dir.to_owned(),
            ca: f("ca.pem"),
            authority_cert: f("authority.pem"),
            authority_key: f("authority.key"),
            verifier_cert: f("verifier-client.pem"),
            verifier_key: f("verifier-client.key"),
            check_cert: f("verifier-server.pem"),
            check_key: f("verifier-server.key"),
            operator_cert: f("operator-client.pem"),
            operator_key: f("operator-client.key"),
            rogue_ca: f("rogue-ca.pem"),
            rogue_cert: f("rogue-client.pem"),
            rogue_key: f("rogue-client.key"),
        }
    }

    fn all(&self) -> [&Path; 12] {
        [
            &self.ca,
            &self.authority_cert,
            &self.authority_key,
            &self.verifier_cert,
            &self.verifier_key,
            &self.check_cert,
            &self.check_key,
            &self.operator_cert,
            &self.operator_key,
            &self.rogue_ca,
            &self.rogue_cert,
            &self.rogue_key,
        ]
    }
}

/// Writes a fresh set into `dir` (created if missing). Server certificates
/// name 127.0.0.1 and localhost, plus `extra_names` (DNS names or IP
/// addresses). Refuses to overwrite an existing set.
pub fn generate(dir: &Path, extra_names: &[String]) -> anyhow::Result<CertFiles> {
    let files = CertFiles::in_dir(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for path in files.all() {
        ensure!(!path.exists(), "{} exists already: remove the old set or pick another directory", path.display());
    }
    let server_names: Vec<String> =
        LOOPBACK_NAMES.iter().map(|n| n.to_string()).chain(extra_names.iter().cloned()).collect();

    let (ca_pem, ca) = authority_of("Tally development CA")?;
    write(&files.ca, &ca_pem, false)?;
    leaf(
        &ca,
        "tally-authority",
        &server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
        &files.authority_cert,
        &files.authority_key,
    )?;
    leaf(&ca, "tally-verifier", &[], ExtendedKeyUsagePurpose::ClientAuth, &files.verifier_cert, &files.verifier_key)?;
    leaf(
        &ca,
        "tally-verifier",
        &server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
        &files.check_cert,
        &files.check_key,
    )?;
    leaf(&ca, "tally-operator", &[], ExtendedKeyUsagePurpose::ClientAuth, &files.operator_cert, &files.operator_key)?;

    let (rogue_pem, rogue) = authority_of("Rogue CA (not trusted by Tally)")?;
    write(&files.rogue_ca, &rogue_pem, false)?;
    leaf(&rogue, "tally-verifier", &[], ExtendedKeyUsagePurpose::ClientAuth, &files.rogue_cert, &files.rogue_key)?;
    Ok(files)
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    // A day back, so a clock slightly behind ours still accepts them.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + VALIDITY;
}

/// A self-signed CA: its certificate as PEM, and an issuer for leaves.
fn authority_of(name: &str) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate().context("generating a CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params);
    let cert = params.self_signed(&key).context("self-signing the CA")?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// A certificate signed by `issuer` for `purpose`, written with its key.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    names: &[String],
    purpose: ExtendedKeyUsagePurpose,
    cert_path: &Path,
    key_path: &Path,
) -> anyhow::Result<()> {
    let key = KeyPair::generate().context("generating a key")?;
    let mut params = CertificateParams::new(names.to_vec()).with_context(|| format!("names {names:?}"))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![purpose];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let cert = params.signed_by(&key, issuer).with_context(|| format!("signing {}", cert_path.display()))?;
    write(cert_path, &cert.pem(), false)?;
    write(key_path, &key.serialize_pem(), true)
}

fn write(path: &Path, pem: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pem.as_bytes()).with_context(|| format!("writing {}", path.display()))
}
