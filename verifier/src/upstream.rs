//! The verifier's connection to the authority: Verify on a cache miss and the
//! revocation stream, each request carrying the verifier's own token, which
//! must be a verifier's (`role = verifier`, no other role).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tally_proto::v1 as pb;
use tally_proto::v1::authority_client::AuthorityClient;
use tally_service::telemetry;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status, Streaming};
use tracing::Instrument;

use tally_token::{Bundle, Limits, Predicate};

use crate::convert;
use crate::error::{Error, TokenRefused};
use crate::event::StreamMessage;
use crate::sync::Position;
use crate::verdict::Verdict;

/// Default deadline of a Verify call to the authority (`--authority-timeout`).
pub const DEFAULT_AUTHORITY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for a TCP connection to the authority.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings on idle connections, and how long an unanswered one may wait:
/// a connection that went dead silently (a black hole, a lost NAT entry) is
/// dropped and redialled instead of being reused until the kernel gives up.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// One authority the verifier may use.
#[derive(Clone)]
struct Target {
    /// As given (`--authority`), for the operator.
    url: String,
    endpoint: Endpoint,
    /// Verify's connection (lazy, redialled when it breaks).
    client: AuthorityClient<Channel>,
}

impl Target {
    fn new(url: &str) -> Result<Self, Error> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Config(format!("bad authority URL {url:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(KEEP_ALIVE)
            .keep_alive_while_idle(true);
        let client = AuthorityClient::new(endpoint.connect_lazy());
        Ok(Self { url: url.to_owned(), endpoint, client })
    }
}

/// A handle to the authority: one or several (replicas of one database), in
/// order of preference. The stream and Verify use one at a time, the one
/// the last subscription reached (see [`Upstream::subscribe`]). `Debug`
/// hides the bearer token.
#[derive(Clone)]
pub struct Upstream {
    targets: Arc<[Target]>,
    /// Index into `targets` of the authority in use.
    current: Arc<AtomicUsize>,
    bearer: Arc<RwLock<MetadataValue<Ascii>>>,
    /// Where the token came from: re-read when the authority refuses it, so
    /// an operator can replace the token without restarting the verifier.
    token_file: Option<PathBuf>,
    timeout: Duration,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<&str> = self.targets.iter().map(|t| t.url.as_str()).collect();
        f.debug_struct("Upstream").field("authorities", &urls).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Upstream {
    /// Prepares a lazy connection to `url` (nothing is dialled until first use).
    pub fn new(url: &str, token: &str, timeout: Duration) -> Result<Self, Error> {
        Self::with_authorities(&[url.to_owned()], token, timeout)
    }

    /// Prepares lazy connections to `urls`, the first preferred (at least one).
    pub fn with_authorities(urls: &[String], token: &str, timeout: Duration) -> Result<Self, Error> {
        if urls.is_empty() {
            return Err(Error::Config("no authority URL".into()));
        }
        let targets = urls.iter().map(|u| Target::new(u)).collect::<Result<Vec<_>, _>>()?;
        let bearer = Arc::new(RwLock::new(bearer_value(token)?));
        Ok(Self { targets: targets.into(), current: Arc::new(AtomicUsize::new(0)), bearer, token_file: None, timeout })
    }

    /// The authority in use: its position in the list (0: the preferred
    /// one) and its URL.
    pub fn in_use(&self) -> (usize, &str) {
        let i = self.current.load(Ordering::Relaxed);
        (i, &self.targets[i].url)
    }

    /// Speaks TLS to the authority: verifies its certificate and, when `tls`
    /// has an identity, presents a client certificate, on Verify's connection
    /// and on every connection the stream dials. The URL must be `https://`.
    pub fn with_tls(mut self, tls: ClientTlsConfig) -> Result<Self, Error> {
        let mut targets = Vec::with_capacity(self.targets.len());
        for t in self.targets.iter() {
            if t.endpoint.uri().scheme_str() != Some("https") {
                return Err(Error::Config(format!("TLS needs an https:// authority URL, not {}", t.endpoint.uri())));
            }
            let endpoint =
                t.endpoint.clone().tls_config(tls.clone()).map_err(|e| Error::Config(format!("authority TLS: {e}")))?;
            let client = AuthorityClient::new(endpoint.connect_lazy());
            targets.push(Target { url: t.url.clone(), endpoint, client });
        }
        self.targets = targets.into();
        Ok(self)
    }

    /// Like [`Upstream::with_authorities`], with the token read from `path`
    /// (and re-read on refusal); refused unless it is a verifier's token.
    pub fn with_token_file(urls: &[String], path: &Path, timeout: Duration) -> Result<Self, Error> {
        let token = read_verifier_token(path)?;
        let mut upstream = Self::with_authorities(urls, &token, timeout)?;
        upstream.token_file = Some(path.to_owned());
        Ok(upstream)
    }

    /// Re-reads the token file (after the authority refused the token); the
    /// old token stays when the file no longer holds a verifier's token.
    pub fn reload_token(&self) {
        let Some(path) = &self.token_file else { return };
        match read_verifier_token(path).and_then(|t| bearer_value(&t)) {
            Ok(value) => *self.bearer.write().expect("bearer lock") = value,
            Err(e) => tracing::warn!(error = %e, "cannot reload the verifier token; keeping the old one"),
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
    pub async fn verify(&self, bundle: String) -> Result<Verdict, Status> {
        let span = telemetry::client_span("tally.v1.Authority/Verify");
        let mut req = span.in_scope(|| self.request(pb::VerifyRequest { bundle }));
        req.set_timeout(self.timeout);
        let mut client = self.targets[self.current.load(Ordering::Relaxed)].client.clone();
        let call = tokio::time::timeout(self.timeout, client.verify(req)).instrument(span);
        match call.await {
            Ok(r) => r.map(|r| convert::verdict(r.into_inner())),
            Err(_) => Err(Status::deadline_exceeded("authority did not answer in time")),
        }
    }

    /// Opens the revocation stream from `pos`, on a connection of its own
    /// dialled now (a stream that went silent is never retried over the
    /// connection that may have died under it): at the most preferred
    /// authority that answers, trying them in order, which then serves
    /// Verify too. Replicas share one log, so the position holds at each.
    /// The error is the last one's.
    pub(crate) async fn subscribe(&self, pos: &Position) -> Result<Events, Status> {
        let mut failed = None;
        for (i, target) in self.targets.iter().enumerate() {
            match self.subscribe_at(target, pos).await {
                Ok(events) => {
                    let was = self.current.swap(i, Ordering::Relaxed);
                    if was != i {
                        tracing::warn!(authority = %target.url, preference = i, "following another authority");
                    }
                    return Ok(events);
                }
                Err(status) => {
                    if self.targets.len() > 1 {
                        tracing::info!(authority = %target.url, code = ?status.code(), "authority not reachable");
                    }
                    // A refused token is refused by every replica alike.
                    if status.code() == tonic::Code::Unauthenticated {
                        return Err(status);
                    }
                    failed = Some(status);
                }
            }
        }
        Err(failed.expect("at least one authority"))
    }

    async fn subscribe_at(&self, target: &Target, pos: &Position) -> Result<Events, Status> {
        let req = self.request(pb::SubscribeRequest {
            from_seq: pos.applied_seq,
            epoch: pos.epoch.clone(),
            from_digest: pos.digest.clone(),
        });
        let open = async {
            let channel = target
                .endpoint
                .connect()
                .await
                .map_err(|e| Status::unavailable(format!("cannot connect: {}", error_chain(&e))))?;
            AuthorityClient::new(channel).subscribe(req).await
        };
        match tokio::time::timeout(self.timeout, open).await {
            Ok(r) => r.map(|r| Events(r.into_inner())),
            Err(_) => Err(Status::deadline_exceeded("authority did not answer in time")),
        }
    }
}

/// The revocation stream, read in the verifier's terms.
pub(crate) struct Events(Streaming<pb::SubscribeEvent>);

impl Events {
    /// The next message; `None` once the authority ended the stream.
    pub(crate) async fn message(&mut self) -> Result<Option<StreamMessage>, Status> {
        Ok(self.0.message().await?.map(convert::stream_message))
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

/// The token in `path`, if it is a verifier's.
fn read_verifier_token(path: &Path) -> Result<String, Error> {
    let token = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read token file {}: {e}", path.display())))?;
    verifier_role(token.trim()).map_err(|why| why.in_file(path))?;
    Ok(token)
}

/// Refuses a token that is not a verifier's: it must parse, carry a `role`
/// caveat, and every `role` caveat must say `verifier`. A verifier runs next
/// to the services, often where more people can read its files than the
/// authority's; an operator token there hands whoever reads it the power to
/// mint and revoke (and breaks the threat model's "a compromised verifier
/// can never act on Tally's API"). The verifier holds no root key, so it
/// reads the caveats only; whether the token is genuine is the authority's
/// to say, on the first call.
fn verifier_role(token: &str) -> Result<(), TokenRefused> {
    let bundle = Bundle::parse(token, &Limits::default()).map_err(|_| TokenRefused::Malformed)?;
    let mut found: Vec<String> = Vec::new();
    let first_party = std::iter::once(&bundle.root)
        .chain(&bundle.discharges)
        .flat_map(|m| m.caveats())
        .filter(|c| !c.is_third_party());
    for caveat in first_party {
        match Predicate::parse_bytes(&caveat.id) {
            Ok(Predicate::Role(role)) if !found.contains(&role) => found.push(role),
            _ => {}
        }
    }
    match found.as_slice() {
        [] => Err(TokenRefused::NoRole),
        [role] if role == "verifier" => Ok(()),
        _ => Err(TokenRefused::WrongRole { found }),
    }
}

fn bearer_value(token: &str) -> Result<MetadataValue<Ascii>, Error> {
    let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.trim())
        .parse()
        .map_err(|_| Error::Config("the verifier token is not valid header text".into()))?;
    // Never indexed by HTTP/2 header compression.
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_token::{KeyId, Macaroon, RootKey, TallyId};

    /// A file of this test process (no tempfile dependency here); removed on drop.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str) -> Self {
            Self(std::env::temp_dir().join(format!("tally-verifier-{}-{name}", std::process::id())))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn token(caveats: &[&str]) -> String {
        let mut m = Macaroon::mint(&RootKey::from_bytes([9; 32]), TallyId::new(KeyId(1), [4; 16]).encode(), None);
        for &c in caveats {
            m.add_first_party(c);
        }
        m.to_text()
    }

    #[test]
    fn only_a_verifier_role_and_no_other_passes() {
        assert_eq!(verifier_role(&token(&["role = verifier"])), Ok(()));
        assert_eq!(
            verifier_role(&token(&["role = verifier", "expires < 2999-01-01T00:00:00Z", "role = verifier"])),
            Ok(())
        );
        assert_eq!(verifier_role(&token(&[])), Err(TokenRefused::NoRole));
        assert_eq!(verifier_role(&token(&["action in verify"])), Err(TokenRefused::NoRole));
        assert_eq!(
            verifier_role(&token(&["role = operator"])),
            Err(TokenRefused::WrongRole { found: vec!["operator".into()] })
        );
        // Two roles never hold: attenuating an operator token does not make a verifier's.
        assert_eq!(
            verifier_role(&token(&["role = operator", "role = verifier"])),
            Err(TokenRefused::WrongRole { found: vec!["operator".into(), "verifier".into()] })
        );
        assert_eq!(verifier_role("not a token"), Err(TokenRefused::Malformed));
        assert_eq!(verifier_role(""), Err(TokenRefused::Malformed));
    }

    #[test]
    fn a_refused_token_file_is_named_with_its_role_and_never_quoted() {
        let file = TempFile::new("refused.token");
        let path = &file.0;
        let operator = token(&["role = operator"]);
        std::fs::write(path, format!("{operator}\n")).unwrap();
        let err = Upstream::with_token_file(&["http://127.0.0.1:9".into()], path, Duration::from_secs(1)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()) && text.contains("`operator`"), "{text}");
        assert!(!text.contains(&operator[..16]) && !text.contains('\n'), "{text}");
        let long = format!("role = {}", "x".repeat(200));
        let why = verifier_role(&token(&[&long])).unwrap_err().to_string();
        assert!(why.len() < 100, "{why}");
    }

    #[tokio::test]
    async fn a_reload_keeps_the_old_token_when_the_file_holds_no_verifier_token() {
        let file = TempFile::new("reloaded.token");
        let path = &file.0;
        let (verifier, next) = (token(&["role = verifier"]), token(&["role = verifier", "action in verify"]));
        std::fs::write(path, &verifier).unwrap();
        let upstream = Upstream::with_token_file(&["http://127.0.0.1:9".into()], path, Duration::from_secs(1)).unwrap();
        let bearer = || upstream.bearer.read().unwrap().to_str().unwrap().to_owned();
        assert_eq!(bearer(), format!("Bearer {verifier}"));
        std::fs::write(path, token(&["role = operator"])).unwrap();
        upstream.reload_token();
        assert_eq!(bearer(), format!("Bearer {verifier}"), "an operator token is not taken");
        std::fs::write(path, &next).unwrap();
        upstream.reload_token();
        assert_eq!(bearer(), format!("Bearer {next}"), "a verifier token is");
    }
}
