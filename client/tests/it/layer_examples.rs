//! The tower layer through both examples, end to end: the example services
//! as processes in front of a real verifier and authority. Allowed, denied
//! (403 / PERMISSION_DENIED), no token or two (401 / UNAUTHENTICATED), bad or
//! revoked token (401), a resource past its bound (400), and fail closed (503 / UNAVAILABLE) when the
//! verifier is gone or cut off from the authority.

use crate::support;

use std::time::Duration;

use support::{http, start_example};
use tally_tests::{Authority, Verifier, VerifierOptions};
use tonic::Code;

pub mod pb {
    tonic::include_proto!("example.orders.v1");
}

/// An authority with org "acme" and one verifier (fail closed after 1 s).
async fn deployment() -> (Authority, Verifier) {
    let authority = Authority::start().await;
    authority.create_org("acme").await;
    let token = authority.system_token("verifier", &[]).await;
    let options = VerifierOptions { fail_closed_after: Duration::from_secs(1), ..VerifierOptions::default() };
    let verifier = Verifier::start(&authority.url(), &token, options).await;
    verifier.wait_synced().await;
    (authority, verifier)
}

#[tokio::test]
async fn http_example_allows_denies_and_fails_closed() {
    let (mut authority, mut verifier) = deployment().await;
    let vurl = format!("http://{}", verifier.addr());
    let (_service, addr) = start_example("http_service", &["--verifier", &vurl]).await;
    let reader = authority.mint("acme", &["action in read", "subject = alice", "service = docs"]).await.token;
    let writer = authority.mint("acme", &["action in read,write", "resource = docs/7", "subject = bob"]).await.token;

    // Open route: no token needed.
    assert_eq!(http(addr, "GET", "/healthz", None).await.status, 200);

    // Allowed: the handler sees the subject the verifier reported.
    let r = http(addr, "GET", "/docs/42", Some(&reader)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "doc 42 for alice\n"));
    let r = http(addr, "PUT", "/docs/7", Some(&writer)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "saved doc 7 as bob\n"));

    // Denied (403): wrong action, wrong resource, unmapped method.
    let r = http(addr, "PUT", "/docs/42", Some(&reader)).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("www-authenticate").unwrap().contains("insufficient_scope"), "{r:?}");
    assert!(r.body.contains("action in read"), "{r:?}");
    assert_eq!(http(addr, "PUT", "/docs/8", Some(&writer)).await.status, 403);
    assert_eq!(http(addr, "DELETE", "/docs/7", Some(&writer)).await.status, 403);
    assert_eq!(http(addr, "PATCH", "/docs/7", Some(&writer)).await.status, 405, "not routed at all");

    // Missing or unusable token (401), never echoed back.
    let r = http(addr, "GET", "/docs/42", None).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"), "{r:?}");
    let r = http(addr, "GET", "/docs/42", Some("tly_garbage")).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(!r.body.contains("tly_garbage"), "{r:?}");
    let mut forged = reader.clone();
    forged.pop();
    forged.push(if reader.ends_with('A') { 'B' } else { 'A' });
    let r = http(addr, "GET", "/docs/42", Some(&forged)).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("www-authenticate").unwrap().contains("invalid_token"), "{r:?}");

    // Two Authorization headers (a proxy and the service might each read a
    // different one): refused, as the Envoy adapter refuses them.
    let two = format!("{reader}\r\nAuthorization: Bearer {writer}");
    let r = http(addr, "GET", "/docs/42", Some(&two)).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("more than one Authorization header"), "{r:?}");

    // A resource past its bound is bad input (400), not a bad token.
    let long = format!("/docs/{}", "9".repeat(tally_token::DEFAULT_MAX_RESOURCE_BYTES));
    let r = http(addr, "GET", &long, Some(&reader)).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("resource"), "{r:?}");

    // Revoked (401) once the revocation reached the verifier.
    let revoked = authority.mint("acme", &["action in read"]).await;
    assert_eq!(http(addr, "GET", "/docs/1", Some(&revoked.token)).await.status, 200);
    let seq = tally_client::AuthorityClient::new(&authority.url())
        .unwrap()
        .revoke(&tally_client::RevokeTarget::Token(revoked.token.clone()), "test")
        .await
        .unwrap();
    verifier.wait_applied(seq).await;
    assert_eq!(http(addr, "GET", "/docs/1", Some(&revoked.token)).await.status, 401);

    // Authority gone: once the verifier fails closed, even a cached token gets 503.
    authority.stop().await.unwrap();
    tally_tests::eventually(tally_tests::DEADLINE, || async {
        let r = http(addr, "GET", "/docs/42", Some(&reader)).await;
        if r.status == 503 { Ok(r) } else { Err(format!("still {}", r.status)) }
    })
    .await;
    // Verifier gone: 503 with Retry-After, and the handler never runs.
    verifier.kill_9();
    let r = http(addr, "GET", "/docs/42", Some(&reader)).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(!r.body.contains("doc 42"), "{r:?}");
}

fn with_bearer<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

#[tokio::test]
async fn grpc_example_allows_denies_and_fails_closed() {
    let (authority, mut verifier) = deployment().await;
    let vurl = format!("http://{}", verifier.addr());
    let (_service, addr) = start_example("grpc_service", &["--verifier", &vurl]).await;
    let mut client = pb::orders_client::OrdersClient::connect(format!("http://{addr}")).await.unwrap();
    let reader = authority.mint("acme", &["action in read", "subject = alice", "service = orders"]).await.token;
    let other_service = authority.mint("acme", &["service = billing"]).await.token;

    // Allowed: GetOrder is "read"; the service sees the subject.
    let get = |id: &str| pb::GetOrderRequest { id: id.into() };
    let order = client.get_order(with_bearer(get("7"), Some(&reader))).await.unwrap().into_inner();
    assert_eq!((order.id.as_str(), order.seen_subject.as_str()), ("7", "alice"));

    // Denied: CancelOrder is "write"; a token for another service.
    let cancel = pb::CancelOrderRequest { id: "7".into() };
    let e = client.cancel_order(with_bearer(cancel.clone(), Some(&reader))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("action in read"), "{e:?}");
    let e = client.get_order(with_bearer(get("7"), Some(&other_service))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // Missing and malformed tokens: UNAUTHENTICATED.
    let e = client.get_order(with_bearer(get("7"), None)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = client.get_order(with_bearer(get("7"), Some("tly_garbage"))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(!e.message().contains("tly_garbage"), "{e:?}");

    // Verifier gone: UNAVAILABLE (fail closed).
    verifier.kill_9();
    let e = client.get_order(with_bearer(get("7"), Some(&reader))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
}

/// A service of a multi-tenant deployment names its org: a token of another
/// org is refused (403, `wrong_org`) whatever its caveats allow.
#[tokio::test]
async fn http_example_with_an_org_refuses_other_orgs_tokens() {
    let (authority, verifier) = deployment().await;
    authority.create_org("beta").await;
    let vurl = format!("http://{}", verifier.addr());
    let (_service, addr) = start_example("http_service", &["--verifier", &vurl, "--org", "acme"]).await;
    let ours = authority.mint("acme", &["action in read"]).await.token;
    let theirs = authority.mint("beta", &["action in read"]).await.token;
    assert_eq!(http(addr, "GET", "/docs/42", Some(&ours)).await.status, 200);
    let r = http(addr, "GET", "/docs/42", Some(&theirs)).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("wrong_org"), "{r:?}");
}
