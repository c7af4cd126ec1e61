//! Mint and Verify: happy paths, the verdicts, and the error statuses.

use crate::common;

use common::{Harness, assert_code, bearer, fast_settings};
use tally_authority::Settings;
use tally_proto::v1 as pb;
use tally_token::{Limits, Macaroon};
use tonic::{Code, Request};

#[tokio::test]
async fn mint_then_verify() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    let req = pb::MintRequest {
        org: "acme".into(),
        caveats: vec!["action in read".into()],
        ttl_seconds: 600,
        subject: "alice".into(),
        location: "https://tally.example".into(),
    };
    let minted = h.client().mint(bearer(req, &h.bootstrap)).await.unwrap().into_inner();
    assert!(minted.token.starts_with("tly_"));
    assert_eq!(minted.family.len(), 32);
    let m = Macaroon::from_text(&minted.token, &Limits::default()).unwrap();
    let caveats: Vec<_> = m.caveats().iter().map(|c| String::from_utf8(c.id.clone()).unwrap()).collect();
    assert_eq!(caveats[0], "org = acme");
    assert!(caveats[1].starts_with("expires < "));
    assert_eq!(&caveats[2..], ["subject = alice", "action in read"]);
    assert_eq!(m.location(), Some("https://tally.example"));

    // Operators may call Verify, but chain signatures are for verifiers only.
    let as_operator = h.client().verify(bearer(pb::VerifyRequest { bundle: minted.token.clone() }, &h.bootstrap)).await;
    let as_operator = as_operator.unwrap().into_inner();
    assert!(as_operator.valid && as_operator.chain.is_empty());

    let v = h.verify(&minted.token).await;
    assert!(v.valid, "{v:?}");
    assert_eq!(v.reason(), pb::Reason::Ok);
    assert_eq!(v.org, "acme");
    assert_eq!(hex(&v.family), minted.family);
    assert_eq!(v.expires_at_unix_ms, minted.expires_at_unix_ms);
    // Signatures from the minted length on (a verifier may hold only what a
    // presenter could compute from the minted token): here the token itself.
    assert_eq!((v.chain_from, v.chain.len()), (4, 1), "no signature of a shorter prefix");
    assert_eq!(v.chain[0], m.signature().as_bytes().to_vec());
    assert!(!v.epoch.is_empty());

    // An attenuated descendant verifies too: the minted signature and its own.
    let mut child = m.clone();
    child.add_first_party("resource = docs/*");
    let v = h.verify(&child.to_text()).await;
    assert!(v.valid);
    assert_eq!((v.chain_from, v.chain.len()), (4, 2));
    assert_eq!(v.chain[0], m.signature().as_bytes().to_vec());
    assert_eq!(v.chain[1], child.signature().as_bytes().to_vec());
}

#[tokio::test]
async fn verify_verdicts() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    let token = h.mint("acme", &[]).await.token;
    let mut forged = Macaroon::from_text(&token, &Limits::default()).unwrap();
    let mut parts = forged.caveats().to_vec();
    parts[0].id = b"org = other".to_vec();
    forged = Macaroon::from_parts(None, forged.identifier().to_vec(), parts, forged.signature().clone());
    assert_eq!(h.verify(&forged.to_text()).await.reason(), pb::Reason::Forged);

    // A token minted offline with someone else's key under a Tally-looking identifier.
    let foreign = {
        let id = tally_token::TallyId::new(tally_token::KeyId(77), [1; 16]);
        Macaroon::mint(&tally_token::RootKey::from_bytes([3; 32]), id.encode(), None).to_text()
    };
    assert_eq!(h.verify(&foreign).await.reason(), pb::Reason::UnknownKey);
}

