//! Envoy's external authorization, `envoy.service.auth.v3.Authorization/Check`
//! (the `envoy.filters.http.ext_authz` filter, transport API V3), on top of
//! [`Verifier::check`], by the rules the SDK's tower layer shares
//! (`tally_token::http_auth`). The bundle comes from the one
//! `Authorization: Bearer …` header, the action from the method (`GET`/
//! `HEAD`/`OPTIONS` → `read`, `POST`/`PUT`/`PATCH` → `write`, `DELETE` →
//! `delete`, others refused), the resource from the path (query and leading `/` dropped), the
//! client address from the downstream peer, and the service from the route's
//! `context_extensions["tally_service"]`.
//!
//! Allowed requests go upstream with `x-tally-org`, `x-tally-subject` and
//! `x-tally-family` set by Tally; every other `x-tally-*` header the client
//! sent is removed, so a client cannot forge them. Denials become Envoy's
//! local reply: 401 (no or invalid token, with `WWW-Authenticate`), 403 (valid
//! token that does not allow the request), 503 (cannot check now: fail
//! closed, with `Retry-After`), 400 (a request field past its bound), each
//! with `x-tally-reason`. The token never appears in a response
//! or a log line.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use tally_proto::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use tally_proto::envoy::config::core::v3::{HeaderValue, HeaderValueOption, address};
use tally_proto::envoy::service::auth::v3::attribute_context::HttpRequest;
use tally_proto::envoy::service::auth::v3::authorization_server::Authorization;
use tally_proto::envoy::service::auth::v3::check_response::HttpResponse;
use tally_proto::envoy::service::auth::v3::{
    AttributeContext, CheckRequest as EnvoyCheck, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use tally_proto::envoy::r#type::v3::HttpStatus;
use tally_proto::google::rpc;
use tally_token::RequestFields;
use tally_token::http_auth::{self, RefusalKind};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::outcome::Outcome;
use crate::verifier::{CheckRequest, Verifier};

/// Every header Tally sets for the upstream starts with this; the client's are removed.
pub const HEADER_PREFIX: &str = "x-tally-";
/// The token's org (allowed requests).
pub const ORG_HEADER: &str = "x-tally-org";
/// The token's subject, when it names one (allowed requests).
pub const SUBJECT_HEADER: &str = "x-tally-subject";
/// The token's family id, hex (allowed requests).
pub const FAMILY_HEADER: &str = "x-tally-family";
/// Why a request was denied: a stable snake_case code (denials).
pub const REASON_HEADER: &str = "x-tally-reason";
/// The `context_extensions` key naming the checking service (for `service = …` caveats).
pub const SERVICE_EXTENSION: &str = "tally_service";
/// The `context_extensions` key naming the org the service belongs to: only
/// tokens of that org are allowed (else the verifier's `--org`).
pub const ORG_EXTENSION: &str = "tally_org";

/// `google.rpc.Code` OK: `CheckResponse.status` of an allowed request (a
/// denial's code is its `RefusalKind`'s).
const CODE_OK: i32 = 0;

/// The gRPC service Envoy's ext_authz filter calls.
#[derive(Debug, Clone)]
pub struct ExtAuthzService {
    verifier: Arc<Verifier>,
}

impl ExtAuthzService {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self { verifier }
    }

    /// The answer for one request. Never an error: a request that cannot be
    /// checked is denied, so Envoy's `failure_mode_allow` never comes into play.
    pub async fn decide(&self, req: &EnvoyCheck) -> CheckResponse {
        let Some(attrs) = req.attributes.as_ref() else {
            return Denial::bad_request("no attributes in the check").into();
        };
        let Some(http) = attrs.request.as_ref().and_then(|r| r.http.as_ref()) else {
            return Denial::bad_request("no HTTP request in the check").into();
        };
        let bundle = match bearer(http) {
            Ok(bundle) => bundle,
            Err(message) => return Denial::missing_token(message).into(),
        };
        let Some(action) = http_auth::http_action(&http.method) else {
            tracing::debug!(method = %header_safe(&http.method), "ext_authz: method not open to tokens");
            return Denial::forbidden("method_not_mapped", "this method is not open to tokens".into()).into();
        };
        let extension = |key| attrs.context_extensions.get(key).map_or("", String::as_str);
        let limits = &self.verifier.settings().field_limits;
        // Bounded as the gRPC Check's are: a caveat's cost grows with the text it is matched against.
        let resource = resource(&http.path).unwrap_or("");
        let fields = match RequestFields::parse(
            action,
            resource,
            extension(SERVICE_EXTENSION),
            "",
            "",
            extension(ORG_EXTENSION),
            limits,
        ) {
            Ok(fields) => RequestFields { client_ip: client_ip(attrs), ..fields },
            Err(e) => return Denial::bad_request(&e.to_string()).into(),
        };
        let check = CheckRequest::new(&bundle, fields);
        match self.verifier.check(&check).await {
            Ok(outcome) if outcome.allowed => {
                tracing::debug!(family = ?outcome.family.map(|f| f.to_hex()), action, "ext_authz: allowed");
                allow(&outcome, http)
            }
            Ok(outcome) => {
                tracing::debug!(family = ?outcome.family.map(|f| f.to_hex()), reason = ?outcome.reason, action, "ext_authz: denied");
                Denial::from_outcome(&outcome, action).into()
            }
            // The decoder's message is not echoed: it is about the token's text.
            Err(Error::InvalidArgument(_)) => {
                tracing::debug!("ext_authz: malformed token");
                Denial::invalid_token("malformed", "invalid token (malformed)".into()).into()
            }
            Err(Error::Config(e)) => {
                tracing::error!(error = %e, "ext_authz: check failed");
                Denial::unavailable("internal").into()
            }
        }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzService {
    #[tracing::instrument(name = "envoy.service.auth.v3.Authorization/Check", level = "debug", skip_all)]
    async fn check(&self, req: Request<EnvoyCheck>) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(self.decide(req.get_ref()).await))
    }
}

