//! The authority killed with SIGKILL and restarted on the same database and
//! port, again and again, under continuous Check load on two verifiers and a
//! steady trickle of revocations. No acknowledged revocation is lost (each is
//! in the log with the seq it was acknowledged with), no check is allowed
//! past revoke-ack + bound, nothing panics, and the verifiers recover every
//! time by resuming from their position (no reset), without a restart.
//!
//! Three restarts by default; `TALLY_SOAK=1` makes it twenty.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::Row;
use tally_proto::v1::{self as pb, Reason};
use tally_tests::{
    Authority, AuthorityOptions, CheckLoad, History, Tracked, Verifier, VerifierOptions, bearer, eventually,
};

const THRESHOLD: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(200);
const SLACK: Duration = Duration::from_millis(500);
const BOUND: Duration = THRESHOLD.saturating_add(HEARTBEAT).saturating_add(SLACK);
/// Set to run the long form.
const SOAK_ENV: &str = "TALLY_SOAK";
const RESTARTS: usize = 3;
const SOAK_RESTARTS: usize = 20;
/// How long the authority serves between two kills.
const UP: Duration = Duration::from_millis(800);
/// Downtime of most kills, and of every third one: past the threshold, so
/// the verifiers fail closed and must come back from it.
const SHORT_DOWN: Duration = Duration::from_millis(100);
const LONG_DOWN: Duration = THRESHOLD.saturating_add(Duration::from_millis(500));
/// Tokens minted for revocation per kill (about what a quick cycle revokes;
/// the revoker stops early rather than run out).
const DOOMED_PER_CYCLE: usize = 60;
/// Concurrent Mint callers while setting up.
const MINTERS: usize = 8;
/// Pause between two revocations: longer than a heartbeat interval by
/// default; in the soak, shorter, so revocations arrive faster than the
/// authority's idle heartbeats (which a verifier needs to leave fail-closed).
const REVOKE_PACING: Duration = Duration::from_millis(300);
const SOAK_REVOKE_PACING: Duration = Duration::from_millis(25);
/// Time for a verifier to resubscribe and catch up after a restart.
const RECOVERY: Duration = Duration::from_secs(15);

