//! Envoy's ext_authz v3 (`envoy.service.auth.v3.Authorization/Check`) on a
//! real verifier, driven by a tonic client shaped exactly as Envoy's filter
//! calls it: allowed requests get Tally's `x-tally-*` headers for the
//! upstream (the client's forged ones replaced or removed); denials carry the
//! HTTP status, `x-tally-reason` and `WWW-Authenticate`; with the authority
//! gone the verifier fails closed with 503. No response and no log line
//! holds any part of the token.

use std::collections::HashMap;
use std::time::Duration;

use tally_proto::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use tally_proto::envoy::config::core::v3::{Address, HeaderMap, HeaderValue, SocketAddress, address};
use tally_proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use tally_proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tally_proto::envoy::service::auth::v3::check_response::HttpResponse;
use tally_proto::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::{MintRequest, RevokeRequest};
use tally_tests::{Authority, Verifier, VerifierOptions, bearer, eventually};
use tonic::transport::Channel;

/// `google.rpc.Code`s Envoy reads.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// One request as Envoy's HTTP filter describes it.
struct Http<'a> {
    method: &'a str,
    path: &'a str,
    source: Option<&'a str>,
    headers: Vec<(&'a str, String)>,
    /// Envoy's `encode_raw_headers: true`: `header_map` instead of `headers`.
    raw: bool,
    /// Route `context_extensions`.
    extensions: Vec<(&'a str, &'a str)>,
}

impl<'a> Http<'a> {
    fn new(method: &'a str, path: &'a str) -> Self {
        Self { method, path, source: Some("10.1.2.3"), headers: Vec::new(), raw: false, extensions: Vec::new() }
    }

    fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn from(mut self, source: Option<&'a str>) -> Self {
        self.source = source;
        self
    }

    fn check_request(&self) -> CheckRequest {
        // Envoy includes the pseudo-headers and lower-cases every name.
        let mut all: Vec<(String, String)> = vec![
            (":method".into(), self.method.into()),
            (":path".into(), self.path.into()),
            (":authority".into(), "docs.example".into()),
            (":scheme".into(), "http".into()),
        ];
        all.extend(self.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())));
        let mut http = HttpRequest {
            id: "4711".into(),
            method: self.method.into(),
            path: self.path.into(),
            host: "docs.example".into(),
            scheme: "http".into(),
            protocol: "HTTP/1.1".into(),
            size: -1,
            ..Default::default()
        };
        if self.raw {
            let headers = all
                .into_iter()
                .map(|(key, v)| HeaderValue { key, value: String::new(), raw_value: v.into_bytes() })
                .collect();
            http.header_map = Some(HeaderMap { headers });
        } else {
            http.headers = all.into_iter().collect();
        }
        let socket = |ip: &str, port| Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.into(),
                port_specifier: Some(tally_proto::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                    port,
                )),
                ..Default::default()
            })),
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                source: self.source.map(|ip| Peer { address: Some(socket(ip, 53124)), ..Default::default() }),
                destination: Some(Peer { address: Some(socket("127.0.0.1", 10000)), ..Default::default() }),
                request: Some(Request { http: Some(http) }),
                context_extensions: self.extensions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            }),
        }
    }
}

/// Envoy's side of the call.
struct Envoy {
    client: AuthorizationClient<Channel>,
    /// Every response seen, to prove none carries the token.
    seen: Vec<CheckResponse>,
}

impl Envoy {
    async fn connect(verifier: &Verifier) -> Self {
        let client = AuthorizationClient::connect(format!("http://{}", verifier.addr())).await.expect("connecting");
        Self { client, seen: Vec::new() }
    }

    async fn check(&mut self, http: &Http<'_>) -> CheckResponse {
        let r = self.client.check(http.check_request()).await.expect("ext_authz Check").into_inner();
        self.seen.push(r.clone());
        r
    }
}

/// What Envoy forwards upstream: the headers it sets (name → value, append
/// action) and the names it removes.
fn allowed(r: &CheckResponse) -> (HashMap<String, (String, i32)>, Vec<String>) {
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(OK), "{r:?}");
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else { panic!("not an OK response: {r:?}") };
    let set = ok
        .headers
        .iter()
        .map(|h| {
            let hv = h.header.as_ref().expect("header");
            (hv.key.clone(), (hv.value.clone(), h.append_action))
        })
        .collect();
    (set, ok.headers_to_remove.clone())
}