/// The request's headers, from whichever form Envoy sent: the `headers` map
/// (lower-cased names, repeats merged) or `header_map` (`encode_raw_headers`).
fn headers(http: &HttpRequest) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    let map = http.headers.iter().map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str())));
    let raw = http.header_map.iter().flat_map(|m| &m.headers).map(|h| {
        let value = if h.raw_value.is_empty() {
            Cow::Borrowed(h.value.as_str())
        } else {
            String::from_utf8_lossy(&h.raw_value)
        };
        (h.key.as_str(), value)
    });
    map.chain(raw)
}

/// The bundle from `Authorization: Bearer …` (`tally_token::http_auth::bearer`),
/// or why there is none.
fn bearer(http: &HttpRequest) -> Result<String, &'static str> {
    let values: Vec<Cow<'_, str>> =
        headers(http).filter(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v).collect();
    http_auth::bearer(values.iter().map(|v| v.as_ref())).map(str::to_owned)
}

/// The resource: the path without query, fragment or leading `/`, as sent
/// (Envoy's `normalize_path` and `merge_slashes` should be on, see deploy/envoy).
fn resource(path: &str) -> Option<&str> {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    Some(path[..end].trim_start_matches('/')).filter(|r| !r.is_empty())
}

/// The downstream peer's IP; anything else (a pipe, no address) is "not
/// supplied", so `client-ip` caveats do not hold.
fn client_ip(attrs: &AttributeContext) -> Option<IpAddr> {
    let addr = attrs.source.as_ref()?.address.as_ref()?;
    match addr.address.as_ref()? {
        address::Address::SocketAddress(s) => s.address.parse().ok(),
        address::Address::Pipe(_) => None,
    }
}

