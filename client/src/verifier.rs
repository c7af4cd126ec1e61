//! A typed client of a regional verifier (`tally.v1.Verifier`): what a
//! service calls, next to it, to check a token for a request.

use std::time::Duration;

use tally_proto::v1 as pb;
use tally_proto::v1::verifier_client::VerifierClient as Grpc;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::channel::{deadline, lazy_channel, lazy_channel_with};
use crate::convert;
use crate::error::Error;
use crate::types::{Check, Decision, VerifierStatus};

/// Default deadline of a Check: a verifier answers from its cache in
/// microseconds, and a cold miss is one authority round trip.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A verifier client: cheap to clone (one shared HTTP/2 channel).
#[derive(Debug, Clone)]
pub struct VerifierClient {
    grpc: Grpc<Channel>,
    timeout: Duration,
}

impl VerifierClient {
    /// A client of the verifier at `url`. Connects on first use, so this
    /// succeeds while the verifier is down; calls then fail `Unavailable`.
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(Self::from_channel(lazy_channel(url)?))
    }

    /// A client of the verifier at an `https://` `url`, over TLS.
    /// `tally_proto::tls::client_config` builds `tls` from PEM files.
    pub fn with_tls(url: &str, tls: ClientTlsConfig) -> Result<Self, Error> {
        Ok(Self::from_channel(lazy_channel_with(url, Some(tls))?))
    }

    /// A client on a channel the caller built (custom timeouts…).
    pub fn from_channel(channel: Channel) -> Self {
        Self { grpc: Grpc::new(channel), timeout: DEFAULT_CHECK_TIMEOUT }
    }

    /// Deadline of each call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Is the bundle valid for this request? A denial is an `Ok` decision;
    /// errors are for malformed input and an unreachable verifier.
    pub async fn check(&self, check: &Check) -> Result<Decision, Error> {
        let req = pb::CheckRequest {
            bundle: check.bundle.clone(),
            action: check.action.clone().unwrap_or_default(),
            resource: check.resource.clone().unwrap_or_default(),
            service: check.service.clone().unwrap_or_default(),
            client_ip: check.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            subject: check.subject.clone().unwrap_or_default(),
            org: check.org.clone().unwrap_or_default(),
        };
        let mut grpc = self.grpc.clone();
        deadline(self.timeout, grpc.check(req)).await.map(convert::decision)
    }

    /// The verifier's view of the revocation stream and its cache.
    pub async fn status(&self) -> Result<VerifierStatus, Error> {
        let mut grpc = self.grpc.clone();
        deadline(self.timeout, grpc.status(pb::StatusRequest {})).await.map(convert::status)
    }
}
