//! Revoke: by its holder, by family, by key, by org; and who may.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{FakeClock, Harness, assert_code, bearer, fast_settings};
use tally_authority::Settings;
use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_token::{Limits, Macaroon};
use tonic::{Code, Request};

fn revoke(target: Target) -> pb::RevokeRequest {
    pb::RevokeRequest { target: Some(target), reason: "test".into() }
}

#[tokio::test]
async fn holder_revokes_its_branch_not_its_siblings() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    let parent = Macaroon::from_text(&h.mint("acme", &[]).await.token, &Limits::default()).unwrap();
    let mut a = parent.clone();
    a.add_first_party("action in read");
    let mut b = parent.clone();
    b.add_first_party("action in write");
    let mut a_child = a.clone();
    a_child.add_first_party("resource = x");

    // The holder of `a` needs no other credential.
    let seq = h.client().revoke(Request::new(revoke(Target::Token(a.to_text())))).await.unwrap().into_inner().seq;
    assert_eq!(seq, 1);
    assert_eq!(h.verify(&a.to_text()).await.reason(), pb::Reason::Revoked);
    assert_eq!(h.verify(&a_child.to_text()).await.reason(), pb::Reason::Revoked, "descendants go too");
    assert!(h.verify(&b.to_text()).await.valid, "siblings stay");
    assert!(h.verify(&parent.to_text()).await.valid, "the parent stays");

    // A token that does not verify cannot be revoked by "holding" it.
    let mut forged = b.clone();
    forged.add_first_party("x");
    let forged = Macaroon::from_parts(
        None,
        forged.identifier().to_vec(),
        forged.caveats()[..1].to_vec(),
        forged.signature().clone(),
    );
    assert_code(h.client().revoke(Request::new(revoke(Target::Token(forged.to_text())))).await, Code::InvalidArgument);
    assert_code(h.client().revoke(Request::new(revoke(Target::Token("junk".into())))).await, Code::InvalidArgument);
}

#[tokio::test]
async fn family_key_and_org() {
    let h = Harness::start().await;
    let mut c = h.client();
    h.create_org("acme").await;
    h.create_org("beta").await;
    let t1 = h.mint("acme", &[]).await;
    let t2 = h.mint("acme", &[]).await;
    let t3 = h.mint("beta", &[]).await;

    c.revoke(bearer(revoke(Target::Family(t1.family.clone())), &h.bootstrap)).await.unwrap();
    assert_eq!(h.verify(&t1.token).await.reason(), pb::Reason::Revoked);
    assert!(h.verify(&t2.token).await.valid);

    // By key: every token under it; the org gets a fresh key and keeps minting.
    c.revoke(bearer(revoke(Target::KeyId(t2.key_id)), &h.bootstrap)).await.unwrap();
    assert_eq!(h.verify(&t2.token).await.reason(), pb::Reason::RetiredKey);
    let t4 = h.mint("acme", &[]).await;
    assert_ne!(t4.key_id, t2.key_id);
    assert!(h.verify(&t4.token).await.valid);

    // By org: every token of the org so far, not the others'.
    let seq = c.revoke(bearer(revoke(Target::Org("acme".into())), &h.bootstrap)).await.unwrap().into_inner().seq;
    assert!(!h.verify(&t4.token).await.valid);
    assert!(h.verify(&t3.token).await.valid);
    assert!(h.verify(&h.mint("acme", &[]).await.token).await.valid, "new mints work");
    assert_eq!(seq, 3, "family, key, org: one log entry each, contiguous");
}

#[tokio::test]
async fn who_may_revoke() {
    let h = Harness::start().await;
    let mut c = h.client();
    h.create_org("acme").await;
    h.create_org("beta").await;
    let t = h.mint("beta", &[]).await;
    let acme_op = h.system_token("operator", &["org = acme"]).await;
    let verifier = h.system_token("verifier", &[]).await;
    assert_code(c.revoke(Request::new(revoke(Target::Family(t.family.clone())))).await, Code::Unauthenticated);
    assert_code(c.revoke(bearer(revoke(Target::Family(t.family.clone())), &verifier)).await, Code::PermissionDenied);
    assert_code(c.revoke(bearer(revoke(Target::Family(t.family.clone())), &acme_op)).await, Code::PermissionDenied);
    assert_code(c.revoke(bearer(revoke(Target::Org("beta".into())), &acme_op)).await, Code::PermissionDenied);
    assert_code(c.revoke(bearer(revoke(Target::KeyId(t.key_id)), &acme_op)).await, Code::PermissionDenied);
    assert_code(c.revoke(bearer(revoke(Target::Family("zz".into())), &h.bootstrap)).await, Code::InvalidArgument);
    assert_code(c.revoke(bearer(revoke(Target::KeyId(999)), &h.bootstrap)).await, Code::NotFound);
    assert_code(c.revoke(bearer(pb::RevokeRequest::default(), &h.bootstrap)).await, Code::InvalidArgument);
    let long = pb::RevokeRequest { target: Some(Target::Family(t.family.clone())), reason: "x".repeat(300) };
    assert_code(c.revoke(bearer(long, &h.bootstrap)).await, Code::InvalidArgument);
    assert!(h.verify(&t.token).await.valid, "no refused request wrote anything");
    assert_eq!(h.authority.head().seq, 0);
    // A revoked operator token no longer works.
    let op = h.system_token("operator", &[]).await;
    let family = Macaroon::from_text(&op, &Limits::default()).unwrap();
    let family = tally_token::TallyId::decode(family.identifier()).unwrap().family.to_hex();
    c.revoke(bearer(revoke(Target::Family(family)), &h.bootstrap)).await.unwrap();
    assert_code(c.revoke(bearer(revoke(Target::Family(t.family.clone())), &op)).await, Code::Unauthenticated);
}