/// A header value as visible ASCII: `%`, bytes outside `!`..=`~` and spaces
/// at either end are percent-encoded (no CR/LF can reach Envoy's header maps,
/// and nothing is lost to whitespace trimming).
fn header_safe(value: &str) -> Cow<'_, str> {
    let last = value.len().saturating_sub(1);
    let plain = |i: usize, b: u8| (b.is_ascii_graphic() && b != b'%') || (b == b' ' && i != 0 && i != last);
    if value.bytes().enumerate().all(|(i, b)| plain(i, b)) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for (i, b) in value.bytes().enumerate() {
        if plain(i, b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// A header that replaces any the request already has under that name.
fn overwrite(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: header_safe(value).into_owned(),
            raw_value: Vec::new(),
        }),
        // `append` (deprecated) stays unset: Envoy versions before `append_action`
        // read it as false, i.e. overwrite too.
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

/// OK, with Tally's headers set for the upstream and the client's removed.
fn allow(outcome: &Outcome, http: &HttpRequest) -> CheckResponse {
    let family = outcome.family.map(|f| f.to_hex()).unwrap_or_default();
    let ours = [(ORG_HEADER, &*outcome.org), (SUBJECT_HEADER, outcome.subject.as_str()), (FAMILY_HEADER, &family)];
    let set: Vec<&str> = ours.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| *k).collect();
    let to_set = ours.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| overwrite(k, v)).collect();
    // Removal runs after the additions in Envoy: never list a header set above.
    let mut remove: Vec<String> = ours.iter().filter(|(_, v)| v.is_empty()).map(|(k, _)| (*k).to_owned()).collect();
    for (name, _) in headers(http) {
        let name = name.to_ascii_lowercase();
        if name.starts_with(HEADER_PREFIX) && !set.contains(&name.as_str()) && !remove.contains(&name) {
            remove.push(name);
        }
    }
    CheckResponse {
        status: Some(rpc::Status { code: CODE_OK, message: String::new() }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: to_set,
            headers_to_remove: remove,
            response_headers_to_add: Vec::new(),
        })),
    }
}

/// A denial, as Envoy's local reply: status, challenge and `Retry-After`
/// by `tally_token::http_auth`'s rules, the same as the SDK layer's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Denial {
    kind: RefusalKind,
    /// `x-tally-reason`.
    reason: &'static str,
    /// The body and the status message: never the token.
    message: String,
}

impl Denial {
    fn missing_token(message: &'static str) -> Self {
        Self { kind: RefusalKind::MissingToken, reason: "missing_token", message: message.to_owned() }
    }

    fn invalid_token(reason: &'static str, message: String) -> Self {
        Self { kind: RefusalKind::InvalidToken, reason, message }
    }

    fn forbidden(reason: &'static str, message: String) -> Self {
        Self { kind: RefusalKind::Forbidden, reason, message }
    }

    fn unavailable(reason: &'static str) -> Self {
        Self { kind: RefusalKind::Unavailable, reason, message: http_auth::UNAVAILABLE_MESSAGE.to_owned() }
    }

    fn bad_request(message: &str) -> Self {
        Self { kind: RefusalKind::BadRequest, reason: "bad_request", message: message.to_owned() }
    }

    /// A negative verdict of the verifier.
    fn from_outcome(o: &Outcome, action: &str) -> Self {
        let reason = o.reason;
        let failed = Some(o.failed_caveat.as_str()).filter(|c| !c.is_empty());
        let (kind, message) = http_auth::refusal(reason, action, failed);
        Self { kind, reason: reason.as_str(), message }
    }
}

