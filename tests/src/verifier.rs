//! The real `tally-verifier` as a process: its token in a file of its own temp
//! dir, `serve` on 127.0.0.1:0 (TLS to the authority and on the Check port
//! when asked), a connected Check/Status client, and waits that poll
//! `Status` instead of sleeping.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context;
use tally_proto::v1 as pb;
use tally_proto::v1::verifier_client::VerifierClient;
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::binary::binary_in;
use crate::certs::CertFiles;
use crate::child::Child;
use crate::poll::{DEADLINE, eventually};

/// The verifier binary.
pub const VERIFIER: crate::Bin = crate::Bin { package: "tally-verifier", name: "tally-verifier" };
const LISTENING: &str = "listening on ";

/// How to run a verifier.
#[derive(Debug, Clone)]
pub struct VerifierOptions {
    pub region: String,
    pub fail_closed_after: Duration,
    pub rust_log: String,
    /// Extra `serve` arguments.
    pub args: Vec<String>,
    /// Extra environment variables (e.g. `OTEL_*`).
    pub env: Vec<(String, String)>,
    /// TLS to the authority (`--authority-ca`, and the client certificate when given).
    pub authority_tls: Option<UpstreamTls>,
    /// Serve the Check port over TLS with this set's verifier server
    /// certificate; the harness's client trusts the set's CA.
    pub check_tls: Option<CertFiles>,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            region: "eu".into(),
            fail_closed_after: Duration::from_secs(2),
            rust_log: "info".into(),
            args: Vec::new(),
            env: Vec::new(),
            authority_tls: None,
            check_tls: None,
        }
    }
}

/// How a verifier speaks TLS to the authority.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// `--authority-ca`.
    pub ca: PathBuf,
    /// `--tls-client-cert` and `--tls-client-key`; none presented when `None`.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl UpstreamTls {
    /// The set's CA and its genuine verifier client certificate.
    pub fn genuine(c: &CertFiles) -> Self {
        Self { ca: c.ca.clone(), client: Some((c.verifier_cert.clone(), c.verifier_key.clone())) }
    }

    /// The set's CA, and no client certificate.
    pub fn without_client_cert(c: &CertFiles) -> Self {
        Self { ca: c.ca.clone(), client: None }
    }

    /// The set's CA, and the client certificate of the rogue CA.
    pub fn rogue_client_cert(c: &CertFiles) -> Self {
        Self { ca: c.ca.clone(), client: Some((c.rogue_cert.clone(), c.rogue_key.clone())) }
    }

    fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args = vec!["--authority-ca".into(), self.ca.clone().into()];
        if let Some((cert, key)) = &self.client {
            args.extend(["--tls-client-cert".into(), cert.into(), "--tls-client-key".into(), key.into()]);
        }
        args
    }
}

/// A running verifier. Dropping it kills the process.
#[derive(Debug)]
pub struct Verifier {
    child: Child,
    addr: SocketAddr,
    client: VerifierClient<Channel>,
    token_file: PathBuf,
    _dir: TempDir,
}

impl Verifier {
    /// Starts a verifier of `authority_url` with `token` (`role = verifier`).
    pub async fn start(authority_url: &str, token: &str, options: VerifierOptions) -> Self {
        Self::try_start(authority_url, token, options).await.expect("starting tally-verifier")
    }

    async fn try_start(authority_url: &str, token: &str, options: VerifierOptions) -> anyhow::Result<Self> {
        let (child, token_file, dir) = spawn(authority_url, token, &options)?;
        let line = child.wait_for_stdout(DEADLINE, |l| l.starts_with(LISTENING)).await?;
        let addr: SocketAddr = line[LISTENING.len()..].trim().parse().with_context(|| format!("parsing {line:?}"))?;
        let channel = match &options.check_tls {
            None => Channel::from_shared(format!("http://{addr}"))?.connect().await?,
            Some(c) => {
                let config = tally_proto::tls::client_config(&c.ca, None)?;
                Channel::from_shared(format!("https://{addr}"))?.tls_config(config)?.connect().await?
            }
        };
        let client = VerifierClient::new(channel);
        Ok(Self { child, addr, client, token_file, _dir: dir })
    }

