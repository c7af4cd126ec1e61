//! Finding 5 of the security review: a service must be able to require its
//! own org. A token minted by org beta's operator, asking for nothing but
//! `action in write`, was allowed to write `acme/billing/invoices` at acme's
//! service: Check had no way to say which org the service belongs to. Now
//! the service names it (`org` in Check, the `tally_org` context extension
//! behind Envoy, the SDK layer's `org`, `tally check --org`) or the verifier
//! has a default (`--org`), and a token whose key belongs to another org is
//! denied with a reason of its own, whatever its caveats say. Acme's own
//! token is still allowed on every path.

use std::collections::HashMap;
use std::time::Duration;

use tally_proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use tally_proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tally_proto::envoy::service::auth::v3::{AttributeContext, CheckRequest as EnvoyCheck};
use tally_proto::v1::{CheckRequest, MintRequest, Reason};
use tally_tests::{Authority, Verifier, VerifierOptions, bearer};

/// Envoy's `google.rpc.Code`s.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;

/// An authority with orgs acme and beta, and a `write` token of each, minted
/// by an operator scoped to its own org.
async fn two_orgs() -> (Authority, String, String) {
    let a = Authority::start().await;
    let mut tokens = Vec::new();
    for org in ["acme", "beta"] {
        a.create_org(org).await;
        let operator = a.system_token("operator", &[&format!("org = {org}"), "action in mint"]).await;
        let req = MintRequest { org: org.into(), caveats: vec!["action in write".into()], ..Default::default() };
        tokens.push(a.client().mint(bearer(req, &operator)).await.expect("Mint").into_inner().token);
    }
    let beta = tokens.pop().unwrap();
    let acme = tokens.pop().unwrap();
    (a, acme, beta)
}

async fn verifier(a: &Authority, args: &[&str]) -> Verifier {
    let token = a.system_token("verifier", &[]).await;
    let options = VerifierOptions {
        fail_closed_after: Duration::from_secs(10),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..VerifierOptions::default()
    };
    let v = Verifier::start(&a.url(), &token, options).await;
    v.wait_synced().await;
    v
}

fn write(bundle: &str, org: &str) -> CheckRequest {
    CheckRequest {
        bundle: bundle.into(),
        action: "write".into(),
        resource: "acme/billing/invoices".into(),
        org: org.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_naming_its_org_denies_another_orgs_token() {
    let (a, acme, beta) = two_orgs().await;
    let v = verifier(&a, &[]).await;
    // Twice each: the first answer comes from the authority, the second from the cache.
    for _ in 0..2 {
        let r = v.client().check(write(&beta, "acme")).await.unwrap().into_inner();
        assert!(!r.allowed, "beta's token at acme's service: {r:?}");
        assert_eq!(r.reason(), Reason::WrongOrg, "{r:?}");
        assert_eq!(r.org, "beta");
        let r = v.client().check(write(&acme, "acme")).await.unwrap().into_inner();
        assert!(r.allowed, "acme's own token: {r:?}");
    }
    // A descendant of beta's token, answered from the cache, is denied too.
    let mut child = tally_token::Macaroon::from_text(&beta, &Default::default()).unwrap();
    child.add_first_party("resource = acme/*");
    let r = v.client().check(write(&child.to_text(), "acme")).await.unwrap().into_inner();
    assert_eq!((r.allowed, r.reason()), (false, Reason::WrongOrg), "{r:?}");
    // Without an org, and no default, the verifier cannot tell (the old behaviour).
    assert!(v.client().check(write(&beta, "")).await.unwrap().into_inner().allowed);
    // An org that is no org name is refused as bad input.
    let bad = v.client().check(write(&acme, "Acme Corp")).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifiers_default_org_applies_to_checks_naming_none() {
    let (a, acme, beta) = two_orgs().await;
    let v = verifier(&a, &["--org", "acme"]).await;
    let r = v.client().check(write(&beta, "")).await.unwrap().into_inner();
    assert_eq!((r.allowed, r.reason()), (false, Reason::WrongOrg), "{r:?}");
    assert!(v.client().check(write(&acme, "")).await.unwrap().into_inner().allowed);
    // A check naming its own org overrides the default (one verifier, several tenants).
    assert!(v.client().check(write(&beta, "beta")).await.unwrap().into_inner().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_envoy_the_route_names_the_org() {
    let (a, acme, beta) = two_orgs().await;
    let v = verifier(&a, &[]).await;
    let mut envoy = AuthorizationClient::connect(format!("http://{}", v.addr())).await.unwrap();
    let check = |token: &str| {
        let http = HttpRequest {
            method: "POST".into(),
            path: "/acme/billing/invoices".into(),
            headers: HashMap::from([("authorization".into(), format!("Bearer {token}"))]),
            ..Default::default()
        };
        EnvoyCheck {
            attributes: Some(AttributeContext {
                request: Some(Request { http: Some(http) }),
                context_extensions: HashMap::from([("tally_org".into(), "acme".into())]),
                ..Default::default()
            }),
        }
    };
    let denied = envoy.check(check(&beta)).await.unwrap().into_inner();
    assert_eq!(
        denied.status.as_ref().map(|s| s.code),
        Some(PERMISSION_DENIED),
        "beta's token at acme's route: {denied:?}"
    );
    let allowed = envoy.check(check(&acme)).await.unwrap().into_inner();
    assert_eq!(allowed.status.as_ref().map(|s| s.code), Some(OK), "{allowed:?}");
}