impl From<Denial> for CheckResponse {
    fn from(d: Denial) -> Self {
        let mut headers =
            vec![overwrite(REASON_HEADER, d.reason), overwrite("content-type", "text/plain; charset=utf-8")];
        if let Some(c) = d.kind.challenge() {
            headers.push(overwrite("www-authenticate", c));
        }
        if let Some(seconds) = d.kind.retry_after() {
            headers.push(overwrite("retry-after", seconds));
        }
        CheckResponse {
            status: Some(rpc::Status { code: d.kind.grpc_code(), message: d.message.clone() }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code: i32::from(d.kind.http_status()) }),
                headers,
                body: format!("{}\n", d.message),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use tally_proto::envoy::config::core::v3::{Address, HeaderMap, SocketAddress};
    use tally_proto::envoy::service::auth::v3::attribute_context::{Peer, Request as EnvoyRequest};

    use tally_proto::envoy::r#type::v3::StatusCode;
    use tally_token::Reason;

    use super::*;
    use crate::upstream::Upstream;

    /// `google.rpc.Code` values, as Envoy reads them.
    mod code {
        pub const OK: i32 = 0;
        pub const PERMISSION_DENIED: i32 = 7;
        pub const UNAVAILABLE: i32 = 14;
        pub const UNAUTHENTICATED: i32 = 16;
    }
    use crate::verifier::Settings;

    fn http(method: &str, path: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    fn check(http: HttpRequest) -> EnvoyCheck {
        let source = Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: "10.1.2.3".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        EnvoyCheck {
            attributes: Some(AttributeContext {
                source: Some(source),
                request: Some(EnvoyRequest { http: Some(http) }),
                context_extensions: HashMap::new(),
                ..Default::default()
            }),
        }
    }

    /// A verifier whose authority is unreachable (and never synced).
    fn service() -> ExtAuthzService {
        let upstream = Upstream::new("http://127.0.0.1:9", "unused", Duration::from_millis(500)).unwrap();
        ExtAuthzService::new(Arc::new(Verifier::new(upstream, Settings::default())))
    }

    fn denied(r: &CheckResponse) -> (&DeniedHttpResponse, i32) {
        match r.http_response.as_ref() {
            Some(HttpResponse::DeniedResponse(d)) => (d, r.status.as_ref().unwrap().code),
            other => panic!("not denied: {other:?}"),
        }
    }

    fn header<'a>(hs: &'a [HeaderValueOption], name: &str) -> Option<&'a str> {
        hs.iter().filter_map(|h| h.header.as_ref()).find(|h| h.key == name).map(|h| h.value.as_str())
    }

    #[test]
    fn bearer_from_either_header_form() {
        assert_eq!(bearer(&http("GET", "/", &[("authorization", "Bearer tly_abc")])).unwrap(), "tly_abc");
        assert_eq!(bearer(&http("GET", "/", &[("authorization", "  bearer   tly_abc ")])).unwrap(), "tly_abc");
        let raw = HttpRequest {
            header_map: Some(HeaderMap {
                headers: vec![HeaderValue {
                    key: "authorization".into(),
                    value: String::new(),
                    raw_value: b"Bearer t".to_vec(),
                }],
            }),
            ..Default::default()
        };
        assert_eq!(bearer(&raw).unwrap(), "t");
        assert!(bearer(&http("GET", "/", &[])).is_err());
        assert!(bearer(&http("GET", "/", &[("authorization", "Basic dXNlcg==")])).is_err());
        assert!(bearer(&http("GET", "/", &[("authorization", "Bearer ")])).is_err());
        let mut twice = raw.clone();
        twice.headers.insert("authorization".into(), "Bearer u".into());
        assert_eq!(bearer(&twice), Err("more than one Authorization header"));
    }