/// Envoy's local reply: HTTP status, headers, body; and the gRPC status code.
struct Reply {
    http: i32,
    rpc: i32,
    headers: HashMap<String, String>,
    body: String,
}

fn denied(r: &CheckResponse) -> Reply {
    let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else { panic!("not a denial: {r:?}") };
    Reply {
        http: d.status.as_ref().map_or(0, |s| s.code),
        rpc: r.status.as_ref().map_or(0, |s| s.code),
        headers: d.headers.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect(),
        body: d.body.clone(),
    }
}

/// No 12-character run of the token's text (past its `tly_` prefix) in `text`.
fn assert_no_token_in(text: &str, token: &str, what: &str) {
    let body = token.strip_prefix("tly_").unwrap_or(token);
    let chars: Vec<char> = body.chars().collect();
    for w in chars.windows(12) {
        let w: String = w.iter().collect();
        assert!(!text.contains(&w), "{what} holds part of the token ({w})");
    }
}

async fn mint(a: &Authority, subject: &str, caveats: &[&str]) -> tally_proto::v1::MintResponse {
    let req = MintRequest {
        org: "acme".into(),
        subject: subject.into(),
        caveats: caveats.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    a.client().mint(bearer(req, a.bootstrap())).await.expect("Mint").into_inner()
}

async fn start(fail_closed_after: Duration) -> (Authority, Verifier) {
    let authority = Authority::start().await;
    authority.create_org("acme").await;
    let token = authority.system_token("verifier", &[]).await;
    let options = VerifierOptions {
        region: "eu".into(),
        fail_closed_after,
        // Debug, so the ext_authz decisions are logged too (and checked for tokens).
        rust_log: "info,tally_verifier=debug".into(),
        ..VerifierOptions::default()
    };
    let verifier = Verifier::start(&authority.url(), &token, options).await;
    verifier.wait_synced().await;
    (authority, verifier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_like_envoy() {
    let (authority, mut verifier) = start(Duration::from_secs(10)).await;
    let minted =
        mint(&authority, "alice", &["action in read,write", "resource = docs/*", "client-ip in 10.0.0.0/8"]).await;
    let token = minted.token.clone();
    let mut envoy = Envoy::connect(&verifier).await;

    // Allowed: Tally's headers overwrite the forged ones; other x-tally-* go.
    let forged = Http::new("GET", "/docs/42?page=2")
        .bearer(&token)
        .header("x-tally-org", "evil")
        .header("X-Tally-Subject", "mallory")
        .header("x-tally-family", "00")
        .header("x-tally-admin", "yes")
        .header("x-request-id", "4711");
    let (set, removed) = allowed(&envoy.check(&forged).await);
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
    assert_eq!(set.get("x-tally-org"), Some(&("acme".to_owned(), overwrite)));
    assert_eq!(set.get("x-tally-subject"), Some(&("alice".to_owned(), overwrite)));
    assert_eq!(set.get("x-tally-family"), Some(&(minted.family.clone(), overwrite)));
    assert_eq!(set.len(), 3, "{set:?}");
    assert_eq!(removed, ["x-tally-admin"], "removed, and nothing set is also removed");

    // The raw header form (`encode_raw_headers`), a write, and the service extension.
    let mut raw = Http::new("PUT", "/docs/42").bearer(&token);
    raw.raw = true;
    raw.extensions.push(("tally_service", "docs"));
    allowed(&envoy.check(&raw).await);

    // No token: 401 with a challenge.
    let r = denied(&envoy.check(&Http::new("GET", "/docs/42")).await);
    assert_eq!((r.http, r.rpc), (401, UNAUTHENTICATED));
    assert_eq!(r.headers["x-tally-reason"], "missing_token");
    assert!(r.headers["www-authenticate"].starts_with("Bearer"), "{:?}", r.headers);
    let r = denied(&envoy.check(&Http::new("GET", "/docs/42").header("authorization", "Basic YWxpY2U6c2VjcmV0")).await);
    assert_eq!((r.http, r.headers["x-tally-reason"].as_str()), (401, "missing_token"));

    // Malformed (a mangled copy of the real token): 401 invalid_token.
    let mangled = format!("{}!{}", &token[..token.len() / 2], &token[token.len() / 2..]);
    let r = denied(&envoy.check(&Http::new("GET", "/docs/42").bearer(&mangled)).await);
    assert_eq!((r.http, r.rpc), (401, UNAUTHENTICATED));
    assert_eq!(r.headers["x-tally-reason"], "malformed");
    assert!(r.headers["www-authenticate"].contains(r#"error="invalid_token""#), "{:?}", r.headers);

    // Valid token, request it does not allow: 403.
    for (http, caveat) in [
        (Http::new("DELETE", "/docs/42").bearer(&token), "action in read,write"),
        (Http::new("GET", "/admin/users").bearer(&token), "resource = docs/*"),
        (Http::new("GET", "/docs/42").bearer(&token).from(Some("192.168.1.1")), "client-ip in 10.0.0.0/8"),
        (Http::new("GET", "/docs/42").bearer(&token).from(None), "client-ip in 10.0.0.0/8"),
    ] {
        let r = denied(&envoy.check(&http).await);
        assert_eq!((r.http, r.rpc), (403, PERMISSION_DENIED), "{} {}", http.method, http.path);
        assert_eq!(r.headers["x-tally-reason"], "caveat_failed");
        assert!(r.headers["www-authenticate"].contains("insufficient_scope"));
        assert!(r.body.contains(caveat), "{:?} names {caveat:?}", r.body);
        assert!(!r.headers.contains_key("x-tally-org"), "no identity on a denial");
    }
    let r = denied(&envoy.check(&Http::new("CONNECT", "/docs/42").bearer(&token)).await);
    assert_eq!((r.http, r.headers["x-tally-reason"].as_str()), (403, "method_not_mapped"));

    // Revoked by its holder: 401 once the verifier applied it.
    let req = RevokeRequest { target: Some(Target::Token(token.clone())), reason: String::new() };
    let seq = authority.client().revoke(req).await.expect("Revoke").into_inner().seq;
    verifier.wait_applied(seq).await;
    let r = denied(&envoy.check(&Http::new("GET", "/docs/42").bearer(&token)).await);
    assert_eq!((r.http, r.rpc), (401, UNAUTHENTICATED));
    assert_eq!(r.headers["x-tally-reason"], "revoked");

    // Nothing Envoy received, and nothing the verifier logged, holds the token.
    for r in &envoy.seen {
        assert_no_token_in(&format!("{r:?}"), &token, "a response");
        assert_no_token_in(&format!("{r:?}"), &mangled, "a response");
    }
    let logs = [verifier.process().stdout().snapshot(), verifier.process().stderr().snapshot()].concat().join("\n");
    assert!(logs.contains("ext_authz"), "the decisions were logged at debug");
    assert_no_token_in(&logs, &token, "the verifier's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_gone_is_503() {
    const THRESHOLD: Duration = Duration::from_secs(1);
    let (mut authority, verifier) = start(THRESHOLD).await;
    let token = mint(&authority, "", &[]).await.token;
    let mut envoy = Envoy::connect(&verifier).await;
    let (set, removed) =
        allowed(&envoy.check(&Http::new("GET", "/").bearer(&token).header("x-tally-subject", "x")).await);
    assert!(!set.contains_key("x-tally-subject"), "no subject: none set");
    assert!(removed.contains(&"x-tally-subject".to_owned()), "and the client's removed: {removed:?}");

    authority.kill_9();
    // Within the threshold plus a heartbeat the cached answer stops: 503, fail closed.
    let r = eventually(THRESHOLD + Duration::from_secs(3), || {
        let (mut client, req) = (envoy.client.clone(), Http::new("GET", "/").bearer(&token).check_request());
        async move {
            let r = client.check(req).await.map_err(|e| format!("Check: {e}"))?.into_inner();
            match &r.http_response {
                Some(HttpResponse::DeniedResponse(_)) => Ok(r),
                _ => Err(format!("still allowed: {r:?}")),
            }
        }
    })
    .await;
    let reply = denied(&r);
    assert_eq!((reply.http, reply.rpc), (503, UNAVAILABLE));
    assert_eq!(reply.headers["x-tally-reason"], "authority_unavailable");
    assert_eq!(reply.headers["retry-after"], "1");
    assert_no_token_in(&format!("{r:?}"), &token, "the 503");
}
