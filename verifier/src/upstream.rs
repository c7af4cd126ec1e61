//! The verifier's connection to the authority: Verify on a cache miss and the
//! revocation stream, each request carrying the verifier's own token.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tally_proto::telemetry;
use tally_proto::v1 as pb;
use tally_proto::v1::authority_client::AuthorityClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status, Streaming};
use tracing::Instrument;

use crate::error::Error;
use crate::sync::Position;

/// How long to wait for a TCP connection to the authority.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings on idle connections, and how long an unanswered one may wait:
/// a connection that went dead silently (a black hole, a lost NAT entry) is
/// dropped and redialled instead of being reused until the kernel gives up.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// A handle to the authority. `Debug` hides the bearer token.
#[derive(Clone)]
pub struct Upstream {
    endpoint: Endpoint,
    /// Verify's connection (lazy, redialled when it breaks).
    client: AuthorityClient<Channel>,
    bearer: Arc<RwLock<MetadataValue<Ascii>>>,
    /// Where the token came from: re-read when the authority refuses it, so
    /// an operator can replace the token without restarting the verifier.
    token_file: Option<PathBuf>,
    timeout: Duration,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Upstream {
    /// Prepares a lazy connection to `url` (nothing is dialled until first use).
    pub fn new(url: &str, token: &str, timeout: Duration) -> Result<Self, Error> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Config(format!("bad authority URL {url:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(KEEP_ALIVE)
            .keep_alive_while_idle(true);
        let bearer = Arc::new(RwLock::new(bearer_value(token)?));
        let client = AuthorityClient::new(endpoint.connect_lazy());
        Ok(Self { endpoint, client, bearer, token_file: None, timeout })
    }

    /// Speaks TLS to the authority: verifies its certificate and, when `tls`
    /// has an identity, presents a client certificate, on Verify's connection
    /// and on every connection the stream dials. The URL must be `https://`.
    pub fn with_tls(mut self, tls: ClientTlsConfig) -> Result<Self, Error> {
        if self.endpoint.uri().scheme_str() != Some("https") {
            return Err(Error::Config(format!("TLS needs an https:// authority URL, not {}", self.endpoint.uri())));
        }
        self.endpoint = self.endpoint.tls_config(tls).map_err(|e| Error::Config(format!("authority TLS: {e}")))?;
        self.client = AuthorityClient::new(self.endpoint.connect_lazy());
        Ok(self)
    }

    /// Like [`Upstream::new`], with the token read from `path` (and re-read on refusal).
    pub fn with_token_file(url: &str, path: &Path, timeout: Duration) -> Result<Self, Error> {
        let token = read_token(path)?;
        let mut upstream = Self::new(url, &token, timeout)?;
        upstream.token_file = Some(path.to_owned());
        Ok(upstream)
    }

    /// Re-reads the token file (after the authority refused the token).
    pub fn reload_token(&self) {
        let Some(path) = &self.token_file else { return };
        match read_token(path).and_then(|t| bearer_value(&t)) {
            Ok(value) => *self.bearer.write().expect("bearer lock") = value,
            Err(e) => tracing::warn!(error = %e, "cannot reload the verifier token"),
        }
    }

    /// A request with the verifier's token and the current span's trace context.
    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut().insert("authorization", self.bearer.read().expect("bearer lock").clone());
        telemetry::inject(req.metadata_mut());
        req
    }

    /// The deadline of a Verify call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Asks the authority to verify a bundle (request-independent).
    pub async fn verify(&self, bundle: String) -> Result<pb::VerifyResponse, Status> {
        let span = telemetry::client_span("tally.v1.Authority/Verify");
        let mut req = span.in_scope(|| self.request(pb::VerifyRequest { bundle }));
        req.set_timeout(self.timeout);
        let mut client = self.client.clone();
        let call = tokio::time::timeout(self.timeout, client.verify(req)).instrument(span);
        match call.await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("authority did not answer in time")),
        }
    }

    /// Opens the revocation stream from `pos`, on a connection of its own
    /// dialled now: a stream that went silent is never retried over the
    /// connection that may have died under it.
    pub async fn subscribe(&self, pos: &Position) -> Result<Streaming<pb::SubscribeEvent>, Status> {
        let req = self.request(pb::SubscribeRequest {
            from_seq: pos.applied_seq,
            epoch: pos.epoch.clone(),
            from_digest: pos.digest.clone(),
        });
        let open = async {
            let channel = self
                .endpoint
                .connect()
                .await
                .map_err(|e| Status::unavailable(format!("cannot connect: {}", error_chain(&e))))?;
            AuthorityClient::new(channel).subscribe(req).await
        };
        match tokio::time::timeout(self.timeout, open).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("authority did not answer in time")),
        }
    }
}

/// An error with its causes: tonic's transport error says only "transport
/// error"; the TLS or TCP reason is in its sources.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = cause.source();
    }
    text
}

fn read_token(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read token file {}: {e}", path.display())))
}

fn bearer_value(token: &str) -> Result<MetadataValue<Ascii>, Error> {
    let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.trim())
        .parse()
        .map_err(|_| Error::Config("the verifier token is not valid header text".into()))?;
    // Never indexed by HTTP/2 header compression.
    value.set_sensitive(true);
    Ok(value)
}
