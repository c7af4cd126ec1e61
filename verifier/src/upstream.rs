//! The verifier's connection to the authority: Verify on a cache miss and the
//! revocation stream, each request carrying the verifier's own token.

use std::fmt;
use std::time::Duration;

use tally_proto::v1 as pb;
use tally_proto::v1::authority_client::AuthorityClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status, Streaming};

use crate::error::Error;
use crate::sync::Position;

/// How long to wait for a TCP connection to the authority.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A handle to the authority. `Debug` hides the bearer token.
#[derive(Clone)]
pub struct Upstream {
    client: AuthorityClient<Channel>,
    bearer: MetadataValue<Ascii>,
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
            .tcp_nodelay(true);
        let bearer = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| Error::Config("the verifier token is not valid header text".into()))?;
        Ok(Self { client: AuthorityClient::new(endpoint.connect_lazy()), bearer, timeout })
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut().insert("authorization", self.bearer.clone());
        req
    }

    /// Asks the authority to verify a bundle (request-independent).
    pub async fn verify(&self, bundle: &str) -> Result<pb::VerifyResponse, Status> {
        let mut req = self.request(pb::VerifyRequest { bundle: bundle.to_owned() });
        req.set_timeout(self.timeout);
        let mut client = self.client.clone();
        match tokio::time::timeout(self.timeout, client.verify(req)).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("authority did not answer in time")),
        }
    }

    /// Opens the revocation stream from `pos`.
    pub async fn subscribe(&self, pos: &Position) -> Result<Streaming<pb::SubscribeEvent>, Status> {
        let req = self.request(pb::SubscribeRequest {
            from_seq: pos.applied_seq,
            epoch: pos.epoch.clone(),
            from_digest: pos.digest.clone(),
        });
        let mut client = self.client.clone();
        match tokio::time::timeout(self.timeout, client.subscribe(req)).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("authority did not answer in time")),
        }
    }
}
