//! Finding 4 of the security review: a token holder must not grow every deny
//! list. With no credentials, one holder once revoked 1,500 distinct
//! attenuations of its token in half a second: each a log entry kept by the
//! authority and in every verifier's memory until the token expires (up to a
//! year). Now a holder's revocations are rate-limited per client address,
//! and the branch revocations of one family are bounded (past the bound:
//! RESOURCE_EXHAUSTED, revoke the family instead), so neither the log nor a
//! verifier's deny list grows with the attacker's effort.

use std::time::Duration;

use tally_proto::v1::RevokeRequest;
use tally_proto::v1::revoke_request::Target;
use tally_tests::{Authority, AuthorityOptions, Verifier, VerifierOptions, metric};
use tally_token::{Limits, Macaroon};
use tonic::{Code, Request};

/// Revocations the attacker tries.
const ATTEMPTS: usize = 1500;
/// The default bound on branch revocations per family.
const BRANCH_BOUND: u64 = 64;

/// Revokes `ATTEMPTS` distinct attenuations of `token` as its holder (no
/// credentials); the seqs of those accepted and the codes of the others.
async fn revoke_attenuations(a: &Authority, token: &str) -> (Vec<u64>, Vec<Code>) {
    let parent = Macaroon::from_text(token, &Limits::default()).unwrap();
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for i in 0..ATTEMPTS {
        let mut t = parent.clone();
        t.add_first_party(format!("resource = junk/{i}"));
        let req = RevokeRequest { target: Some(Target::Token(t.to_text())), reason: String::new() };
        match a.client().revoke(Request::new(req)).await {
            Ok(r) => accepted.push(r.into_inner().seq),
            Err(s) => refused.push(s.code()),
        }
    }
    (accepted, refused)
}

async fn deployment(extra: &[&str]) -> (Authority, Verifier) {
    let options = AuthorityOptions { serve_args: extra.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    let a = Authority::start_with(options).await;
    a.create_org("acme").await;
    let token = a.system_token("verifier", &[]).await;
    let options = VerifierOptions {
        fail_closed_after: Duration::from_secs(10),
        args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
        ..VerifierOptions::default()
    };
    let v = Verifier::start(&a.url(), &token, options).await;
    v.wait_synced().await;
    (a, v)
}

async fn deny_list(v: &Verifier, head: u64) -> f64 {
    v.wait_applied(head).await;
    let text = tally_tests::scrape(v.metrics_addr().await.unwrap()).await.unwrap();
    metric(&text, "tally_verifier_revoked_ids").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cannot_flood_the_log_from_one_address() {
    let (a, v) = deployment(&[]).await;
    let token = a.mint("acme", &[]).await.token;
    let (accepted, refused) = revoke_attenuations(&a, &token).await;
    // Ten a second, twenty at once: however fast the machine, not 1,500.
    assert!(accepted.len() < 200, "{} of {ATTEMPTS} holder revocations accepted", accepted.len());
    assert!(refused.iter().all(|c| *c == Code::ResourceExhausted), "{refused:?}");
    let head = accepted.iter().copied().max().unwrap_or(0);
    assert!(deny_list(&v, head).await <= accepted.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_revocations_of_one_family_are_bounded() {
    // No rate limit to speak of: the bound per family alone.
    let (a, v) = deployment(&["--anonymous-revokes-per-second", "1000000"]).await;
    let token = a.mint("acme", &[]).await.token;
    let (accepted, refused) = revoke_attenuations(&a, &token).await;
    assert_eq!(accepted.len() as u64, BRANCH_BOUND, "branch revocations kept for one family");
    assert!(refused.iter().all(|c| *c == Code::ResourceExhausted), "{refused:?}");
    assert_eq!(deny_list(&v, *accepted.last().unwrap()).await, BRANCH_BOUND as f64);

    // The family itself can still be revoked: by the holder of the token as minted.
    let req = RevokeRequest { target: Some(Target::Token(token.clone())), reason: String::new() };
    let seq = a.client().revoke(Request::new(req)).await.expect("the minted token revokes its family").into_inner().seq;
    v.wait_applied(seq).await;
    let r = v.check(&token, "read").await;
    assert!(!r.allowed, "{r:?}");
}
