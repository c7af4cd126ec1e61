//! Refusals, shaped for the caller's protocol: HTTP status codes with a
//! `WWW-Authenticate` challenge (RFC 6750), or a gRPC status in a
//! trailers-only response. Messages never carry the token.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use tally_token::http_auth::RefusalKind;

/// Why the layer did not let a request through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` (401 / `UNAUTHENTICATED`).
    MissingToken(&'static str),
    /// The token is malformed, forged, revoked, expired… (401 / `UNAUTHENTICATED`).
    InvalidToken(String),
    /// A valid token that does not allow this request (403 / `PERMISSION_DENIED`).
    Forbidden(String),
    /// The verifier cannot answer, or cannot reach the authority (503 /
    /// `UNAVAILABLE`): fail closed.
    Unavailable(String),
    /// The request cannot be checked as sent (400 / `INVALID_ARGUMENT`).
    BadRequest(String),
}

impl Refusal {
    /// The refusal of `kind` with `message`.
    pub(crate) fn of(kind: RefusalKind, message: String) -> Self {
        match kind {
            RefusalKind::MissingToken | RefusalKind::InvalidToken => Refusal::InvalidToken(message),
            RefusalKind::Forbidden => Refusal::Forbidden(message),
            RefusalKind::Unavailable => Refusal::Unavailable(message),
            RefusalKind::BadRequest => Refusal::BadRequest(message),
        }
    }

    /// Which answer this is, by the rules the verifier's Envoy adapter shares.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::MissingToken(_) => RefusalKind::MissingToken,
            Refusal::InvalidToken(_) => RefusalKind::InvalidToken,
            Refusal::Forbidden(_) => RefusalKind::Forbidden,
            Refusal::Unavailable(_) => RefusalKind::Unavailable,
            Refusal::BadRequest(_) => RefusalKind::BadRequest,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        StatusCode::from_u16(self.kind().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn grpc_status(&self) -> tonic::Status {
        tonic::Status::new(tonic::Code::from_i32(self.kind().grpc_code()), self.message().to_owned())
    }

    fn message(&self) -> &str {
        match self {
            Refusal::MissingToken(m) => m,
            Refusal::InvalidToken(m) | Refusal::Forbidden(m) | Refusal::Unavailable(m) | Refusal::BadRequest(m) => m,
        }
    }

    /// The response for a request with these headers (gRPC when its content
    /// type says so, plain HTTP otherwise).
    pub fn response(&self, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        if is_grpc(request_headers) { self.grpc_response() } else { self.http_response() }
    }

    fn grpc_response(&self) -> Response<Full<Bytes>> {
        self.grpc_status().into_http()
    }

    fn http_response(&self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(format!("{}\n", self.message()))));
        *resp.status_mut() = self.http_status();
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        let kind = self.kind();
        if let Some(c) = kind.challenge() {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(seconds) = kind.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        resp
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_refusals_carry_codes_and_challenges() {
        let plain = HeaderMap::new();
        let r = Refusal::MissingToken("missing").response(&plain);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers()[WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
        assert_eq!(Refusal::Forbidden("no".into()).response(&plain).status(), StatusCode::FORBIDDEN);
        let r = Refusal::Unavailable("down".into()).response(&plain);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(RETRY_AFTER));
    }

    #[test]
    fn grpc_refusals_are_trailers_only_statuses() {
        let mut grpc = HeaderMap::new();
        grpc.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        let r = Refusal::Forbidden("no".into()).response(&grpc);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "7");
        let r = Refusal::Unavailable("down".into()).response(&grpc);
        assert_eq!(r.headers()["grpc-status"], "14");
    }
}
