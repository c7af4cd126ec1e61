//! Forgeries against a warm cache (a cache entry binds its exact prefix): a token whose
//! prefix caveat was changed or dropped, with a valid-looking tail computed
//! from the cached parent's signature (which its holder knows), is denied,
//! even though the parent is cached.

use std::time::Duration;

use tally_proto::v1::{CheckRequest, CheckResponse, Reason, Source};
use tally_tests::Cluster;
use tally_token::{Caveat, Limits, Macaroon, continue_chain};

async fn check(c: &Cluster, bundle: &str) -> CheckResponse {
    let req = CheckRequest {
        bundle: bundle.into(),
        action: "write".into(),
        resource: "private/x".into(),
        ..Default::default()
    };
    c.eu.client().check(req).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_or_dropped_prefix_caveats_are_denied() {
    let c = Cluster::start(Duration::from_secs(10)).await;
    c.authority.create_org("acme").await;
    let token = c.authority.mint("acme", &["action in read", "resource = public/*"]).await.token;
    let parent = Macaroon::from_text(&token, &Limits::default()).unwrap();
    let cached =
        c.eu.client()
            .check(CheckRequest {
                bundle: token.clone(),
                action: "read".into(),
                resource: "public/a".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    assert!(cached.allowed, "{cached:?}");

    // The holder of the parent knows its signature: the tail is computed from it.
    let caveats = parent.caveats().to_vec();
    let tail = [Caveat::first_party("service = web")];
    let forge = |prefix: Vec<Caveat>| {
        let mut all = prefix;
        all.extend_from_slice(&tail);
        let sig = continue_chain(parent.signature(), &tail);
        Macaroon::from_parts(None, parent.identifier().to_vec(), all, sig).to_text()
    };
    let k = caveats.iter().position(|c| c.id == b"action in read").unwrap();
    let mut changed = caveats.clone();
    changed[k] = Caveat::first_party("action in read,write");
    let mut dropped = caveats.clone();
    dropped.remove(k);
    let mut widened = caveats.clone();
    widened[k + 1] = Caveat::first_party("resource = *");

    for (name, forged) in [("changed", forge(changed)), ("dropped", forge(dropped)), ("widened", forge(widened))] {
        assert_eq!(c.authority.verify(&forged).await.reason(), Reason::Forged, "{name}: really a forgery");
        let r = check(&c, &forged).await;
        assert!(!r.allowed, "{name}: {r:?}");
        assert_eq!(r.reason(), Reason::Forged, "{name}: {r:?}");
        assert_ne!(r.source(), Source::Unspecified);
    }
    // A genuine descendant built the same way, with the prefix untouched, is fine.
    let genuine = forge(caveats.clone());
    let r =
        c.eu.client()
            .check(CheckRequest {
                bundle: genuine,
                action: "read".into(),
                resource: "public/a".into(),
                service: "web".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.source(), Source::Descendant);
}
