//! Envoy's external authorization, `envoy.service.auth.v3.Authorization/Check`
//! (the `envoy.filters.http.ext_authz` filter, transport API V3), on top of
//! [`Verifier::check`]. The bundle comes from `Authorization: Bearer …`, the
//! action from the method (as the SDK's `HttpActions`: `GET`/`HEAD`/`OPTIONS`
//! → `read`, `POST`/`PUT`/`PATCH` → `write`, `DELETE` → `delete`, others
//! refused), the resource from the path (query and leading `/` dropped), the
//! client address from the downstream peer, and the service from the route's
//! `context_extensions["tally_service"]`.
//!
//! Allowed requests go upstream with `x-tally-org`, `x-tally-subject` and
//! `x-tally-family` set by Tally; every other `x-tally-*` header the client
//! sent is removed, so a client cannot forge them. Denials become Envoy's
//! local reply: 401 (no or invalid token, with `WWW-Authenticate`), 403 (valid
//! token that does not allow the request), 503 (cannot check now: fail
//! closed), each with `x-tally-reason`. The token never appears in a response
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
use tally_proto::envoy::r#type::v3::{HttpStatus, StatusCode};
use tally_proto::google::rpc;
use tally_proto::v1::Reason;
use tally_token::RequestFields;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::verifier::{CheckRequest, Outcome, Verifier};

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

/// `google.rpc.Code` values used in `CheckResponse.status`.
mod code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

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
        let Some(action) = action(&http.method) else {
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

/// The bundle from `Authorization: Bearer …`, or why there is none.
fn bearer(http: &HttpRequest) -> Result<String, &'static str> {
    let mut found = headers(http).filter(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v);
    let value = found.next().ok_or("missing `Authorization: Bearer <token>`")?;
    if found.next().is_some() {
        return Err("more than one Authorization header");
    }
    let (scheme, token) = value.trim().split_once(' ').ok_or("expected `Authorization: Bearer <token>`")?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err("expected `Authorization: Bearer <token>`");
    }
    Ok(token.to_owned())
}

/// The action a method stands for (the SDK's `HttpActions`); `None` refuses it.
fn action(method: &str) -> Option<&'static str> {
    match method {
        "GET" | "HEAD" | "OPTIONS" => Some("read"),
        "POST" | "PUT" | "PATCH" => Some("write"),
        "DELETE" => Some("delete"),
        _ => None,
    }
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
        status: Some(rpc::Status { code: code::OK, message: String::new() }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: to_set,
            headers_to_remove: remove,
            response_headers_to_add: Vec::new(),
        })),
    }
}

/// A denial, as Envoy's local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Denial {
    http: StatusCode,
    rpc: i32,
    /// `x-tally-reason`.
    reason: &'static str,
    /// The body and the status message: never the token.
    message: String,
    /// `WWW-Authenticate` (RFC 6750).
    challenge: Option<&'static str>,
}

