//! Finding 1 of the security review: a compromised verifier must never
//! forge (it may hold only signatures its presenters could compute from the
//! minted token). The attacker here holds a genuine verifier token and
//! calls the real authority's Verify as a verifier does, on its own token, on
//! a user token presented to it and on a holder's attenuation of that token.
//! With every signature Verify hands back, at every position of the presented
//! chain it could belong to, it builds tokens that continue the chain from
//! there. None may be accepted unless it is an attenuation of the minted
//! token: not an unscoped operator made from its own credential (which once
//! listed orgs and minted a 366-day operator token), not a user token with
//! its minted caveats stripped (which once was allowed to delete
//! `db/everything` at a real verifier). A compromised verifier may widen an
//! attenuated token it has seen back to its minted form, no further; and the
//! real verifier still answers attenuations of a cached token locally.

use std::time::Duration;

use tally_proto::v1::{CheckRequest, ListOrgsRequest, MintRequest, Reason, Source, VerifyRequest};
use tally_tests::{Cluster, bearer};
use tally_token::{Caveat, Limits, Macaroon, Signature, continue_chain};

/// What the attacker learned from one Verify answer: the presented token and
/// the signatures that came back.
struct Learned {
    token: Macaroon,
    signatures: Vec<Signature>,
}

/// Calls Verify as the (compromised) verifier and keeps every signature.
async fn learn(c: &Cluster, bundle: &str) -> Learned {
    let req = bearer(VerifyRequest { bundle: bundle.into() }, &c.verifier_token);
    let resp = c.authority.client().verify(req).await.expect("Verify").into_inner();
    assert!(resp.valid, "the presented token is genuine: {resp:?}");
    let signatures = resp.chain.iter().map(|s| Signature::from_bytes(s.as_slice().try_into().unwrap())).collect();
    Learned { token: Macaroon::from_text(bundle, &Limits::default()).unwrap(), signatures }
}

/// Every token the attacker can build from `learned` by taking one of its
/// signatures as the chain value after the first `k` caveats of the presented
/// token, for every k, and appending `extra`: (k, text).
fn candidates(learned: &Learned, extra: &[Caveat]) -> Vec<(usize, String)> {
    let caveats = learned.token.caveats();
    let mut out = Vec::new();
    for sig in &learned.signatures {
        for k in 0..=caveats.len() {
            let mut all = caveats[..k].to_vec();
            all.extend_from_slice(extra);
            let forged =
                Macaroon::from_parts(None, learned.token.identifier().to_vec(), all, continue_chain(sig, extra));
            out.push((k, forged.to_text()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_cannot_make_itself_an_operator() {
    let c = Cluster::start(Duration::from_secs(10)).await;
    let own = learn(&c, &c.verifier_token).await;
    for (k, forged) in candidates(&own, &[Caveat::first_party("role = operator")]) {
        let listed = c.authority.client().list_orgs(bearer(ListOrgsRequest {}, &forged)).await;
        assert!(listed.is_err(), "a forged operator (k = {k}) listed orgs");
        let minted = c
            .authority
            .client()
            .mint(bearer(
                MintRequest {
                    org: "system".into(),
                    caveats: vec!["role = operator".into()],
                    ttl_seconds: 366 * 24 * 3600,
                    ..Default::default()
                },
                &forged,
            ))
            .await;
        assert!(minted.is_err(), "a forged operator (k = {k}) minted an operator token");
    }
    // Tally's own API tokens are never cached, so no signature of theirs is due.
    assert!(own.signatures.is_empty(), "Verify handed out {} signatures of an API token", own.signatures.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_cannot_strip_minted_caveats() {
    let c = Cluster::start(Duration::from_secs(10)).await;
    c.authority.create_org("acme").await;
    let minted = c
        .authority
        .client()
        .mint(bearer(
            MintRequest {
                org: "acme".into(),
                caveats: vec!["action in read".into(), "resource = apps/web/*".into()],
                ttl_seconds: 60,
                ..Default::default()
            },
            c.authority.bootstrap(),
        ))
        .await
        .expect("Mint")
        .into_inner()
        .token;
    let minted_caveats = Macaroon::from_text(&minted, &Limits::default()).unwrap().caveats().len();
    // A holder attenuates it and presents the attenuation: the verifier sees both.
    let mut attenuated = Macaroon::from_text(&minted, &Limits::default()).unwrap();
    attenuated.add_first_party("resource = apps/web/static/*");
    let attenuated = attenuated.to_text();
    let learned = [learn(&c, &minted).await, learn(&c, &attenuated).await];

    let widen = [Caveat::first_party("action in read,write,delete")];
    let mut accepted_widenings = 0;
    for l in &learned {
        assert!(!l.signatures.is_empty(), "Verify vouches for a user token's minted prefix");
        for (k, forged) in candidates(l, &widen) {
            let req = bearer(VerifyRequest { bundle: forged }, &c.verifier_token);
            let verdict = c.authority.client().verify(req).await.expect("Verify").into_inner();
            if k < minted_caveats {
                assert_ne!(verdict.reason(), Reason::Ok, "{k} of {minted_caveats} minted caveats kept: accepted");
            } else if verdict.reason() == Reason::Ok {
                // Genuine attenuations of the minted token: its caveats still hold.
                accepted_widenings += 1;
            }
        }
        // The same family with no caveats at all, as a real verifier sees it.
        for (k, forged) in candidates(l, &[]).into_iter().filter(|(k, _)| *k == 0) {
            let check = CheckRequest {
                bundle: forged,
                action: "delete".into(),
                resource: "db/everything".into(),
                ..Default::default()
            };
            let r = c.eu.client().check(check).await.unwrap().into_inner();
            assert!(!r.allowed, "the bare family (k = {k}) was allowed: {r:?}");
        }
    }
    assert!(accepted_widenings > 0, "continuing from the minted prefix stays possible (and harmless)");

    // Descendant coverage: once the minted token is cached, its attenuations
    // are answered by the verifier alone, without the authority.
    let read = |bundle: &str, resource: &str| CheckRequest {
        bundle: bundle.into(),
        action: "read".into(),
        resource: resource.into(),
        ..Default::default()
    };
    let first = c.us.client().check(read(&minted, "apps/web/index.html")).await.unwrap().into_inner();
    assert!(first.allowed, "{first:?}");
    let calls = c.authority_verify_count().await;
    let r = c.us.client().check(read(&attenuated, "apps/web/static/app.js")).await.unwrap().into_inner();
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.source(), Source::Descendant, "{r:?}");
    let denied = c.us.client().check(read(&attenuated, "apps/web/admin")).await.unwrap().into_inner();
    assert!(!denied.allowed, "the attenuation's own caveat holds: {denied:?}");
    assert_eq!(c.authority_verify_count().await, calls, "no Verify call for the descendant");
}