    #[test]
    fn methods_paths_and_addresses() {
        assert_eq!(resource("/docs/42?x=1#f"), Some("docs/42"));
        assert_eq!(resource("/docs/a%2Fb"), Some("docs/a%2Fb"), "not decoded");
        assert_eq!(resource("/"), None);
        assert_eq!(resource("/?q"), None);
        let c = check(http("GET", "/", &[]));
        assert_eq!(client_ip(c.attributes.as_ref().unwrap()), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(client_ip(&AttributeContext::default()), None);
    }

    #[test]
    fn header_values_are_visible_ascii() {
        assert_eq!(header_safe("alice@example.com"), "alice@example.com");
        assert_eq!(header_safe("a b\r\nx-evil: 1"), "a b%0D%0Ax-evil: 1");
        assert_eq!(header_safe(" a "), "%20a%20");
        assert_eq!(header_safe("100%é"), "100%25%C3%A9");
    }

    #[test]
    fn allow_sets_ours_and_removes_the_clients() {
        let outcome = Outcome {
            allowed: true,
            reason: Reason::Ok,
            detail: String::new(),
            failed_caveat: String::new(),
            org: Arc::from("acme"),
            subject: String::new(),
            family: Some(tally_token::FamilyId([7; 16])),
            source: crate::outcome::Source::Cache,
            expires_at_ms: 0,
        };
        let req = http("GET", "/", &[("x-tally-org", "evil"), ("X-Tally-Subject", "mallory"), ("x-tally-extra", "1")]);
        let r = allow(&outcome, &req);
        assert_eq!(r.status.as_ref().unwrap().code, code::OK);
        let Some(HttpResponse::OkResponse(ok)) = r.http_response else { panic!("not ok") };
        assert_eq!(header(&ok.headers, ORG_HEADER), Some("acme"));
        assert_eq!(header(&ok.headers, FAMILY_HEADER), Some("07".repeat(16).as_str()));
        assert_eq!(header(&ok.headers, SUBJECT_HEADER), None);
        assert!(ok.headers.iter().all(|h| h.append_action == HeaderAppendAction::OverwriteIfExistsOrAdd as i32));
        let mut removed = ok.headers_to_remove.clone();
        removed.sort();
        assert_eq!(removed, ["x-tally-extra", "x-tally-subject"]);
    }

    #[test]
    fn outcomes_map_to_statuses() {
        let mut o = Outcome {
            allowed: false,
            reason: Reason::CaveatFailed,
            detail: String::new(),
            failed_caveat: "action in read".into(),
            org: Arc::from("acme"),
            subject: String::new(),
            family: None,
            source: crate::outcome::Source::Cache,
            expires_at_ms: 0,
        };
        let d = Denial::from_outcome(&o, "write");
        let answer = |d: &Denial| (d.kind.http_status(), d.kind.grpc_code(), d.reason);
        assert_eq!(answer(&d), (StatusCode::Forbidden as u16, code::PERMISSION_DENIED, "caveat_failed"));
        assert!(d.message.contains("`action in read`"), "{}", d.message);
        o.reason = Reason::Revoked;
        let d = Denial::from_outcome(&o, "write");
        assert_eq!(answer(&d), (StatusCode::Unauthorized as u16, code::UNAUTHENTICATED, "revoked"));
        o.reason = Reason::AuthorityUnavailable;
        let d = Denial::from_outcome(&o, "write");
        assert_eq!(answer(&d), (StatusCode::ServiceUnavailable as u16, code::UNAVAILABLE, "authority_unavailable"));
    }

    #[tokio::test]
    async fn refusals_before_and_without_the_authority() {
        let s = service();
        let r = s.decide(&check(http("GET", "/docs", &[]))).await;
        let (d, rpc) = denied(&r);
        assert_eq!((d.status.unwrap().code, rpc), (StatusCode::Unauthorized as i32, code::UNAUTHENTICATED));
        assert_eq!(header(&d.headers, REASON_HEADER), Some("missing_token"));
        assert_eq!(header(&d.headers, "www-authenticate"), Some(r#"Bearer realm="tally""#));

        let secret = "tly_notAtokenButSecretish";
        let r = s.decide(&check(http("GET", "/docs", &[("authorization", &format!("Bearer {secret}"))]))).await;
        let (d, _) = denied(&r);
        assert_eq!(header(&d.headers, REASON_HEADER), Some("malformed"));
        assert!(!format!("{r:?}").contains("notAtoken"), "{r:?}");

        let r = s.decide(&check(http("TRACE", "/docs", &[("authorization", "Bearer x")]))).await;
        assert_eq!(denied(&r).0.status.unwrap().code, StatusCode::Forbidden as i32);

        let r = s.decide(&EnvoyCheck::default()).await;
        assert_eq!(denied(&r).0.status.unwrap().code, StatusCode::BadRequest as i32);

        // Well-formed, but the authority cannot be asked: fail closed with 503.
        let id = tally_token::TallyId::new(tally_token::KeyId(1), [9; 16]).encode();
        let token = tally_token::Macaroon::mint(&tally_token::RootKey::from_bytes([3; 32]), id, None).to_text();
        let r = s.decide(&check(http("GET", "/docs", &[("authorization", &format!("Bearer {token}"))]))).await;
        let (d, rpc) = denied(&r);
        assert_eq!((d.status.unwrap().code, rpc), (StatusCode::ServiceUnavailable as i32, code::UNAVAILABLE));
        assert_eq!(header(&d.headers, REASON_HEADER), Some("authority_unavailable"));
        assert_eq!(header(&d.headers, "retry-after"), Some("1"));
        assert!(!format!("{r:?}").contains(&token[4..20]), "{r:?}");
    }
}
