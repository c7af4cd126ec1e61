//! The gRPC adapter: `tally.v1.Authority` on top of [`Authority`]. Only
//! translation lives here: bearer extraction, proto conversion, statuses.

mod convert;
mod status;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tally_proto::v1 as pb;
use tally_proto::v1::authority_server::Authority as AuthorityApi;
use tally_token::KeyId;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::authority::{AuditQuery, Authority, MintSpec, RevokeTarget};
use crate::log::Position;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct AuthorityService {
    authority: Arc<Authority>,
    shutdown: CancellationToken,
}

impl AuthorityService {
    /// Wraps the authority; streams end when `shutdown` fires.
    pub fn new(authority: Arc<Authority>, shutdown: CancellationToken) -> Self {
        Self { authority, shutdown }
    }
}

/// The bearer token from the `authorization` metadata, if any.
fn bearer<T>(req: &Request<T>) -> Result<Option<String>, Status> {
    let Some(value) = req.metadata().get("authorization") else { return Ok(None) };
    let value = value.to_str().map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
    let token = crate::authorizer::bearer_text(value.as_bytes())
        .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
    Ok(Some(token.to_owned()))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AuthorityApi for AuthorityService {
    #[tracing::instrument(name = "tally.v1.Authority/CreateOrg", skip_all, err(level = "info"))]
    async fn create_org(&self, req: Request<pb::CreateOrgRequest>) -> Result<Response<pb::CreateOrgResponse>, Status> {
        let bearer = bearer(&req)?;
        let org = req.into_inner().org;
        let key_id = self.authority.create_org(bearer.as_deref(), &org).await?;
        Ok(Response::new(pb::CreateOrgResponse { org, key_id: key_id.0 }))
    }

    #[tracing::instrument(name = "tally.v1.Authority/ListOrgs", skip_all, err(level = "info"))]
    async fn list_orgs(&self, req: Request<pb::ListOrgsRequest>) -> Result<Response<pb::ListOrgsResponse>, Status> {
        let orgs = self.authority.list_orgs(bearer(&req)?.as_deref()).await?;
        Ok(Response::new(pb::ListOrgsResponse { orgs: orgs.into_iter().map(convert::org_info).collect() }))
    }

    #[tracing::instrument(name = "tally.v1.Authority/RotateKey", skip_all, err(level = "info"))]
    async fn rotate_key(&self, req: Request<pb::RotateKeyRequest>) -> Result<Response<pb::RotateKeyResponse>, Status> {
        let bearer = bearer(&req)?;
        let org = req.into_inner().org;
        let key_id = self.authority.rotate_key(bearer.as_deref(), &org).await?;
        Ok(Response::new(pb::RotateKeyResponse { org, key_id: key_id.0 }))
    }

    #[tracing::instrument(name = "tally.v1.Authority/RetireKey", skip_all, err(level = "info"))]
    async fn retire_key(&self, req: Request<pb::RetireKeyRequest>) -> Result<Response<pb::RetireKeyResponse>, Status> {
        let bearer = bearer(&req)?;
        let key_id = req.into_inner().key_id;
        let seq = self.authority.retire_key(bearer.as_deref(), KeyId(key_id)).await?;
        Ok(Response::new(pb::RetireKeyResponse { key_id, seq }))
    }

    #[tracing::instrument(name = "tally.v1.Authority/ListKeys", skip_all, err(level = "info"))]
    async fn list_keys(&self, req: Request<pb::ListKeysRequest>) -> Result<Response<pb::ListKeysResponse>, Status> {
        let bearer = bearer(&req)?;
        let keys = self.authority.list_keys(bearer.as_deref(), &req.into_inner().org).await?;
        Ok(Response::new(pb::ListKeysResponse { keys: keys.into_iter().map(convert::key_info).collect() }))
    }

    #[tracing::instrument(name = "tally.v1.Authority/Mint", skip_all, err(level = "info"))]
    async fn mint(&self, req: Request<pb::MintRequest>) -> Result<Response<pb::MintResponse>, Status> {
        let bearer = bearer(&req)?;
        let r = req.into_inner();
        let spec = MintSpec {
            org: r.org,
            caveats: r.caveats,
            ttl: (r.ttl_seconds > 0).then(|| Duration::from_secs(r.ttl_seconds)),
            subject: Some(r.subject).filter(|s| !s.is_empty()),
            location: Some(r.location).filter(|s| !s.is_empty()),
        };
        let minted = self.authority.mint(bearer.as_deref(), spec).await?;
        Ok(Response::new(pb::MintResponse {
            token: minted.token,
            family: minted.family.to_hex(),
            key_id: minted.key_id.0,
            expires_at_unix_ms: minted.expires_at_ms.unwrap_or(0),
        }))
    }

    #[tracing::instrument(name = "tally.v1.Authority/Verify", skip_all, err(level = "info"))]
    async fn verify(&self, req: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        let bearer = bearer(&req)?;
        let verdict = self.authority.verify(bearer.as_deref(), &req.into_inner().bundle).await?;
        Ok(Response::new(convert::verify_response(verdict)))
    }

    #[tracing::instrument(name = "tally.v1.Authority/Revoke", skip_all, err(level = "info"))]
    async fn revoke(&self, req: Request<pb::RevokeRequest>) -> Result<Response<pb::RevokeResponse>, Status> {
        use pb::revoke_request::Target as T;
        let bearer = bearer(&req)?;
        let client = crate::admission::client_key(req.remote_addr());
        let r = req.into_inner();
        let target = match r.target {
            Some(T::Token(t)) => RevokeTarget::Token(t),
            Some(T::Family(f)) => RevokeTarget::Family(f),
            Some(T::KeyId(k)) => RevokeTarget::Key(KeyId(k)),
            Some(T::Org(o)) => RevokeTarget::Org(o),
            None => return Err(Status::invalid_argument("revoke needs a target: token, family, key_id or org")),
        };
        let seq = self.authority.revoke(bearer.as_deref(), Some(client), target, &r.reason).await?;
        Ok(Response::new(pb::RevokeResponse { seq }))
    }

    #[tracing::instrument(name = "tally.v1.Authority/Introspect", skip_all, err(level = "info"))]
    async fn introspect(
        &self,
        req: Request<pb::IntrospectRequest>,
    ) -> Result<Response<pb::IntrospectResponse>, Status> {
        let bearer = bearer(&req)?;
        let verdict = self.authority.introspect(bearer.as_deref(), &req.into_inner().bundle)?;
        let now = self.authority.now_ms();
        Ok(Response::new(convert::introspect_response(verdict, now)))
    }

    type SubscribeStream = EventStream;

    #[tracing::instrument(name = "tally.v1.Authority/Subscribe", skip_all, err(level = "info"))]
    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let bearer = bearer(&req)?;
        self.authority.authorize_subscribe(bearer.as_deref())?;
        let r = req.into_inner();
        let position = Position { from_seq: r.from_seq, epoch: r.epoch, digest: r.from_digest };
        let rx = self.authority.subscribe(position, self.shutdown.clone())?;
        // Stamped as tonic takes it for the wire, after any queueing here.
        let authority = self.authority.clone();
        let stream = ReceiverStream::new(rx).map(move |e| Ok(convert::stream_event(e, authority.now_ms())));
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(name = "tally.v1.Authority/ListAudit", skip_all, err(level = "info"))]
    async fn list_audit(&self, req: Request<pb::ListAuditRequest>) -> Result<Response<pb::ListAuditResponse>, Status> {
        let bearer = bearer(&req)?;
        let r = req.into_inner();
        let query = AuditQuery { org: Some(r.org).filter(|o| !o.is_empty()), after_id: r.after_id, limit: r.limit };
        let entries = self.authority.list_audit(bearer.as_deref(), query).await?;
        Ok(Response::new(pb::ListAuditResponse { entries: entries.into_iter().map(convert::audit_entry).collect() }))
    }

    async fn status(
        &self,
        req: Request<pb::AuthorityStatusRequest>,
    ) -> Result<Response<pb::AuthorityStatusResponse>, Status> {
        let s = self.authority.status(bearer(&req)?.as_deref())?;
        Ok(Response::new(pb::AuthorityStatusResponse {
            replica: s.replica,
            database: s.database,
            epoch: s.epoch,
            head_seq: s.head_seq,
            retained_from: s.retained_from,
            head_read_age_ms: i64::try_from(s.head_read_age.as_millis()).unwrap_or(i64::MAX),
            vouching: s.vouching,
            subscribers: s.subscribers,
        }))
    }
}
