//! The rules every HTTP front of Tally applies, whichever adapter runs them
//! (the SDK's tower layer, the verifier's Envoy ext_authz): where the token
//! is, which action a method stands for, and how a request that is not let
//! through is answered (status, challenge, message). Pure: an adapter brings
//! the headers and turns the answer into its own types.

use crate::reason::Reason;

/// Why a request is not let through, as HTTP and gRPC say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// No usable `Authorization: Bearer …` (401 / `UNAUTHENTICATED`).
    MissingToken,
    /// The token is malformed, forged, revoked, expired… (401 / `UNAUTHENTICATED`).
    InvalidToken,
    /// A valid token that does not allow this request, or a request no
    /// token may make (403 / `PERMISSION_DENIED`).
    Forbidden,
    /// The check cannot be made now: fail closed (503 / `UNAVAILABLE`).
    Unavailable,
    /// The request cannot be checked as sent (400 / `INVALID_ARGUMENT`).
    BadRequest,
}

impl RefusalKind {
    /// The HTTP status code.
    pub fn http_status(self) -> u16 {
        match self {
            RefusalKind::MissingToken | RefusalKind::InvalidToken => 401,
            RefusalKind::Forbidden => 403,
            RefusalKind::Unavailable => 503,
            RefusalKind::BadRequest => 400,
        }
    }

    /// The gRPC status code (`google.rpc.Code`).
    pub fn grpc_code(self) -> i32 {
        match self {
            RefusalKind::MissingToken | RefusalKind::InvalidToken => 16,
            RefusalKind::Forbidden => 7,
            RefusalKind::Unavailable => 14,
            RefusalKind::BadRequest => 3,
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750), where one applies.
    pub fn challenge(self) -> Option<&'static str> {
        match self {
            RefusalKind::MissingToken => Some(r#"Bearer realm="tally""#),
            RefusalKind::InvalidToken => Some(r#"Bearer realm="tally", error="invalid_token""#),
            RefusalKind::Forbidden => Some(r#"Bearer realm="tally", error="insufficient_scope""#),
            RefusalKind::Unavailable | RefusalKind::BadRequest => None,
        }
    }

    /// `Retry-After`, in seconds, where trying again may help.
    pub fn retry_after(self) -> Option<&'static str> {
        (self == RefusalKind::Unavailable).then_some("1")
    }
}

/// The message of a request refused because the check cannot be made now.
pub const UNAVAILABLE_MESSAGE: &str = "cannot check the token right now; try again";

const MISSING: &str = "missing `Authorization: Bearer <token>`";
const NOT_BEARER: &str = "expected `Authorization: Bearer <token>`";

/// The token from the values of a request's `Authorization` headers (all of
/// them, in order): exactly one, of scheme `Bearer` (any case), with a
/// token. Two headers are refused, not resolved: a proxy and the service
/// behind it might each read a different one. The error is the message for
/// a [`RefusalKind::MissingToken`] answer.
pub fn bearer<'a>(authorization: impl IntoIterator<Item = &'a str>) -> Result<&'a str, &'static str> {
    let mut values = authorization.into_iter();
    let value = values.next().ok_or(MISSING)?;
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let (scheme, token) = value.trim().split_once(' ').ok_or(NOT_BEARER)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(NOT_BEARER);
    }
    Ok(token)
}

/// The action an HTTP method stands for: `GET`, `HEAD`, `OPTIONS` → `read`;
/// `POST`, `PUT`, `PATCH` → `write`; `DELETE` → `delete`; `None` (refused)
/// for any other.
pub fn http_action(method: &str) -> Option<&'static str> {
    match method {
        "GET" | "HEAD" | "OPTIONS" => Some("read"),
        "POST" | "PUT" | "PATCH" => Some("write"),
        "DELETE" => Some("delete"),
        _ => None,
    }
}

