//! Finding 3 of the security review: a token holder must not buy verifier
//! CPU. Seven caveats `resource = *aaaa…ab` (2,030 `a`s each, within the
//! token limits), added offline, against a 300 KB resource once took 3 s of
//! CPU for one Check: the glob matcher backtracked. Now the request fields
//! are bounded (the resource to `tally_token::DEFAULT_MAX_RESOURCE_BYTES`)
//! and refused past their bound before any caveat sees them, on the gRPC
//! Check and behind Envoy alike, and the matcher never backtracks
//! (`token/src/glob.rs`; its work bound is checked by its unit tests and its
//! speed by `cargo bench -p tally-token`, never here). The worst token at the
//! bound is answered, correctly, and another client's check is answered
//! beside it. What a token's caveats may cost one evaluation is budgeted
//! (resource glob weight, list items): past it a caveat does not hold.

use std::collections::HashMap;
use std::time::Duration;

use tally_proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use tally_proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tally_proto::envoy::service::auth::v3::{AttributeContext, CheckRequest as EnvoyCheck};
use tally_proto::v1::CheckRequest;
use tally_tests::{Authority, Verifier, VerifierOptions};
use tally_token::{DEFAULT_MAX_RESOURCE_BYTES, Limits, MAX_GLOB_WEIGHT, MAX_LIST_ITEMS, Macaroon};
use tonic::Code;

/// `google.rpc.Code` INVALID_ARGUMENT, as Envoy reads it.
const INVALID_ARGUMENT: i32 = 3;

fn read(bundle: &str, resource: String) -> CheckRequest {
    CheckRequest { bundle: bundle.into(), action: "read".into(), resource, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtracking_globs_cannot_buy_cpu() {
    let a = Authority::start().await;
    a.create_org("acme").await;
    let token = a.mint("acme", &["action in read"]).await.token;
    let verifier_token = a.system_token("verifier", &[]).await;
    let options = VerifierOptions { fail_closed_after: Duration::from_secs(10), ..VerifierOptions::default() };
    let v = Verifier::start(&a.url(), &verifier_token, options).await;
    v.wait_synced().await;

    // The holder's seven caveats, within the token limits.
    let mut evil = Macaroon::from_text(&token, &Limits::default()).unwrap();
    let glob = format!("resource = *{}b", "a".repeat(2030));
    for _ in 0..7 {
        evil.add_first_party(glob.as_bytes());
    }
    let evil = evil.to_text();

    // 300 KB of resource: refused as bad input, before any caveat runs.
    let huge = "a".repeat(300_000);
    let refused = v.client().check(read(&evil, huge.clone())).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("resource"), "{refused:?}");

    // Behind Envoy the path is the resource: the same bound, a 400.
    let mut envoy = AuthorizationClient::connect(format!("http://{}", v.addr())).await.unwrap();
    let http = HttpRequest {
        method: "GET".into(),
        path: format!("/{huge}"),
        headers: HashMap::from([("authorization".into(), format!("Bearer {evil}"))]),
        ..Default::default()
    };
    let attributes = AttributeContext { request: Some(Request { http: Some(http) }), ..Default::default() };
    let r = envoy.check(EnvoyCheck { attributes: Some(attributes) }).await.unwrap().into_inner();
    assert_eq!(r.status.map(|s| s.code), Some(INVALID_ARGUMENT));

    // At the bound the globs (each longer than any resource now) are
    // answered at once, and right: no match.
    let at_bound = format!("{}ab", "a".repeat(DEFAULT_MAX_RESOURCE_BYTES - 2));
    let r = v.client().check(read(&evil, at_bound.clone())).await.unwrap().into_inner();
    assert!(!r.allowed, "{r:?}");
    assert_eq!(r.failed_caveat, glob);

    // Globs that fit the bound, seven of them: the text ends in `ab`, so all
    // seven match; without the `b`, none does.
    let mut fitting = Macaroon::from_text(&token, &Limits::default()).unwrap();
    let glob = format!("resource = *{}b", "a".repeat(1000));
    for _ in 0..7 {
        fitting.add_first_party(glob.as_bytes());
    }
    let evil = fitting.to_text();
    let r = v.client().check(read(&evil, at_bound.clone())).await.unwrap().into_inner();
    assert!(r.allowed, "{r:?}");
    let r = v.client().check(read(&evil, "a".repeat(DEFAULT_MAX_RESOURCE_BYTES))).await.unwrap().into_inner();
    assert!(!r.allowed, "{r:?}");
    assert_eq!(r.failed_caveat, glob);

    // Many of them at once, and another client's cached check beside them.
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (mut c, evil, resource) = (v.client(), evil.clone(), at_bound.clone());
        load.spawn(async move { c.check(read(&evil, resource)).await.map(|r| r.into_inner().allowed) });
    }
    let other = v.client().check(read(&token, String::new())).await.unwrap().into_inner();
    assert!(other.allowed, "{other:?}");
    for answer in load.join_all().await {
        assert_eq!(answer.ok(), Some(true));
    }

    // Past the evaluation's budgets a caveat is not read and does not hold:
    // a fifth glob that searches, a list item past the 64th. Prefix globs
    // search nothing and cost nothing. The verifier says why.
    let budget = |extra: &str, fill: &str, copies: usize| {
        let mut m = Macaroon::from_text(&token, &Limits::default()).unwrap();
        for _ in 0..copies {
            m.add_first_party(fill.as_bytes());
        }
        m.add_first_party(extra.as_bytes());
        m.to_text()
    };
    let prefixes = budget("resource = docs/*", "resource = docs/*", 100);
    let r = v.client().check(read(&prefixes, "docs/a".into())).await.unwrap().into_inner();
    assert!(r.allowed, "101 prefix globs: {r:?}");
    let searching = "resource = docs*/*a";
    let globs = budget(searching, searching, MAX_GLOB_WEIGHT as usize - 1);
    let r = v.client().check(read(&globs, "docs/a".into())).await.unwrap().into_inner();
    assert!(r.allowed, "4 searching globs: {r:?}");
    let globs = budget(searching, searching, MAX_GLOB_WEIGHT as usize);
    let r = v.client().check(read(&globs, "docs/a".into())).await.unwrap().into_inner();
    assert!(!r.allowed && r.detail.contains("cost more than one check allows"), "5 searching globs: {r:?}");
    let half = MAX_LIST_ITEMS as usize / 2;
    let ranges: Vec<String> = (1..half).map(|i| format!("10.9.{i}.0/24")).collect();
    let ranges = format!("client-ip in {},127.0.0.0/8", ranges.join(","));
    // The minted `action in read` is one item; with one list of 32 the
    // token holds 34, with a second 66.
    let check_from_localhost = |bundle: String| {
        let mut req = read(&bundle, String::new());
        req.client_ip = "127.0.0.1".into();
        let mut client = v.client();
        async move { client.check(req).await.unwrap().into_inner() }
    };
    let r = check_from_localhost(budget("action in read", &ranges, 1)).await;
    assert!(r.allowed, "34 list items: {r:?}");
    let r = check_from_localhost(budget("action in read", &ranges, 2)).await;
    assert!(!r.allowed && r.failed_caveat == ranges, "66 list items: {}", r.reason);
    assert!(r.detail.contains("cost more than one check allows"), "{}", r.reason);
}