#[tokio::test]
async fn a_family_the_registry_memory_forgot_is_read_from_the_database() {
    let h = Harness::start_with(Settings { registry_remembered: 2, ..fast_settings() }).await;
    let mut c = h.client();
    h.create_org("acme").await;
    let beta_op = h.system_token("operator", &["org = beta"]).await;
    let first = h.mint("acme", &[]).await;
    for _ in 0..3 {
        h.mint("acme", &[]).await;
    }
    let second_last = h.mint("acme", &[]).await;
    let last = h.mint("acme", &[]).await;

    for family in [last.family, second_last.family] {
        c.revoke(bearer(revoke(Target::Family(family)), &h.bootstrap)).await.unwrap();
    }
    assert_eq!(h.authority.registry_reads(), 0, "the last 2 mints are remembered");
    // Five mints ago: forgotten, so read from the database, org included.
    let first_family = || revoke(Target::Family(first.family.clone()));
    assert_code(c.revoke(bearer(first_family(), &beta_op)).await, Code::PermissionDenied);
    assert_eq!(h.authority.registry_reads(), 1);
    c.revoke(bearer(first_family(), &h.bootstrap)).await.unwrap();
    assert_eq!(h.authority.registry_reads(), 1, "the row read is remembered");
    assert_eq!(h.verify(&first.token).await.reason(), pb::Reason::Revoked);
}

#[tokio::test]
async fn holder_revokes_an_org_scoped_operator_token() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    let scoped = h.system_token("operator", &["org = acme"]).await;
    // On API tokens `org = acme` is a scope, not the token's org: it verifies.
    assert!(h.verify(&scoped).await.valid);
    h.client().revoke(Request::new(revoke(Target::Token(scoped.clone())))).await.unwrap();
    let req = pb::MintRequest { org: "acme".into(), ..Default::default() };
    assert_code(h.client().mint(bearer(req, &scoped)).await, Code::Unauthenticated);
}

#[tokio::test]
async fn concurrent_revocations_share_commits() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    const N: usize = 200;
    let mut families = Vec::with_capacity(N);
    for _ in 0..N {
        families.push(h.mint("acme", &[]).await.family);
    }
    let (commits, changes) = h.authority.commits();
    let calls = families.into_iter().map(|family| {
        let mut c = h.client();
        let req = bearer(revoke(Target::Family(family)), &h.bootstrap);
        tokio::spawn(async move { c.revoke(req).await.map(|r| r.into_inner().seq) })
    });
    let mut seqs = Vec::with_capacity(N);
    for call in calls.collect::<Vec<_>>() {
        seqs.push(call.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N as u64).collect::<Vec<_>>(), "each revocation its own seq, none lost");
    let (commits_after, changes_after) = h.authority.commits();
    let (commits, changes) = (commits_after - commits, changes_after - changes);
    assert_eq!(changes, N as u64);
    // One fsync each would be N commits.
    assert!(commits <= (N / 4) as u64, "{N} concurrent revocations took {commits} commits");
}

