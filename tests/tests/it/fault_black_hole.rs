//! A silent link between verifier and authority: the proxy keeps the
//! connection open but delivers nothing (no FIN, no RST), either dropping
//! every byte (black hole) or holding it (a partition that heals). The
//! verifier must notice by missing heartbeats alone, fail closed within its
//! threshold plus a heartbeat (cache hits denied), never allow a family
//! revoked meanwhile past the bound, and recover by itself, without a
//! restart, once the link works again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_proto::v1::Reason;
use tally_tests::{
    Authority, AuthorityOptions, CheckLoad, History, Mode, Proxy, Tracked, Verifier, VerifierOptions, eventually,
};

const THRESHOLD: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(200);
/// Scheduling and polling slack on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(500);
const BOUND: Duration = THRESHOLD.saturating_add(HEARTBEAT).saturating_add(SLACK);
/// How long the link stays black-holed: past the bound by two authority
/// timeouts (a check sent to the authority through the black hole takes one).
const OUTAGE: Duration = BOUND.saturating_add(Duration::from_secs(4));
/// Time to resubscribe and catch up after the link comes back (the backoff
/// is at most 5 s, jittered, after a few failed attempts).
const RECOVERY: Duration = Duration::from_secs(15);

/// How the link comes back.
#[derive(Debug, Clone, Copy)]
enum Heal {
    /// The proxy passes again; connections black-holed before stay dead.
    Pass,
    /// The proxy passes again and the dead connections end (FIN), as when a
    /// NAT entry expires or TCP gives up on them.
    PassAndCloseDead,
}

/// Black hole, then the dead connection ends when the link comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_fails_closed_by_silence_and_recovers() {
    silent_link(Mode::BlackHole, Heal::PassAndCloseDead).await;
}

/// Black hole, then only new connections pass (the dead one is never closed):
/// the verifier must give up on its dead connection by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_recovers_when_the_link_comes_back() {
    silent_link(Mode::BlackHole, Heal::Pass).await;
}

/// A partition that heals: everything held is delivered late, on the same
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_link_fails_closed_by_silence_and_recovers() {
    silent_link(Mode::Stall, Heal::Pass).await;
}

async fn silent_link(fault: Mode, heal: Heal) {
    let authority =
        Authority::start_with(AuthorityOptions { heartbeat: HEARTBEAT, ..AuthorityOptions::default() }).await;
    let proxy = Proxy::start(authority.addr()).await;
    let verifier_token = authority.system_token("verifier", &[]).await;
    let options = VerifierOptions { region: "eu".into(), fail_closed_after: THRESHOLD, ..VerifierOptions::default() };
    let eu = Verifier::start(&proxy.url(), &verifier_token, options).await;
    eu.wait_synced().await;

    authority.create_org("acme").await;
    let mut keep = Vec::new();
    for _ in 0..4 {
        keep.push(Tracked::from(authority.mint("acme", &[]).await));
    }
    let doomed = Tracked::from(authority.mint("acme", &[]).await);
    let history = History::new();
    // Warm the cache: every token a cache hit before the fault.
    for t in keep.iter().chain([&doomed]) {
        history.until_cached(&eu.client(), "eu", t).await;
    }
    let tokens = Arc::new(Mutex::new(keep.iter().cloned().chain([doomed.clone()]).collect::<Vec<_>>()));
    let loads = [
        CheckLoad::start(history.clone(), eu.client(), "eu", tokens.clone()),
        CheckLoad::start(history.clone(), eu.client(), "eu", tokens.clone()),
    ];

    let log_before = eu.stderr_lines().len();
    proxy.set(fault);
    let holed = Instant::now();
    let holed_at = history.now();
    // Acknowledged by the authority; its event goes into the black hole.
    let seq = history.revoke(authority.client(), authority.bootstrap(), &doomed.family).await.expect("Revoke");

    // The watchdog notices the silence: fail closed within the threshold
    // plus the heartbeat interval (the last heartbeat came at most one
    // interval before the black hole).
    eventually(BOUND + Duration::from_secs(1), || async {
        let s = eu.status().await;
        if s.fail_closed { Ok(()) } else { Err(format!("not failing closed after {:?}: {s:?}", holed.elapsed())) }
    })
    .await;
    let noticed = holed.elapsed();
    // The last heartbeat came at most one interval before the fault (plus scheduling).
    assert!(noticed >= THRESHOLD - 2 * HEARTBEAT, "failed closed before the threshold: {noticed:?}");
    assert!(noticed <= BOUND, "failed closed too late: {noticed:?}");
    let s = eu.status().await;
    assert_eq!(s.cache_entries, 0, "the cache is dropped when failing closed: {s:?}");
    assert!(s.applied_seq < seq, "the revocation cannot have crossed the black hole: {s:?}");

    // Stay black-holed a while past the threshold.
    tokio::time::sleep(OUTAGE.saturating_sub(holed.elapsed())).await;
    let healed_at = history.now();
    let log_during: Vec<String> = eu.stderr_lines()[log_before..].to_vec();
    proxy.set(Mode::Pass);
    if let Heal::PassAndCloseDead = heal {
        proxy.close_all();
    }
    let healed = Instant::now();

    // Noticed by silence, not by a TCP error: the proxy sent no FIN or RST.
    assert!(
        log_during.iter().any(|l| l.contains("revocation stream silent")),
        "the read timeout should have fired: {log_during:#?}"
    );
    assert!(
        !log_during
            .iter()
            .any(|l| l.contains("revocation stream failed") || l.contains("stream ended by the authority")),
        "a black hole gives no TCP error: {log_during:#?}"
    );
    // Every check of a cached token that started once the bound had passed,
    // while the link was black-holed, was denied as authority-unavailable.
    let during: Vec<_> =
        history.checks().into_iter().filter(|c| c.started > holed_at + BOUND && c.ended < healed_at).collect();
    assert!(!during.is_empty(), "the load made no check during the outage");
    for c in &during {
        let a = c.answer.as_ref().expect("the verifier answers while failing closed");
        assert!(!a.allowed, "allowed while black-holed: {c:?}");
        assert_eq!(a.reason(), Reason::AuthorityUnavailable, "{c:?}");
    }

    // Recovery, without restarting the verifier: synced, the revocation
    // applied, the cache answering again.
    let s = eventually(RECOVERY, || async {
        let s = eu.status().await;
        if s.synced && !s.fail_closed && s.applied_seq >= seq {
            Ok(s)
        } else {
            Err(format!(
                "not recovered {:?} after the link came back ({} connections to the proxy): {s:?}",
                healed.elapsed(),
                proxy.accepted()
            ))
        }
    })
    .await;
    let recovered = healed.elapsed();
    assert_eq!(s.resets, 0, "resumed from its position, no reset: {s:?}");
    for t in &keep {
        history.until_cached(&eu.client(), "eu", t).await;
    }
    let r = history.check(eu.client(), "eu", &doomed).await;
    let a = r.answer.as_ref().expect("Check");
    assert!(!a.allowed && a.reason() == Reason::Revoked, "{r:?}");

    let mut checks = 0;
    for load in loads {
        checks += load.stop().await;
    }
    eprintln!(
        "{fault:?}, {heal:?}: failed closed after {noticed:?}, recovered {recovered:?} after the link came back; {checks} load checks; {}",
        history.summary()
    );
    history.assert_safe(BOUND, &HashSet::new());
}
