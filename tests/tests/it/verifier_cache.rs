//! Check answers: first from the authority, then from the cache; an attenuated
//! descendant from the cache with zero authority Verify calls (counted by the
//! authority itself, not timed).

use std::time::Duration;

use tally_proto::v1::{Reason, Source};
use tally_tests::Cluster;
use tally_token::{Limits, Macaroon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_hit_and_descendant_hit() {
    let c = Cluster::start(Duration::from_secs(10)).await;
    c.authority.create_org("acme").await;
    let token = c.authority.mint("acme", &["action in read,write"]).await.token;

    let first = c.eu.check(&token, "read").await;
    assert!(first.allowed, "{first:?}");
    assert_eq!(first.source(), Source::Authority);
    assert_eq!(first.org, "acme");
    let again = c.eu.check(&token, "read").await;
    assert!(again.allowed);
    assert_eq!(again.source(), Source::Cache);
    // Caveats are still evaluated on a hit.
    let write = c.eu.check(&token, "delete").await;
    assert!(!write.allowed);
    assert_eq!(write.reason(), Reason::CaveatFailed);
    assert_eq!(write.failed_caveat, "action in read,write");

    let before = c.authority_verify_count().await;
    let mut child = Macaroon::from_text(&token, &Limits::default()).unwrap();
    child.add_first_party("action in read");
    child.add_first_party("resource = docs/*");
    let child = child.to_text();
    let req = tally_proto::v1::CheckRequest {
        bundle: child.clone(),
        action: "read".into(),
        resource: "docs/a".into(),
        ..Default::default()
    };
    let desc = c.eu.client().check(req.clone()).await.unwrap().into_inner();
    assert!(desc.allowed, "{desc:?}");
    assert_eq!(desc.source(), Source::Descendant);
    let denied = c.eu.check(&child, "write").await;
    assert!(!denied.allowed, "the descendant's own caveats hold");
    assert_eq!(denied.source(), Source::Cache, "remembered after its first check");
    assert_eq!(c.authority_verify_count().await, before, "no Verify call for the descendant");

    // The other region has its own cache: a miss there first.
    assert_eq!(c.us.check(&token, "read").await.source(), Source::Authority);
    assert_eq!(c.us.status().await.authority_verifies, 1);
}
