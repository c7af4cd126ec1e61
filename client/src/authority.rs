//! A typed client of the authority (`tally.v1.Authority`): orgs, keys,
//! minting, revocation, introspection and the revocation stream. Every call
//! carries the client's token as `authorization: Bearer …`.

use std::fmt;
use std::time::Duration;

use tally_proto::v1 as pb;
use tally_proto::v1::authority_client::AuthorityClient as Grpc;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig};

use crate::channel::{bearer_value, deadline, lazy_channel, lazy_channel_with};
use crate::convert;
use crate::error::Error;
use crate::types::{
    AuditEntry, AuditQuery, AuthorityStatus, Event, Introspection, Key, MintSpec, Minted, Org, Position, RevokeTarget,
};

/// Default deadline of a unary call (a mint or revoke waits for an fsync).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An authority client: cheap to clone (one shared HTTP/2 channel).
#[derive(Clone)]
pub struct AuthorityClient {
    grpc: Grpc<Channel>,
    bearer: Option<MetadataValue<Ascii>>,
    timeout: Duration,
}

impl fmt::Debug for AuthorityClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityClient")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AuthorityClient {
    /// A client of the authority at `url`, without a token (enough to revoke
    /// a token one holds). Connects on first use.
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(Self::from_channel(lazy_channel(url)?))
    }

    /// A client of the authority at an `https://` `url`, over TLS (with a
    /// client certificate when `tls` has an identity: mTLS).
    /// `tally_proto::tls::client_config` builds `tls` from PEM files.
    pub fn with_tls(url: &str, tls: ClientTlsConfig) -> Result<Self, Error> {
        Ok(Self::from_channel(lazy_channel_with(url, Some(tls))?))
    }

    /// A client on a channel the caller built.
    pub fn from_channel(channel: Channel) -> Self {
        Self { grpc: Grpc::new(channel), bearer: None, timeout: DEFAULT_TIMEOUT }
    }

    /// Presents `token` (an operator or verifier token) on every call.
    pub fn with_token(mut self, token: &str) -> Result<Self, Error> {
        self.bearer = Some(bearer_value(token)?);
        Ok(self)
    }

    /// Deadline of each unary call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        if let Some(value) = &self.bearer {
            req.metadata_mut().insert("authorization", value.clone());
        }
        req
    }

    /// Creates an org and its first root key; returns the key id.
    pub async fn create_org(&self, org: &str) -> Result<u64, Error> {
        let req = self.request(pb::CreateOrgRequest { org: org.to_owned() });
        Ok(deadline(self.timeout, self.grpc.clone().create_org(req)).await?.key_id)
    }

    /// The orgs the token may see.
    pub async fn list_orgs(&self) -> Result<Vec<Org>, Error> {
        let req = self.request(pb::ListOrgsRequest {});
        let resp = deadline(self.timeout, self.grpc.clone().list_orgs(req)).await?;
        Ok(resp.orgs.into_iter().map(convert::org).collect())
    }

    /// Gives `org` a new current key; returns its id.
    pub async fn rotate_key(&self, org: &str) -> Result<u64, Error> {
        let req = self.request(pb::RotateKeyRequest { org: org.to_owned() });
        Ok(deadline(self.timeout, self.grpc.clone().rotate_key(req)).await?.key_id)
    }

    /// Retires a key (tokens under it stop verifying); returns the stream seq.
    pub async fn retire_key(&self, key_id: u64) -> Result<u64, Error> {
        let req = self.request(pb::RetireKeyRequest { key_id });
        Ok(deadline(self.timeout, self.grpc.clone().retire_key(req)).await?.seq)
    }

    /// An org's keys.
    pub async fn list_keys(&self, org: &str) -> Result<Vec<Key>, Error> {
        let req = self.request(pb::ListKeysRequest { org: org.to_owned() });
        let resp = deadline(self.timeout, self.grpc.clone().list_keys(req)).await?;
        Ok(resp.keys.into_iter().map(convert::key).collect())
    }

    /// Reads the audit log, oldest entry first.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, Error> {
        let req = self.request(pb::ListAuditRequest {
            org: query.org.clone().unwrap_or_default(),
            after_id: query.after_id,
            limit: query.limit,
        });
        let resp = deadline(self.timeout, self.grpc.clone().list_audit(req)).await?;
        Ok(resp.entries.into_iter().map(convert::audit_entry).collect())
    }

    /// Mints a token.
    pub async fn mint(&self, spec: &MintSpec) -> Result<Minted, Error> {
        let req = self.request(pb::MintRequest {
            org: spec.org.clone(),
            caveats: spec.caveats.clone(),
            ttl_seconds: spec.ttl.map_or(0, |t| t.as_secs().max(1)),
            subject: spec.subject.clone().unwrap_or_default(),
            location: spec.location.clone().unwrap_or_default(),
        });
        deadline(self.timeout, self.grpc.clone().mint(req)).await.map(convert::minted)
    }

    /// Revokes; returns the stream seq of the (last) revocation event.
    pub async fn revoke(&self, target: &RevokeTarget, reason: &str) -> Result<u64, Error> {
        use pb::revoke_request::Target as T;
        let target = match target {
            RevokeTarget::Token(t) => T::Token(t.trim().to_owned()),
            RevokeTarget::Family(f) => T::Family(f.clone()),
            RevokeTarget::Key(k) => T::KeyId(*k),
            RevokeTarget::Org(o) => T::Org(o.clone()),
        };
        let req = self.request(pb::RevokeRequest { target: Some(target), reason: reason.to_owned() });
        Ok(deadline(self.timeout, self.grpc.clone().revoke(req)).await?.seq)
    }

    /// What the authority knows about a bundle.
    pub async fn introspect(&self, bundle: &str) -> Result<Introspection, Error> {
        let req = self.request(pb::IntrospectRequest { bundle: bundle.trim().to_owned() });
        deadline(self.timeout, self.grpc.clone().introspect(req)).await.map(convert::introspection)
    }

    /// The authority process's own view: replica id, database, log head and
    /// how recently it read it (unscoped operators).
    pub async fn status(&self) -> Result<AuthorityStatus, Error> {
        let req = self.request(pb::AuthorityStatusRequest {});
        deadline(self.timeout, self.grpc.clone().status(req)).await.map(convert::authority_status)
    }

    /// Follows the revocation stream from `position`: first the replay, then
    /// live events and heartbeats.
    pub async fn subscribe(&self, position: &Position) -> Result<Subscription, Error> {
        let req = self.request(pb::SubscribeRequest {
            from_seq: position.from_seq,
            epoch: position.epoch.clone(),
            from_digest: position.digest.clone(),
        });
        let stream = deadline(self.timeout, self.grpc.clone().subscribe(req)).await?;
        Ok(Subscription { stream })
    }
}

/// An open revocation stream.
#[derive(Debug)]
pub struct Subscription {
    stream: tonic::Streaming<pb::SubscribeEvent>,
}

impl Subscription {
    /// The next event; `Ok(None)` when the authority ended the stream (it
    /// shuts down). Events this SDK does not know are skipped.
    pub async fn next(&mut self) -> Result<Option<Event>, Error> {
        loop {
            match self.stream.message().await? {
                None => return Ok(None),
                Some(e) => {
                    if let Some(event) = convert::event(e) {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }
}
