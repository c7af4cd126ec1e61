//! The authority restored from an older copy of its database: an online,
//! consistent copy is taken while it runs (`VACUUM INTO`), more revocations
//! are acknowledged, the authority is killed, the copy put back (no WAL or
//! shared-memory file beside it) and served again. Same epoch, shorter log.
//!
//! Verifier "eu" reconnects at once and is ahead of the restored log;
//! verifier "us" is cut off until the restored authority's log has grown past
//! its position with different entries (a fork). Both must detect it, flush,
//! and follow the restored log: what the copy holds stays revoked, what the
//! restore lost verifies again (deploy/backup.md: re-issue those), and what
//! is revoked after the restore is denied.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_proto::v1::Reason;
use tally_tests::{
    Authority, AuthorityOptions, CheckLoad, History, Mode, Proxy, Tracked, Verifier, VerifierOptions, eventually,
};

const THRESHOLD: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(200);
const SLACK: Duration = Duration::from_millis(500);
const BOUND: Duration = THRESHOLD.saturating_add(HEARTBEAT).saturating_add(SLACK);
/// Revocations in the copy, after it (lost by the restore), and after the restore.
const KEPT: usize = 5;
const LOST: usize = 4;
/// More than `LOST`, so the restored log grows past "us"'s position.
const AFTER: usize = LOST + 2;
/// Time to resubscribe, reset and replay (backoff is at most 5 s).
const RECOVERY: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_older_copy_resets_verifiers() {
    let mut authority =
        Authority::start_with(AuthorityOptions { heartbeat: HEARTBEAT, ..AuthorityOptions::default() }).await;
    let us_link = Proxy::start(authority.addr()).await;
    let verifier_token = authority.system_token("verifier", &[]).await;
    let options = |region: &str| VerifierOptions {
        region: region.into(),
        fail_closed_after: THRESHOLD,
        ..VerifierOptions::default()
    };
    let eu = Verifier::start(&authority.url(), &verifier_token, options("eu")).await;
    let us = Verifier::start(&us_link.url(), &verifier_token, options("us")).await;
    eu.wait_synced().await;
    us.wait_synced().await;

    authority.create_org("acme").await;
    let mint = async |n: usize| {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(Tracked::from(authority.mint("acme", &[]).await));
        }
        out
    };
    let keep = mint(2).await;
    let kept = mint(KEPT).await;
    let lost = mint(LOST).await;
    let after = mint(AFTER).await;

    let history = History::new();
    let all: Vec<Tracked> = keep.iter().chain(&kept).chain(&lost).chain(&after).cloned().collect();
    let tokens = Arc::new(Mutex::new(all.clone()));
    let loads = [
        CheckLoad::start(history.clone(), eu.client(), "eu", tokens.clone()),
        CheckLoad::start(history.clone(), us.client(), "us", tokens.clone()),
    ];

    for t in &kept {
        history.revoke(authority.client(), authority.bootstrap(), &t.family).await.expect("Revoke");
    }
    // An online, consistent copy: what a backup taken now would hold.
    let backup = authority.dir().join("backup.db");
    authority.backup_to(&backup).await;
    let mut last = 0;
    for t in &lost {
        last = history.revoke(authority.client(), authority.bootstrap(), &t.family).await.expect("Revoke");
    }
    assert_eq!(last, (KEPT + LOST) as u64);
    let before = [eu.wait_applied(last).await, us.wait_applied(last).await];

    // "us" loses its link; the authority dies and comes back restored.
    us_link.set(Mode::Cut);
    authority.kill_9();
    authority.restore_from(&backup);
    authority.restart().await;

    // "eu" is ahead of the restored log: reset, flush, replay.
    let s = eventually(RECOVERY, || async {
        let s = eu.status().await;
        if s.resets > before[0].resets && s.synced && !s.fail_closed && s.applied_seq == KEPT as u64 {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(s.epoch, before[0].epoch, "a restore keeps the epoch");
    assert_eq!(s.resets, before[0].resets + 1, "{s:?}");
    let log = eu.stderr_lines();
    assert!(log.iter().any(|l| l.contains("subscriber is ahead of the log")), "eu's reason: {log:#?}");

    // The restored log grows past "us"'s position, with other entries.
    let mut head = 0;
    for t in &after {
        head = history.revoke(authority.client(), authority.bootstrap(), &t.family).await.expect("Revoke");
    }
    assert_eq!(head, (KEPT + AFTER) as u64);
    assert!(head > last, "the restored log must outgrow us's position");
    us_link.set(Mode::Pass);
    let s = eventually(RECOVERY, || async {
        let s = us.status().await;
        if s.resets > before[1].resets && s.synced && !s.fail_closed && s.applied_seq == head {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(s.resets, before[1].resets + 1, "{s:?}");
    let log = us.stderr_lines();
    assert!(log.iter().any(|l| l.contains("log forked at the subscriber's position")), "us's reason: {log:#?}");
    eu.wait_applied(head).await;

    // Both follow the restored log: the copy's revocations and the new ones
    // deny, the lost ones verify again (documented: re-issue them).
    for (v, region) in [(&eu, "eu"), (&us, "us")] {
        for t in kept.iter().chain(&after) {
            let c = history.check(v.client(), region, t).await;
            let a = c.answer.as_ref().expect("Check");
            assert!(!a.allowed && a.reason() == Reason::Revoked, "{c:?}");
        }
        for t in keep.iter().chain(&lost) {
            eventually(Duration::from_secs(5), || async {
                let c = history.check(v.client(), region, t).await;
                if c.allowed() { Ok(()) } else { Err(format!("{c:?}")) }
            })
            .await;
        }
    }

    let mut checks = 0;
    for load in loads {
        checks += load.stop().await;
    }
    eprintln!("restore: {checks} load checks; {}", history.summary());
    // Safe for every revocation the restored database holds; the lost ones
    // are the documented exception.
    let exempt: HashSet<String> = lost.iter().map(|t| t.family.clone()).collect();
    history.assert_safe(BOUND, &exempt);
}