#[tokio::test]
async fn mint_and_verify_errors() {
    let h = Harness::start().await;
    let mut c = h.client();
    h.create_org("acme").await;
    h.create_org("beta").await;
    let mint = |org: &str, caveats: Vec<&str>| pb::MintRequest {
        org: org.into(),
        caveats: caveats.into_iter().map(String::from).collect(),
        ..Default::default()
    };
    // Unknown org, malformed requests.
    assert_code(c.mint(bearer(mint("nope", vec![]), &h.bootstrap)).await, Code::NotFound);
    assert_code(c.mint(bearer(mint("acme", vec!["colour = red"]), &h.bootstrap)).await, Code::InvalidArgument);
    assert_code(c.mint(bearer(mint("acme", vec!["org = beta"]), &h.bootstrap)).await, Code::InvalidArgument);
    let long = pb::MintRequest { org: "acme".into(), ttl_seconds: 10 * 365 * 24 * 3600, ..Default::default() };
    assert_code(c.mint(bearer(long, &h.bootstrap)).await, Code::InvalidArgument);
    let bad_subject = pb::MintRequest { org: "acme".into(), subject: "two words".into(), ..Default::default() };
    assert_code(c.mint(bearer(bad_subject, &h.bootstrap)).await, Code::InvalidArgument);

    // Bad token, wrong role, wrong org.
    assert_code(c.mint(Request::new(mint("acme", vec![]))).await, Code::Unauthenticated);
    assert_code(c.mint(bearer(mint("acme", vec![]), "not-a-token")).await, Code::Unauthenticated);
    let verifier = h.system_token("verifier", &[]).await;
    assert_code(c.mint(bearer(mint("acme", vec![]), &verifier)).await, Code::PermissionDenied);
    let acme_op = h.system_token("operator", &["org = acme"]).await;
    c.mint(bearer(mint("acme", vec![]), &acme_op)).await.unwrap();
    assert_code(c.mint(bearer(mint("beta", vec![]), &acme_op)).await, Code::PermissionDenied);
    let expired = h.system_token("operator", &["expires < 2000-01-01T00:00:00Z"]).await;
    assert_code(c.mint(bearer(mint("acme", vec![]), &expired)).await, Code::Unauthenticated);

    // Verify: needs a verifier or operator; malformed bundles are InvalidArgument.
    let token = h.mint("acme", &[]).await.token;
    let verify = |bundle: &str| pb::VerifyRequest { bundle: bundle.into() };
    assert!(c.verify(bearer(verify(&token), &verifier)).await.unwrap().into_inner().valid);
    assert_code(c.verify(Request::new(verify(&token))).await, Code::Unauthenticated);
    assert_code(c.verify(bearer(verify(&token), &token)).await, Code::PermissionDenied);
    for bad in ["", "tly_!!", ",", &format!("{token},")] {
        assert_code(c.verify(bearer(verify(bad), &verifier)).await, Code::InvalidArgument);
    }
}

#[tokio::test]
async fn introspect() {
    let h = Harness::start().await;
    let mut c = h.client();
    h.create_org("acme").await;
    let req = pb::MintRequest { org: "acme".into(), subject: "bob".into(), ..Default::default() };
    let minted = c.mint(bearer(req, &h.bootstrap)).await.unwrap().into_inner();
    let ask = |bundle: &str| pb::IntrospectRequest { bundle: bundle.into() };
    let view = c.introspect(bearer(ask(&minted.token), &h.bootstrap)).await.unwrap().into_inner();
    assert!(view.active);
    assert_eq!((view.org.as_str(), view.subject.as_str()), ("acme", "bob"));
    assert_eq!(view.family, minted.family);
    assert_eq!(view.caveats.len(), 3);
    assert!(!format!("{view:?}").contains(&minted.token[4..]), "never echoes the token");

    let other = h.system_token("operator", &["org = beta"]).await;
    assert_code(c.introspect(bearer(ask(&minted.token), &other)).await, Code::PermissionDenied);
    assert_code(c.introspect(Request::new(ask(&minted.token))).await, Code::Unauthenticated);
    assert_code(c.introspect(bearer(ask("garbage"), &h.bootstrap)).await, Code::InvalidArgument);

    let revoke = pb::RevokeRequest {
        target: Some(pb::revoke_request::Target::Token(minted.token.clone())),
        reason: String::new(),
    };
    c.revoke(Request::new(revoke)).await.unwrap();
    let view = c.introspect(bearer(ask(&minted.token), &h.bootstrap)).await.unwrap().into_inner();
    assert!(!view.active);
    assert_eq!(view.reason(), pb::Reason::Revoked);
    assert!(view.org.is_empty() && view.caveats.is_empty(), "inactive tokens reveal nothing");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token minted before the authority recorded how many caveats it was
/// minted with (its registry row says NULL): a verifier gets the presented
/// token's own signature only, which its presenter holds anyway, never a
/// shorter prefix's.
#[tokio::test]
async fn an_unrecorded_minted_length_hands_out_the_presented_signature_only() {
    let h = Harness::start_with(Settings { registry_remembered: 1, ..fast_settings() }).await;
    h.create_org("acme").await;
    let old = h.mint("acme", &["action in read"]).await;
    let mut db = common::db_connect(&h).await;
    let family = (0..old.family.len()).step_by(2).map(|i| u8::from_str_radix(&old.family[i..i + 2], 16).unwrap());
    let done = sqlx::query("UPDATE tokens SET minted_caveats = NULL WHERE family = $1")
        .bind(family.collect::<Vec<u8>>())
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    sqlx::Connection::close(db).await.unwrap();
    // The registry memory forgets the row (it keeps two generations of one).
    for _ in 0..3 {
        h.mint("acme", &[]).await;
    }
    let reads = h.authority.registry_reads();

    let mut child = Macaroon::from_text(&old.token, &Limits::default()).unwrap();
    child.add_first_party("resource = docs/*");
    let v = h.verify(&child.to_text()).await;
    assert!(v.valid, "{v:?}");
    assert_eq!((v.chain_from, v.chain.len()), (child.caveats().len() as u32, 1));
    assert_eq!(v.chain[0], child.signature().as_bytes().to_vec());
    assert!(h.authority.registry_reads() > reads, "the row was read from the database");
}
