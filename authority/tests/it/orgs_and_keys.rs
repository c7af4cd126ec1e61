//! CreateOrg, ListOrgs, RotateKey, RetireKey, ListKeys: happy paths and errors.

use crate::common;

use common::{Harness, assert_code, bearer};
use tally_proto::v1 as pb;
use tonic::{Code, Request};

#[tokio::test]
async fn create_list_rotate_retire() {
    let h = Harness::start().await;
    let mut c = h.client();
    let first = h.create_org("acme").await;
    let orgs = c.list_orgs(bearer(pb::ListOrgsRequest {}, &h.bootstrap)).await.unwrap().into_inner().orgs;
    let names: Vec<_> = orgs.iter().map(|o| o.org.as_str()).collect();
    assert_eq!(names, ["acme", "system"]);

    // A token under the first key keeps verifying after a rotation.
    let old = h.mint("acme", &[]).await;
    assert_eq!(old.key_id, first);
    let rotated = c.rotate_key(bearer(pb::RotateKeyRequest { org: "acme".into() }, &h.bootstrap)).await.unwrap();
    let second = rotated.into_inner().key_id;
    assert_ne!(second, first);
    assert_eq!(h.mint("acme", &[]).await.key_id, second, "mints use the new key");
    assert!(h.verify(&old.token).await.valid, "old key still verifies until retired");

    let keys =
        c.list_keys(bearer(pb::ListKeysRequest { org: "acme".into() }, &h.bootstrap)).await.unwrap().into_inner().keys;
    assert_eq!(keys.iter().map(|k| (k.key_id, k.current)).collect::<Vec<_>>(), [(first, false), (second, true)]);

    // The current key cannot be retired; the old one can, and its tokens stop verifying.
    let retire = |key_id| bearer(pb::RetireKeyRequest { key_id }, &h.bootstrap);
    assert_code(c.retire_key(retire(second)).await, Code::FailedPrecondition);
    let seq = c.retire_key(retire(first)).await.unwrap().into_inner().seq;
    assert!(seq > 0, "retirement is logged for verifiers");
    let v = h.verify(&old.token).await;
    assert!(!v.valid);
    assert_eq!(v.reason(), pb::Reason::RetiredKey);
    assert_code(c.retire_key(retire(first)).await, Code::FailedPrecondition);
    assert_code(c.retire_key(retire(999)).await, Code::NotFound);
}

#[tokio::test]
async fn org_errors() {
    let h = Harness::start().await;
    let mut c = h.client();
    h.create_org("acme").await;
    let create = |org: &str| bearer(pb::CreateOrgRequest { org: org.into() }, &h.bootstrap);
    assert_code(c.create_org(create("acme")).await, Code::AlreadyExists);
    assert_code(c.create_org(create("system")).await, Code::AlreadyExists);
    for bad in ["", "Upper", "has space", &"x".repeat(65), "semi;colon"] {
        assert_code(c.create_org(create(bad)).await, Code::InvalidArgument);
    }
    assert_code(c.rotate_key(bearer(pb::RotateKeyRequest { org: "nope".into() }, &h.bootstrap)).await, Code::NotFound);
    assert_code(c.list_keys(bearer(pb::ListKeysRequest { org: "nope".into() }, &h.bootstrap)).await, Code::NotFound);
    // Nothing partial was written by the failures.
    let orgs = c.list_orgs(bearer(pb::ListOrgsRequest {}, &h.bootstrap)).await.unwrap().into_inner().orgs;
    assert_eq!(orgs.len(), 2);
}

#[tokio::test]
async fn management_needs_an_unscoped_operator() {
    let h = Harness::start().await;
    let mut c = h.client();
    h.create_org("acme").await;
    assert_code(c.create_org(Request::new(pb::CreateOrgRequest { org: "x".into() })).await, Code::Unauthenticated);
    assert_code(
        c.create_org(bearer(pb::CreateOrgRequest { org: "x".into() }, "tly_garbage")).await,
        Code::Unauthenticated,
    );
    let verifier = h.system_token("verifier", &[]).await;
    assert_code(
        c.create_org(bearer(pb::CreateOrgRequest { org: "x".into() }, &verifier)).await,
        Code::PermissionDenied,
    );
    let scoped = h.system_token("operator", &["org = acme"]).await;
    assert_code(c.create_org(bearer(pb::CreateOrgRequest { org: "x".into() }, &scoped)).await, Code::PermissionDenied);
    // `org = system` is not a scope that reaches the system org's powers.
    let system_scoped = h.system_token("operator", &["org = system"]).await;
    let req = pb::MintRequest { org: "system".into(), caveats: vec!["role = operator".into()], ..Default::default() };
    assert_code(c.mint(bearer(req, &system_scoped)).await, Code::PermissionDenied);
    assert_code(
        c.rotate_key(bearer(pb::RotateKeyRequest { org: "system".into() }, &system_scoped)).await,
        Code::PermissionDenied,
    );
    assert_code(c.list_orgs(bearer(pb::ListOrgsRequest {}, &scoped)).await, Code::PermissionDenied);
    // Scoped to acme: may rotate acme's key, not system's.
    c.rotate_key(bearer(pb::RotateKeyRequest { org: "acme".into() }, &scoped)).await.unwrap();
    assert_code(
        c.rotate_key(bearer(pb::RotateKeyRequest { org: "system".into() }, &scoped)).await,
        Code::PermissionDenied,
    );
    // An action-scoped operator may do only that.
    let minter = h.system_token("operator", &["action in mint"]).await;
    assert_code(
        c.rotate_key(bearer(pb::RotateKeyRequest { org: "acme".into() }, &minter)).await,
        Code::PermissionDenied,
    );
    let req = pb::MintRequest { org: "acme".into(), ..Default::default() };
    c.mint(bearer(req, &minter)).await.unwrap();
    // A token of a customer org is not a Tally API token, whatever it says.
    let customer = h.mint("acme", &["role = operator"]).await.token;
    assert_code(
        c.create_org(bearer(pb::CreateOrgRequest { org: "x".into() }, &customer)).await,
        Code::PermissionDenied,
    );
}