/// A revoked family's log entry is pruned an hour after the family's expiry;
/// no token of it may verify again afterwards. Every minted token carries its
/// `expires` caveat, which no holder or verifier can strip (it is in every signature a
/// verifier is handed), so
/// the token and every attenuation of it are expired by then.
#[tokio::test]
async fn no_token_of_a_pruned_family_verifies_again() {
    let clock = FakeClock::new();
    let h = Harness::start_with_clock(fast_settings(), Arc::new(clock.clone())).await;
    h.create_org("acme").await;
    let req = pb::MintRequest { org: "acme".into(), ttl_seconds: 60, ..Default::default() };
    let minted = h.client().mint(bearer(req, &h.bootstrap)).await.unwrap().into_inner();
    let mut child = Macaroon::from_text(&minted.token, &Limits::default()).unwrap();
    child.add_first_party("action in read");
    let tokens = [minted.token.clone(), child.to_text()];
    h.client().revoke(bearer(revoke(Target::Family(minted.family.clone())), &h.bootstrap)).await.unwrap();
    for t in &tokens {
        assert_eq!(h.verify(t).await.reason(), pb::Reason::Revoked);
    }
    // A revocation after it keeps the pruned one from being the newest entry.
    let later = h.mint("acme", &[]).await;
    h.client().revoke(bearer(revoke(Target::Family(later.family)), &h.bootstrap)).await.unwrap();

    clock.advance(Duration::from_secs(60 + 3600 + 1));
    assert_eq!(h.authority.prune().await.unwrap().revocations, 1, "the family's entry is gone");
    let family = tally_token::FamilyId::from_hex(&minted.family).unwrap();
    assert!(!h.authority.is_revoked(&[tally_token::RevocationId::Family(family)]));
    for t in &tokens {
        let v = h.verify(t).await;
        assert_eq!(v.reason(), pb::Reason::Expired, "{v:?}");
        assert!(v.chain.is_empty());
    }
}

/// A holder can revoke attenuations of its token one by one (each a branch
/// kept in every verifier's memory until the family expires), but only up to
/// the bound per family; the token as minted is revoked as its family, which
/// the bound does not stop.
#[tokio::test]
async fn branch_revocations_are_bounded_per_family() {
    let h = Harness::start_with(Settings { max_branch_revocations: 3, ..fast_settings() }).await;
    let mut c = h.client();
    h.create_org("acme").await;
    let minted = h.mint("acme", &[]).await;
    let parent = Macaroon::from_text(&minted.token, &Limits::default()).unwrap();
    let attenuation = |i: usize| {
        let mut t = parent.clone();
        t.add_first_party(format!("resource = r/{i}"));
        t.to_text()
    };
    let by_holder = |text: String| Request::new(revoke(Target::Token(text)));
    for i in 0..3 {
        c.revoke(by_holder(attenuation(i))).await.unwrap();
    }
    let refused = c.revoke(by_holder(attenuation(3))).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("revoke the whole family"), "{refused:?}");
    assert!(h.verify(&attenuation(3)).await.valid, "the refused one was not revoked");
    let head = h.authority.head().seq;

    // Another family has its own bound.
    let other = h.mint("acme", &[]).await.token;
    let mut t = Macaroon::from_text(&other, &Limits::default()).unwrap();
    t.add_first_party("resource = x");
    c.revoke(by_holder(t.to_text())).await.unwrap();

    // The token as minted: its family.
    c.revoke(by_holder(minted.token.clone())).await.unwrap();
    assert_eq!(h.authority.head().seq, head + 2);
    let family = tally_token::FamilyId::from_hex(&minted.family).unwrap();
    assert!(h.authority.is_revoked(&[tally_token::RevocationId::Family(family)]));
    assert_eq!(h.verify(&attenuation(9)).await.reason(), pb::Reason::Revoked);

    // The bound is the log's: a restart counts the branches already kept.
    let (dir, db, bootstrap) = h.stop().await;
    let settings = Settings { max_branch_revocations: 3, ..fast_settings() };
    let h = Harness::serve(dir, db, bootstrap, settings, Arc::new(tally_authority::SystemClock)).await;
    let mut c = h.client();
    let third = h.mint("acme", &[]).await.token;
    for i in 0..3 {
        let mut t = Macaroon::from_text(&third, &Limits::default()).unwrap();
        t.add_first_party(format!("resource = r/{i}"));
        c.revoke(by_holder(t.to_text())).await.unwrap();
    }
    // The family of `other` has one already: two more fit, the third does not.
    for i in 0..3 {
        let mut t = Macaroon::from_text(&other, &Limits::default()).unwrap();
        t.add_first_party(format!("resource = y/{i}"));
        let r = c.revoke(by_holder(t.to_text())).await;
        assert_eq!(r.is_ok(), i < 2, "{i}: {r:?}");
    }
}

/// Holders' revocations (no API credential) are rate-limited per client
/// address; an operator's are not.
#[tokio::test]
async fn holder_revocations_are_rate_limited_per_address() {
    let h = Harness::start_with(Settings { anonymous_revokes_per_second: 1, ..fast_settings() }).await;
    let mut c = h.client();
    h.create_org("acme").await;
    let mut refused = 0;
    // One a second, two in a burst: ten at once cannot all pass.
    for _ in 0..10 {
        let token = h.mint("acme", &[]).await.token;
        match c.revoke(Request::new(revoke(Target::Token(token)))).await {
            Ok(_) => {}
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("retry later"), "{s:?}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "ten holder revocations in a row, none refused");
    for _ in 0..10 {
        let token = h.mint("acme", &[]).await.token;
        c.revoke(bearer(revoke(Target::Token(token)), &h.bootstrap)).await.unwrap();
    }
}