    /// Runs a verifier that is expected to refuse to start: returns its exit
    /// status and the exited process (its output). Panics when it starts
    /// serving instead, or does neither within the deadline.
    pub async fn start_refused(authority_url: &str, token: &str, options: VerifierOptions) -> (ExitStatus, Child) {
        let (mut child, _token_file, _dir) = spawn(authority_url, token, &options).expect("spawning tally-verifier");
        let stdout = child.stdout().clone();
        let status = tokio::select! {
            status = child.wait(DEADLINE) => status.expect("tally-verifier was expected to exit"),
            Ok(line) = stdout.wait_for(DEADLINE, |l| l.starts_with(LISTENING)) => {
                panic!("tally-verifier was expected to refuse to start; it serves ({line:?})")
            }
        };
        (status, child)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn client(&self) -> VerifierClient<Channel> {
        self.client.clone()
    }

    pub fn process(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Pid of the process (tests read its `/proc/PID/fd`).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Replaces the token file's contents (the verifier re-reads it when refused).
    pub fn write_token(&self, token: &str) {
        std::fs::write(&self.token_file, token).expect("writing the verifier token file");
    }

    pub async fn status(&self) -> pb::StatusResponse {
        self.client().status(pb::StatusRequest {}).await.expect("Status").into_inner()
    }

    /// Waits until the verifier has caught up with the stream.
    pub async fn wait_synced(&self) -> pb::StatusResponse {
        eventually(DEADLINE, || async {
            let s = self.status().await;
            if s.synced && !s.fail_closed { Ok(s) } else { Err(format!("not synced: {s:?}")) }
        })
        .await
    }

    /// Waits until the verifier applied revocation `seq`.
    pub async fn wait_applied(&self, seq: u64) -> pb::StatusResponse {
        eventually(DEADLINE, || async {
            let s = self.status().await;
            if s.applied_seq >= seq { Ok(s) } else { Err(format!("applied {} < {seq}", s.applied_seq)) }
        })
        .await
    }

    /// Checks `bundle` for `action` (other fields empty).
    pub async fn check(&self, bundle: &str, action: &str) -> pb::CheckResponse {
        let req = pb::CheckRequest { bundle: bundle.into(), action: action.into(), ..Default::default() };
        self.client().check(req).await.expect("Check").into_inner()
    }

    pub fn kill_9(&mut self) -> ExitStatus {
        self.child.kill_9()
    }

    /// Its log (standard error) so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.child.stderr().snapshot()
    }

    /// The metrics endpoint, when started with `--metrics-listen 127.0.0.1:0`.
    pub async fn metrics_addr(&self) -> anyhow::Result<SocketAddr> {
        const METRICS: &str = "metrics on ";
        let line = self.child.wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await?;
        line[METRICS.len()..].trim().parse().with_context(|| format!("parsing {line:?}"))
    }

    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.stop(Duration::from_secs(10)).await
    }
}

/// Writes `token` to a file of a new temp dir and spawns `serve` with `options`.
fn spawn(authority_url: &str, token: &str, options: &VerifierOptions) -> anyhow::Result<(Child, PathBuf, TempDir)> {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("verifier.token");
    std::fs::write(&token_file, token)?;
    let fail_closed = format!("{}ms", options.fail_closed_after.as_millis());
    let mut args: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--authority".into(),
        authority_url.into(),
        "--token-file".into(),
        token_file.clone().into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--region".into(),
        options.region.clone().into(),
        "--fail-closed-after".into(),
        fail_closed.into(),
    ];
    if let Some(tls) = &options.authority_tls {
        args.extend(tls.args());
    }
    if let Some(c) = &options.check_tls {
        args.extend(["--tls-cert".into(), c.check_cert.clone().into(), "--tls-key".into(), c.check_key.clone().into()]);
    }
    args.extend(options.args.iter().map(Into::into));
    let bin = binary_in(VERIFIER.package, VERIFIER.name);
    let mut env = vec![("RUST_LOG", options.rust_log.as_str())];
    env.extend(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let child = Child::spawn(&bin, args, &env)?;
    Ok((child, token_file, dir))
}

/// `GET /metrics` from a metrics endpoint, as text.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: tally\r\nConnection: close\r\n\r\n").await?;
    let mut body = String::new();
    conn.read_to_string(&mut body).await?;
    let (head, body) = body.split_once("\r\n\r\n").context("no HTTP header end")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "metrics answered {head:?}");
    Ok(body.to_owned())
}

/// The value of the sample `name` (with its labels, if any) in Prometheus
/// text. The authority's `replica` label, which all its samples carry, is
/// left out of the comparison.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (without_replica(n) == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A sample's name and labels less a `replica` label.
fn without_replica(sample: &str) -> String {
    let Some((base, labels)) = sample.split_once('{') else { return sample.to_owned() };
    let labels = labels.strip_suffix('}').unwrap_or(labels);
    let kept: Vec<&str> = labels.split(',').filter(|l| !l.is_empty() && !l.starts_with("replica=")).collect();
    if kept.is_empty() { base.to_owned() } else { format!("{base}{{{}}}", kept.join(",")) }
}