impl Denial {
    fn missing_token(message: &'static str) -> Self {
        Self {
            http: StatusCode::Unauthorized,
            rpc: code::UNAUTHENTICATED,
            reason: "missing_token",
            message: message.to_owned(),
            challenge: Some(r#"Bearer realm="tally""#),
        }
    }

    fn invalid_token(reason: &'static str, message: String) -> Self {
        Self {
            http: StatusCode::Unauthorized,
            rpc: code::UNAUTHENTICATED,
            reason,
            message,
            challenge: Some(r#"Bearer realm="tally", error="invalid_token""#),
        }
    }

    fn forbidden(reason: &'static str, message: String) -> Self {
        Self {
            http: StatusCode::Forbidden,
            rpc: code::PERMISSION_DENIED,
            reason,
            message,
            challenge: Some(r#"Bearer realm="tally", error="insufficient_scope""#),
        }
    }

    fn unavailable(reason: &'static str) -> Self {
        Self {
            http: StatusCode::ServiceUnavailable,
            rpc: code::UNAVAILABLE,
            reason,
            message: "cannot check the token right now; try again".into(),
            challenge: None,
        }
    }

    fn bad_request(message: &str) -> Self {
        Self {
            http: StatusCode::BadRequest,
            rpc: code::INVALID_ARGUMENT,
            reason: "bad_request",
            message: message.to_owned(),
            challenge: None,
        }
    }

    /// A negative verdict of the verifier (the SDK layer maps them alike).
    fn from_outcome(o: &Outcome, action: &str) -> Self {
        let reason = reason_code(o.reason);
        let what = if o.failed_caveat.is_empty() {
            reason.replace('_', " ")
        } else {
            format!("{}: `{}` does not hold", reason.replace('_', " "), o.failed_caveat)
        };
        match o.reason {
            Reason::AuthorityUnavailable | Reason::Unspecified | Reason::Ok => Self::unavailable(reason),
            Reason::Malformed
            | Reason::Forged
            | Reason::UnknownKey
            | Reason::RetiredKey
            | Reason::Revoked
            | Reason::Expired
            | Reason::NotYetValid
            | Reason::DischargeInvalid => Self::invalid_token(reason, format!("invalid token ({what})")),
            Reason::CaveatFailed => Self::forbidden(reason, format!("the token does not allow {action} here ({what})")),
            Reason::WrongOrg => Self::forbidden(reason, "the token belongs to another org than this service".into()),
        }
    }
}

/// `x-tally-reason` for a verifier reason: the enum name, snake_case, unprefixed.
fn reason_code(r: Reason) -> &'static str {
    match r {
        Reason::Unspecified => "unspecified",
        Reason::Ok => "ok",
        Reason::Malformed => "malformed",
        Reason::Forged => "forged",
        Reason::UnknownKey => "unknown_key",
        Reason::RetiredKey => "retired_key",
        Reason::Revoked => "revoked",
        Reason::Expired => "expired",
        Reason::NotYetValid => "not_yet_valid",
        Reason::CaveatFailed => "caveat_failed",
        Reason::DischargeInvalid => "discharge_invalid",
        Reason::AuthorityUnavailable => "authority_unavailable",
        Reason::WrongOrg => "wrong_org",
    }
}

impl From<Denial> for CheckResponse {
    fn from(d: Denial) -> Self {
        let mut headers =
            vec![overwrite(REASON_HEADER, d.reason), overwrite("content-type", "text/plain; charset=utf-8")];
        match d.challenge {
            Some(c) => headers.push(overwrite("www-authenticate", c)),
            None => headers.push(overwrite("retry-after", "1")),
        }
        CheckResponse {
            status: Some(rpc::Status { code: d.rpc, message: d.message.clone() }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code: d.http as i32 }),
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

    use super::*;
    use crate::upstream::Upstream;
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
        assert_eq!(action("GET"), Some("read"));
        assert_eq!(action("PATCH"), Some("write"));
        assert_eq!(action("DELETE"), Some("delete"));
        assert_eq!(action("get"), None, "methods are case-sensitive");
        assert_eq!(action("CONNECT"), None);
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
            source: tally_proto::v1::Source::Cache,
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
            source: tally_proto::v1::Source::Cache,
            expires_at_ms: 0,
        };
        let d = Denial::from_outcome(&o, "write");
        assert_eq!((d.http, d.rpc, d.reason), (StatusCode::Forbidden, code::PERMISSION_DENIED, "caveat_failed"));
        assert!(d.message.contains("`action in read`"), "{}", d.message);
        o.reason = Reason::Revoked;
        let d = Denial::from_outcome(&o, "write");
        assert_eq!((d.http, d.rpc, d.reason), (StatusCode::Unauthorized, code::UNAUTHENTICATED, "revoked"));
        o.reason = Reason::AuthorityUnavailable;
        let d = Denial::from_outcome(&o, "write");
        assert_eq!((d.http, d.rpc), (StatusCode::ServiceUnavailable, code::UNAVAILABLE));
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
