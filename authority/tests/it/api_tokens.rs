//! API tokens (bearers) are remembered once verified, but everything that can
//! change is checked again on every call: scope, expiry, revocation, key.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::{FakeClock, Harness, assert_code, bearer, fast_settings};
use tally_authority::Clock;
use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_token::{Limits, Macaroon, TallyId, format_rfc3339};
use tonic::{Code, Request};

fn mint(org: &str) -> pb::MintRequest {
    pb::MintRequest { org: org.into(), ..Default::default() }
}

fn revoke(target: Target) -> pb::RevokeRequest {
    pb::RevokeRequest { target: Some(target), reason: "test".into() }
}

#[tokio::test]
async fn an_accepted_token_is_checked_again_on_every_call() {
    let clock = FakeClock::new();
    let h = Harness::start_with_clock(fast_settings(), Arc::new(clock.clone())).await;
    let mut c = h.client();
    h.create_org("acme").await;
    h.create_org("beta").await;

    // Scope: the same token, accepted for acme, refused for beta, accepted again.
    let scoped = h.system_token("operator", &["org = acme"]).await;
    c.mint(bearer(mint("acme"), &scoped)).await.unwrap();
    assert_code(c.mint(bearer(mint("beta"), &scoped)).await, Code::PermissionDenied);
    c.mint(bearer(mint("acme"), &scoped)).await.unwrap();

    // Expiry: accepted twice, refused once the clock has passed it.
    let now = clock.now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128;
    let expires = format!("expires < {}", format_rfc3339(now + 60_000_000_000));
    let short = h.system_token("operator", &[&expires]).await;
    c.mint(bearer(mint("acme"), &short)).await.unwrap();
    c.mint(bearer(mint("acme"), &short)).await.unwrap();
    clock.advance(Duration::from_secs(600));
    assert_code(c.mint(bearer(mint("acme"), &short)).await, Code::Unauthenticated);

    // Revocation: accepted, revoked by its holder, refused.
    let op = h.system_token("operator", &[]).await;
    c.mint(bearer(mint("acme"), &op)).await.unwrap();
    c.revoke(Request::new(revoke(Target::Token(op.clone())))).await.unwrap();
    assert_code(c.mint(bearer(mint("acme"), &op)).await, Code::Unauthenticated);

    // Key: accepted, its key retired (by itself), refused; the bootstrap token,
    // under the same key, too.
    let op = h.system_token("operator", &[]).await;
    c.mint(bearer(mint("acme"), &op)).await.unwrap();
    let key_id = TallyId::decode(Macaroon::from_text(&op, &Limits::default()).unwrap().identifier()).unwrap().key_id;
    c.revoke(bearer(revoke(Target::KeyId(key_id.0)), &op)).await.unwrap();
    assert_code(c.mint(bearer(mint("acme"), &op)).await, Code::Unauthenticated);
    assert_code(c.mint(bearer(mint("acme"), &h.bootstrap)).await, Code::Unauthenticated);
}

#[tokio::test]
async fn a_remembered_token_keeps_its_role_and_others_stay_refused() {
    let h = Harness::start().await;
    let mut c = h.client();
    h.create_org("acme").await;
    let t = h.mint("acme", &[]).await;
    // A verifier token, let in for Verify, stays refused for Mint.
    let verifier = h.system_token("verifier", &[]).await;
    for _ in 0..2 {
        c.verify(bearer(pb::VerifyRequest { bundle: t.token.clone() }, &verifier)).await.unwrap();
        assert_code(c.mint(bearer(mint("acme"), &verifier)).await, Code::PermissionDenied);
    }
    // A token of another org is refused every time.
    for _ in 0..2 {
        assert_code(c.mint(bearer(mint("acme"), &t.token)).await, Code::PermissionDenied);
    }
}
