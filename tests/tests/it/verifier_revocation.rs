//! Revocations reach every region: a family revoked → both verifiers deny; one
//! branch revoked → its descendants denied, its siblings still allowed. Waits
//! poll Status until the applied seq reaches the revocation's seq.

use std::time::Duration;

use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::{Reason, RevokeRequest};
use tally_tests::{Cluster, bearer};
use tally_token::{Limits, Macaroon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn family_revocation_reaches_both_regions() {
    let c = Cluster::start(Duration::from_secs(10)).await;
    c.authority.create_org("acme").await;
    let minted = c.authority.mint("acme", &[]).await;
    let mut child = Macaroon::from_text(&minted.token, &Limits::default()).unwrap();
    child.add_first_party("action in read");
    let child = child.to_text();
    for v in [&c.eu, &c.us] {
        assert!(v.check(&minted.token, "read").await.allowed);
        assert!(v.check(&child, "read").await.allowed);
    }
    let req = RevokeRequest { target: Some(Target::Family(minted.family.clone())), reason: "test".into() };
    let seq = c.authority.client().revoke(bearer(req, c.authority.bootstrap())).await.unwrap().into_inner().seq;
    for v in [&c.eu, &c.us] {
        v.wait_applied(seq).await;
        for bundle in [&minted.token, &child] {
            let r = v.check(bundle, "read").await;
            assert!(!r.allowed);
            assert_eq!(r.reason(), Reason::Revoked);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_revocation_spares_siblings() {
    let c = Cluster::start(Duration::from_secs(10)).await;
    c.authority.create_org("acme").await;
    let parent = Macaroon::from_text(&c.authority.mint("acme", &[]).await.token, &Limits::default()).unwrap();
    let branch = |caveat: &str| {
        let mut m = parent.clone();
        m.add_first_party(caveat);
        m
    };
    let (a, b) = (branch("action in read"), branch("action in read,list"));
    let mut a_child = a.clone();
    a_child.add_first_party("resource = x");
    let a_child = a_child.to_text();
    for v in [&c.eu, &c.us] {
        assert!(v.check(&parent.to_text(), "read").await.allowed);
        assert!(v.check(&a.to_text(), "read").await.allowed);
    }
    // The holder of `a` revokes it (no other credential).
    let req = RevokeRequest { target: Some(Target::Token(a.to_text())), reason: String::new() };
    let seq = c.authority.client().revoke(req).await.unwrap().into_inner().seq;
    for v in [&c.eu, &c.us] {
        v.wait_applied(seq).await;
        assert_eq!(v.check(&a.to_text(), "read").await.reason(), Reason::Revoked);
        // A descendant of the revoked branch, never seen before, is denied too.
        let r = v.check(&a_child, "read").await;
        assert_eq!(r.reason(), Reason::Revoked, "{r:?}");
        assert!(v.check(&b.to_text(), "read").await.allowed, "sibling still allowed");
        assert!(v.check(&parent.to_text(), "read").await.allowed, "parent still allowed");
    }
}