/// Waits until `v` is synced, not failing closed, and has applied `seq`.
async fn wait_caught_up(v: &Verifier, seq: u64) {
    eventually(RECOVERY, || async {
        let s = v.status().await;
        if s.synced && !s.fail_closed && s.applied_seq >= seq { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
}

/// Mints `n` tokens of "acme" with concurrent callers.
async fn mint_many(a: &Authority, n: usize) -> Vec<Tracked> {
    let mut calls = tokio::task::JoinSet::new();
    for caller in 0..MINTERS {
        let (mut client, operator) = (a.client(), a.bootstrap().to_owned());
        let count = n / MINTERS + usize::from(caller < n % MINTERS);
        calls.spawn(async move {
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let req = pb::MintRequest { org: "acme".into(), ..Default::default() };
                out.push(Tracked::from(client.mint(bearer(req, &operator)).await.expect("Mint").into_inner()));
            }
            out
        });
    }
    calls.join_all().await.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_kill_9_and_restart_under_load() {
    let soak = std::env::var_os(SOAK_ENV).is_some();
    let (restarts, pacing) = if soak { (SOAK_RESTARTS, SOAK_REVOKE_PACING) } else { (RESTARTS, REVOKE_PACING) };
    let mut authority =
        Authority::start_with(AuthorityOptions { heartbeat: HEARTBEAT, ..AuthorityOptions::default() }).await;
    let verifier_token = authority.system_token("verifier", &[]).await;
    let options = |region: &str| VerifierOptions {
        region: region.into(),
        fail_closed_after: THRESHOLD,
        ..VerifierOptions::default()
    };
    let mut eu = Verifier::start(&authority.url(), &verifier_token, options("eu")).await;
    let mut us = Verifier::start(&authority.url(), &verifier_token, options("us")).await;
    eu.wait_synced().await;
    us.wait_synced().await;

    authority.create_org("acme").await;
    let mut keep = Vec::new();
    for _ in 0..3 {
        keep.push(Tracked::from(authority.mint("acme", &[]).await));
    }
    let doomed = mint_many(&authority, DOOMED_PER_CYCLE * (restarts + 1)).await;

    let history = History::new();
    let rotation: Vec<Tracked> = keep.iter().chain(&keep).chain(&keep).chain(&doomed).cloned().collect();
    let tokens = Arc::new(Mutex::new(rotation));
    let loads = [
        CheckLoad::start(history.clone(), eu.client(), "eu", tokens.clone()),
        CheckLoad::start(history.clone(), us.client(), "us", tokens.clone()),
    ];
    // Revocations all along, through a channel that reconnects by itself
    // after each restart; calls in flight at a kill are not acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let revoker = {
        let (history, stop) = (history.clone(), stop.clone());
        let (client, operator) = (authority.client(), authority.bootstrap().to_owned());
        let families: Vec<String> = doomed.iter().map(|t| t.family.clone()).collect();
        tokio::spawn(async move {
            for family in &families {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                history.revoke(client.clone(), &operator, family).await;
                tokio::time::sleep(pacing).await;
            }
        })
    };

    let started = Instant::now();
    for i in 0..restarts {
        tokio::time::sleep(UP).await;
        authority.kill_9();
        let down = if i % 3 == 1 { LONG_DOWN } else { SHORT_DOWN };
        tokio::time::sleep(down).await;
        authority.restart().await;
        let head = history.revokes().iter().map(|r| r.seq).max().unwrap_or(0);
        wait_caught_up(&eu, head).await;
        wait_caught_up(&us, head).await;
    }
    tokio::time::sleep(UP).await;
    stop.store(true, Ordering::Relaxed);
    revoker.await.unwrap();
    let elapsed = started.elapsed();

    // No acknowledged revocation lost: each is in the log, with its seq, and
    // the log is contiguous.
    let acked = history.revokes();
    let mut conn = authority.db_connect().await.unwrap();
    let rows =
        sqlx::query("SELECT seq, kind, target FROM revocations ORDER BY seq").fetch_all(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let log: BTreeMap<u64, String> = rows
        .iter()
        .map(|row| {
            assert_eq!(row.get::<String, _>(1), "family");
            (row.get::<i64, _>(0) as u64, hex::encode(row.get::<Vec<u8>, _>(2)))
        })
        .collect();
    let head = log.keys().next_back().copied().unwrap_or(0);
    assert_eq!(log.keys().copied().collect::<Vec<_>>(), (1..=head).collect::<Vec<_>>(), "a contiguous log");
    for r in &acked {
        assert_eq!(log.get(&r.seq), Some(&r.family), "acknowledged revocation {r:?} lost or moved");
    }
    assert!(head >= acked.len() as u64);

    // The verifiers recovered by themselves, resumed every time (no reset),
    // and apply the whole log: every acknowledged family is denied.
    for v in [&eu, &us] {
        wait_caught_up(v, head).await;
        let s = v.status().await;
        assert_eq!(s.applied_seq, head, "{s:?}");
        assert_eq!(s.resets, 0, "resumed from their position after each restart: {s:?}");
    }
    for r in &acked {
        let t = doomed.iter().find(|t| t.family == r.family).expect("a doomed token");
        for (v, region) in [(&eu, "eu"), (&us, "us")] {
            let c = history.check(v.client(), region, t).await;
            let a = c.answer.as_ref().expect("Check");
            assert!(!a.allowed && a.reason() == Reason::Revoked, "{c:?}");
        }
    }
    for t in &keep {
        for (v, region) in [(&eu, "eu"), (&us, "us")] {
            history.until_cached(&v.client(), region, t).await;
        }
    }
    let mut checks = 0;
    for load in loads {
        checks += load.stop().await;
    }

    // Nothing panicked; the verifiers never exited.
    for (name, lines) in [("authority", authority.log_lines()), ("eu", eu.stderr_lines()), ("us", us.stderr_lines())] {
        let panics: Vec<&String> = lines.iter().filter(|l| l.contains("panicked")).collect();
        assert!(panics.is_empty(), "{name} panicked: {panics:#?}");
    }
    assert!(eu.process().try_status().is_none() && us.process().try_status().is_none(), "a verifier exited");

    eprintln!(
        "{restarts} kill -9 restarts in {elapsed:?}: log head {head}, {} acked, {checks} load checks; {}",
        acked.len(),
        history.summary()
    );
    history.assert_safe(BOUND, &HashSet::new());
}
