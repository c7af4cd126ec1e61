//! Requests that once got through or echoed too much (found by the bad-input
//! matrix in `tests/`): minting an operator with a mint-only token, minting
//! tokens Verify would refuse, revoking families nobody minted, and huge org
//! names quoted back in errors.

use crate::common;

use common::{Harness, assert_code, bearer};
use tally_proto::v1 as pb;
use tonic::Code;

fn mint_req(org: &str, caveats: Vec<String>) -> pb::MintRequest {
    pb::MintRequest { org: org.into(), caveats, ..Default::default() }
}

#[tokio::test]
async fn minting_api_tokens_is_its_own_action() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    let mint_only = h.system_token("operator", &["action in mint"]).await;
    let mut c = h.client();
    // It mints for an org...
    c.mint(bearer(mint_req("acme", vec![]), &mint_only)).await.expect("mint for acme");
    // ...but not a fresh operator token, which would carry none of its restrictions.
    let escalate = mint_req("system", vec!["role = operator".into()]);
    assert_code(c.mint(bearer(escalate.clone(), &mint_only)).await, Code::PermissionDenied);
    // Granted explicitly, or by an unrestricted operator, it works.
    let minter = h.system_token("operator", &["action in mint.system"]).await;
    c.mint(bearer(escalate.clone(), &minter)).await.expect("mint.system granted");
    c.mint(bearer(escalate, &h.bootstrap)).await.expect("unrestricted operator");
}

#[tokio::test]
async fn mint_refuses_what_verify_would_refuse() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    let mut c = h.client();
    let before = c.list_orgs(bearer(pb::ListOrgsRequest {}, &h.bootstrap)).await.unwrap().into_inner();
    let long = "x".repeat(3000);
    let cases = [
        mint_req("acme", vec![format!("resource = {long}")]),
        mint_req("acme", (0..20).map(|i| format!("resource = {i}/{}", "y".repeat(1000))).collect()),
        pb::MintRequest { subject: long.clone(), ..mint_req("acme", vec![]) },
        pb::MintRequest { location: long.clone(), ..mint_req("acme", vec![]) },
    ];
    for req in cases {
        assert_code(c.mint(bearer(req, &h.bootstrap)).await, Code::InvalidArgument);
    }
    // A legal token of nearly the largest size still mints and verifies.
    let big: Vec<String> = (0..14).map(|i| format!("resource = {i}/{}", "z".repeat(1000))).collect();
    let minted = c.mint(bearer(mint_req("acme", big), &h.bootstrap)).await.unwrap().into_inner();
    assert!(h.verify(&minted.token).await.valid);
    let after = c.list_orgs(bearer(pb::ListOrgsRequest {}, &h.bootstrap)).await.unwrap().into_inner();
    assert_eq!(before.orgs.len(), after.orgs.len());
}

#[tokio::test]
async fn revoking_an_unknown_family_writes_nothing() {
    let h = Harness::start().await;
    let mut c = h.client();
    let req = pb::RevokeRequest {
        target: Some(pb::revoke_request::Target::Family("00112233445566778899aabbccddeeff".into())),
        reason: String::new(),
    };
    let err = c.revoke(bearer(req, &h.bootstrap)).await.expect_err("unknown family");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // The log did not move: a known family's revocation gets the first seq.
    h.create_org("acme").await;
    let minted = h.mint("acme", &[]).await;
    let req =
        pb::RevokeRequest { target: Some(pb::revoke_request::Target::Family(minted.family)), reason: String::new() };
    assert_eq!(c.revoke(bearer(req, &h.bootstrap)).await.unwrap().into_inner().seq, 1);
}

#[tokio::test]
async fn huge_org_names_are_refused_not_echoed() {
    let h = Harness::start().await;
    let mut c = h.client();
    let org = "a".repeat(100_000);
    let check = |r: Result<(), tonic::Status>| {
        let e = r.expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().len() < 200, "the name is not quoted back");
    };
    check(c.rotate_key(bearer(pb::RotateKeyRequest { org: org.clone() }, &h.bootstrap)).await.map(drop));
    check(c.list_keys(bearer(pb::ListKeysRequest { org: org.clone() }, &h.bootstrap)).await.map(drop));
    let req = pb::RevokeRequest { target: Some(pb::revoke_request::Target::Org(org)), reason: String::new() };
    check(c.revoke(bearer(req, &h.bootstrap)).await.map(drop));
}
