//! The gRPC adapter: `tally.v1.Verifier` on top of [`Verifier`].

use std::sync::Arc;

use tally_proto::v1 as pb;
use tally_proto::v1::verifier_server::Verifier as VerifierApi;
use tally_token::RequestFields;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::verifier::{CheckRequest, Verifier};

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct VerifierService {
    verifier: Arc<Verifier>,
}

impl VerifierService {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self { verifier }
    }
}

#[tonic::async_trait]
impl VerifierApi for VerifierService {
    #[tracing::instrument(name = "tally.v1.Verifier/Check", level = "debug", skip_all, err(level = "info"))]
    async fn check(&self, req: Request<pb::CheckRequest>) -> Result<Response<pb::CheckResponse>, Status> {
        let r = req.into_inner();
        // Bounded before anything is done with them: a caveat's cost grows with the text it is matched against.
        let limits = &self.verifier.settings().field_limits;
        let fields = RequestFields::parse(&r.action, &r.resource, &r.service, &r.subject, &r.client_ip, &r.org, limits)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let check = CheckRequest::new(&r.bundle, fields);
        let outcome = self.verifier.check(&check).await?;
        Ok(Response::new(convert::check_response(outcome)))
    }

    #[tracing::instrument(name = "tally.v1.Verifier/Status", skip_all, err(level = "info"))]
    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.verifier.status()))
    }
}

impl Verifier {
    /// The operator's view.
    pub fn status(&self) -> pb::StatusResponse {
        let pos = self.sync.position();
        pb::StatusResponse {
            region: self.settings.region.clone(),
            epoch: pos.epoch,
            applied_seq: pos.applied_seq,
            head_seq: pos.head_seen,
            cache_entries: self.cache.len() as u64,
            last_contact_age_ms: self.sync.silence().map_or(-1, |d| d.as_millis() as i64),
            synced: self.sync.synced(),
            fail_closed: self.sync.fail_closed(),
            resets: self.sync.resets(),
            authority_verifies: self.authority_verifies(),
            authority: self.upstream.in_use().1.to_owned(),
        }
    }
}