/// How a verifier's negative verdict on a request for `action` is answered:
/// the kind and the message (the reason's code, as `x-tally-reason` carries
/// it, and the caveat that failed; never the token). A verdict that names
/// no failure (`Ok`, `Unspecified`) is taken as "cannot tell", and refused
/// as unavailable: fail closed.
pub fn refusal(reason: Reason, action: &str, failed_caveat: Option<&str>) -> (RefusalKind, String) {
    let name = reason.as_str();
    let what = match failed_caveat {
        Some(caveat) => format!("{name}: `{caveat}` does not hold"),
        None => name.to_owned(),
    };
    match reason {
        Reason::AuthorityUnavailable | Reason::Unspecified | Reason::Ok => {
            (RefusalKind::Unavailable, UNAVAILABLE_MESSAGE.to_owned())
        }
        Reason::WrongOrg => {
            (RefusalKind::Forbidden, format!("the token belongs to another org than this service ({what})"))
        }
        r if r.is_invalid_token() => (RefusalKind::InvalidToken, format!("invalid token ({what})")),
        // A failed caveat: a good token, not for this request.
        _ => (RefusalKind::Forbidden, format!("the token does not allow {action} here ({what})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every verdict, its answer on both protocols.
    #[test]
    fn verdicts_map_to_answers() {
        use RefusalKind::*;
        let table = [
            (Reason::Malformed, InvalidToken, 401, 16),
            (Reason::Forged, InvalidToken, 401, 16),
            (Reason::UnknownKey, InvalidToken, 401, 16),
            (Reason::RetiredKey, InvalidToken, 401, 16),
            (Reason::Revoked, InvalidToken, 401, 16),
            (Reason::Expired, InvalidToken, 401, 16),
            (Reason::NotYetValid, InvalidToken, 401, 16),
            (Reason::DischargeInvalid, InvalidToken, 401, 16),
            (Reason::CaveatFailed, Forbidden, 403, 7),
            (Reason::WrongOrg, Forbidden, 403, 7),
            (Reason::AuthorityUnavailable, Unavailable, 503, 14),
            (Reason::Unspecified, Unavailable, 503, 14),
            (Reason::Ok, Unavailable, 503, 14),
        ];
        for (reason, kind, http, grpc) in table {
            let (got, message) = refusal(reason, "write", None);
            assert_eq!((got, got.http_status(), got.grpc_code()), (kind, http, grpc), "{reason}");
            assert_eq!(reason.is_invalid_token(), kind == InvalidToken, "{reason}");
            assert_eq!(got.challenge().is_some(), http != 503, "{reason}: a challenge on 401 and 403");
            assert_eq!(got.retry_after().is_some(), http == 503, "{reason}: Retry-After on 503 only");
            assert!(!message.is_empty());
        }
        assert_eq!((BadRequest.http_status(), BadRequest.grpc_code()), (400, 3));
        assert_eq!((BadRequest.challenge(), BadRequest.retry_after()), (None, None));
        assert_eq!(MissingToken.challenge(), Some(r#"Bearer realm="tally""#));
        assert_eq!(InvalidToken.challenge(), Some(r#"Bearer realm="tally", error="invalid_token""#));
        assert_eq!(Forbidden.challenge(), Some(r#"Bearer realm="tally", error="insufficient_scope""#));
    }

    #[test]
    fn messages_name_the_reason_and_caveat() {
        let (_, m) = refusal(Reason::CaveatFailed, "write", Some("action in read"));
        assert_eq!(m, "the token does not allow write here (caveat_failed: `action in read` does not hold)");
        let (_, m) = refusal(Reason::WrongOrg, "read", None);
        assert_eq!(m, "the token belongs to another org than this service (wrong_org)");
        assert_eq!(refusal(Reason::Revoked, "read", None).1, "invalid token (revoked)");
        assert_eq!(refusal(Reason::AuthorityUnavailable, "read", None).1, UNAVAILABLE_MESSAGE);
    }

    #[test]
    fn bearer_forms() {
        assert_eq!(bearer(["Bearer tly_abc"]), Ok("tly_abc"));
        assert_eq!(bearer(["  bearer   tly_abc "]), Ok("tly_abc"));
        assert_eq!(bearer([]), Err(MISSING));
        assert_eq!(bearer(["Basic dXNlcg=="]), Err(NOT_BEARER));
        assert_eq!(bearer(["Bearer "]), Err(NOT_BEARER));
        assert_eq!(bearer(["Bearer"]), Err(NOT_BEARER));
        assert_eq!(bearer(["Bearer t", "Bearer u"]), Err("more than one Authorization header"));
    }

    #[test]
    fn methods_map_to_actions() {
        for (method, action) in [
            ("GET", Some("read")),
            ("HEAD", Some("read")),
            ("OPTIONS", Some("read")),
            ("POST", Some("write")),
            ("PUT", Some("write")),
            ("PATCH", Some("write")),
            ("DELETE", Some("delete")),
            ("TRACE", None),
            ("CONNECT", None),
            ("get", None),
        ] {
            assert_eq!(http_action(method), action, "{method}");
        }
    }
}
