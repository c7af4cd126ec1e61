//! A slow link is not a live one. The proxy delays every byte between
//! verifier and authority by more than the fail-closed threshold: heartbeats
//! keep arriving, but each tells what the authority knew seconds ago. The
//! verifier must count such events as contact that long ago (each carries the
//! authority's send time), keep failing closed while the delay lasts, and
//! never allow a token past revoke-ack + bound; once the delay ends it
//! recovers by itself. Without the send time, arriving heartbeats would look
//! like contact, the cache would refill through the slow Verify calls, and a
//! revocation would reach it only a whole delay after its acknowledgement.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_proto::v1::{Reason, Source};
use tally_tests::{
    Authority, AuthorityOptions, CheckLoad, History, Mode, Proxy, Tracked, Verifier, VerifierOptions, eventually,
};

const THRESHOLD: Duration = Duration::from_millis(300);
const SKEW: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_millis(50);
/// Scheduling and polling slack on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(300);
/// Events are stale past the threshold once they are this late.
const BOUND: Duration = THRESHOLD.saturating_add(SKEW).saturating_add(HEARTBEAT).saturating_add(SLACK);
/// Each way: more than the bound, so a revocation delivered this late would
/// be a violation; under the HTTP/2 keep-alive timeout (2 s) for a round
/// trip, so the connections survive and the late events keep flowing.
const DELAY: Duration = Duration::from_millis(800);
/// Long enough for a subscription (handshake, request, answer: three
/// delays) and a Verify (two) through the slow link to succeed.
const AUTHORITY_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_slower_than_the_threshold_keeps_the_verifier_failing_closed() {
    let authority =
        Authority::start_with(AuthorityOptions { heartbeat: HEARTBEAT, ..AuthorityOptions::default() }).await;
    let proxy = Proxy::start(authority.addr()).await;
    let verifier_token = authority.system_token("verifier", &[]).await;
    let args = ["--clock-skew", "100ms", "--authority-timeout", "5s"].map(String::from).to_vec();
    let options = VerifierOptions { fail_closed_after: THRESHOLD, args, ..VerifierOptions::default() };
    let eu = Verifier::start(&proxy.url(), &verifier_token, options).await;
    eu.wait_synced().await;

    authority.create_org("acme").await;
    let keep = Tracked::from(authority.mint("acme", &[]).await);
    let doomed = Tracked::from(authority.mint("acme", &[]).await);
    let history = History::with_check_timeout(AUTHORITY_TIMEOUT + Duration::from_secs(2));
    for t in [&keep, &doomed] {
        history.until_cached(&eu.client(), "eu", t).await;
    }
    let tokens = Arc::new(Mutex::new(vec![keep.clone(), doomed.clone()]));
    // Several callers, so some check is always waiting on a slow Verify.
    let loads: Vec<CheckLoad> =
        (0..4).map(|_| CheckLoad::start(history.clone(), eu.client(), "eu", tokens.clone())).collect();

    proxy.set(Mode::Delay(DELAY));
    let slowed_at = history.now();
    // Past the threshold the verifier fails closed; the late heartbeats that
    // then arrive (on this connection and on the ones it redials) must not
    // bring it back.
    eventually(BOUND + Duration::from_secs(1), || async {
        let s = eu.status().await;
        if s.fail_closed { Ok(()) } else { Err(format!("not failing closed: {s:?}")) }
    })
    .await;
    // Long enough for the verifier to resubscribe through the slow link
    // (three delays), for late events to flow, and for Verify calls (two
    // delays each) to refill a cache that wrongly trusted them.
    tokio::time::sleep(8 * DELAY).await;
    let s = eu.status().await;
    assert!(s.fail_closed, "late heartbeats were taken for contact: {s:?}");
    assert!(s.applied_seq > 0 || s.synced, "the stream kept flowing, late: {s:?}");
    let seq = history.revoke(authority.client(), authority.bootstrap(), &doomed.family).await.expect("Revoke");
    // The revocation needs a whole delay to cross; keep checking past that.
    tokio::time::sleep(DELAY + BOUND).await;
    let s = eu.status().await;
    assert!(s.fail_closed, "{s:?}");
    let healed_at = history.now();

    // No check of a cached token was answered from the cache while slowed
    // down past the bound: only the authority (slowly) or a refusal.
    let during: Vec<_> =
        history.checks().into_iter().filter(|c| c.started > slowed_at + BOUND && c.ended < healed_at).collect();
    assert!(!during.is_empty(), "the load made no check while the link was slow");
    for c in &during {
        if let Ok(a) = &c.answer {
            assert_ne!(a.source(), Source::Cache, "answered from the cache over a slow link: {c:?}");
            assert_ne!(a.source(), Source::Descendant, "answered from the cache over a slow link: {c:?}");
        }
    }

    // The delay ends: the verifier recovers by itself, with the revocation applied.
    proxy.set(Mode::Pass);
    eventually(Duration::from_secs(20), || async {
        let s = eu.status().await;
        if s.synced && !s.fail_closed && s.applied_seq >= seq { Ok(()) } else { Err(format!("not recovered: {s:?}")) }
    })
    .await;
    history.until_cached(&eu.client(), "eu", &keep).await;
    let r = history.check(eu.client(), "eu", &doomed).await;
    let a = r.answer.as_ref().expect("Check");
    assert!(!a.allowed && a.reason() == Reason::Revoked, "{r:?}");

    let mut checks = 0;
    for load in loads {
        checks += load.stop().await;
    }
    eprintln!("slow link: {checks} load checks; {}", history.summary());
    history.assert_safe(BOUND, &HashSet::new());
}
