//! The revocation stream, one behaviour per test: replay, resume,
//! heartbeats, the three kinds of reset, catching up after falling behind the
//! fan-out, and a clean end on shutdown.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{FakeClock, Harness, bearer, fast_settings};
use tally_authority::{RevokeTarget, Settings};
use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::subscribe_event::Event;
use tonic::Streaming;

const DEADLINE: Duration = Duration::from_secs(5);

async fn subscribe(h: &Harness, from_seq: u64, epoch: &str, digest: &[u8]) -> Streaming<pb::SubscribeEvent> {
    let verifier = h.system_token("verifier", &[]).await;
    let req = pb::SubscribeRequest { from_seq, epoch: epoch.into(), from_digest: digest.to_vec() };
    h.client().subscribe(bearer(req, &verifier)).await.unwrap().into_inner()
}

async fn next(stream: &mut Streaming<pb::SubscribeEvent>) -> Event {
    tokio::time::timeout(DEADLINE, stream.message()).await.expect("event in time").unwrap().unwrap().event.unwrap()
}

/// Reads until a heartbeat reports `head` after all revocations up to it; returns the revocations.
async fn until_head(stream: &mut Streaming<pb::SubscribeEvent>, head: u64) -> Vec<pb::Revocation> {
    let mut got = Vec::new();
    loop {
        match next(stream).await {
            Event::Revocation(r) => got.push(r),
            Event::Heartbeat(hb) if hb.head_seq >= head && got.last().map_or(head == 0, |r| r.seq >= head) => {
                return got;
            }
            Event::Heartbeat(_) => {}
            Event::Reset(r) => panic!("unexpected reset {r:?}"),
        }
    }
}

async fn revoke_families(h: &Harness, n: usize) -> Vec<String> {
    let mut families = Vec::new();
    for _ in 0..n {
        let t = h.mint("acme", &[]).await;
        let req = pb::RevokeRequest { target: Some(Target::Family(t.family.clone())), reason: String::new() };
        h.client().revoke(bearer(req, &h.bootstrap)).await.unwrap();
        families.push(t.family);
    }
    families
}

fn family_of(r: &pb::Revocation) -> String {
    match r.target.as_ref().and_then(|t| t.target.as_ref()) {
        Some(pb::revocation_target::Target::Family(f)) => f.iter().map(|b| format!("{b:02x}")).collect(),
        other => panic!("not a family revocation: {other:?}"),
    }
}

#[tokio::test]
async fn replay_from_zero() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    let families = revoke_families(&h, 5).await;
    let mut s = subscribe(&h, 0, "", &[]).await;
    let got = until_head(&mut s, 5).await;
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(got.iter().map(family_of).collect::<Vec<_>>(), families);
    assert!(got.windows(2).all(|w| w[0].digest != w[1].digest && w[1].digest.len() == 16));
}

#[tokio::test]
async fn resume_from_k_then_live() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    revoke_families(&h, 5).await;
    let all = until_head(&mut subscribe(&h, 0, "", &[]).await, 5).await;
    let epoch = h.authority.epoch().to_owned();
    let mut s = subscribe(&h, 3, &epoch, &all[2].digest).await;
    let got = until_head(&mut s, 5).await;
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(got[1].digest, all[4].digest);
    // Live: the next revocation arrives on the open stream.
    let family = revoke_families(&h, 1).await.remove(0);
    let live = until_head(&mut s, 6).await;
    assert_eq!((live[0].seq, family_of(&live[0])), (6, family));
}

#[tokio::test]
async fn heartbeat_while_idle() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    revoke_families(&h, 2).await;
    let epoch = h.authority.epoch().to_owned();
    let digest = until_head(&mut subscribe(&h, 0, "", &[]).await, 2).await[1].digest.clone();
    let mut s = subscribe(&h, 2, &epoch, &digest).await;
    for _ in 0..3 {
        match next(&mut s).await {
            Event::Heartbeat(hb) => assert_eq!((hb.head_seq, hb.epoch.as_str()), (2, epoch.as_str())),
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
}

async fn expect_reset(s: &mut Streaming<pb::SubscribeEvent>, reason: &str) -> pb::Reset {
    match next(s).await {
        Event::Reset(r) => {
            assert!(r.reason.contains(reason), "{r:?}");
            r
        }
        other => panic!("expected a reset, got {other:?}"),
    }
}

#[tokio::test]
async fn reset_on_epoch_mismatch() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    revoke_families(&h, 3).await;
    let mut s = subscribe(&h, 2, "0123456789abcdef0123456789abcdef", &[0; 16]).await;
    let reset = expect_reset(&mut s, "epoch").await;
    assert_eq!((reset.epoch.as_str(), reset.head_seq, reset.replay_after), (h.authority.epoch(), 3, 0));
    // After the reset: the whole retained log, then live.
    assert_eq!(until_head(&mut s, 3).await.len(), 3);
}

#[tokio::test]
async fn reset_on_forked_log_or_position_ahead() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    revoke_families(&h, 3).await;
    let epoch = h.authority.epoch().to_owned();
    expect_reset(&mut subscribe(&h, 2, &epoch, &[9; 16]).await, "forked").await;
    expect_reset(&mut subscribe(&h, 7, &epoch, &[9; 16]).await, "ahead").await;
}

#[tokio::test]
async fn reset_on_seq_older_than_retained() {
    let clock = FakeClock::new();
    let h = Harness::start_with_clock(fast_settings(), Arc::new(clock.clone())).await;
    h.create_org("acme").await;
    // Three short-lived tokens revoked (seq 1-3), then a long-lived one (seq 4).
    for ttl in [60, 60, 60, 86_400] {
        let req = pb::MintRequest { org: "acme".into(), ttl_seconds: ttl, ..Default::default() };
        let token = h.client().mint(bearer(req, &h.bootstrap)).await.unwrap().into_inner().token;
        let req = pb::RevokeRequest { target: Some(Target::Token(token)), reason: String::new() };
        h.client().revoke(bearer(req, &h.bootstrap)).await.unwrap();
    }
    let all = until_head(&mut subscribe(&h, 0, "", &[]).await, 4).await;
    assert_eq!(h.authority.prune().await.unwrap().revocations, 0, "nothing expired yet");
    // Past the expiries and the grace kept beyond them for clock skew.
    clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(h.authority.prune().await.unwrap().revocations, 3);
    assert_eq!(h.authority.head().retained_from, 4);

    let epoch = h.authority.epoch().to_owned();
    let mut s = subscribe(&h, 1, &epoch, &all[0].digest).await;
    let reset = expect_reset(&mut s, "older than the retained log").await;
    assert_eq!((reset.replay_after, reset.head_seq), (3, 4));
    assert_eq!(until_head(&mut s, 4).await.iter().map(|r| r.seq).collect::<Vec<_>>(), [4]);
    // A subscriber right at the retention edge resumes without a reset.
    let mut s = subscribe(&h, 3, &epoch, &all[2].digest).await;
    assert_eq!(until_head(&mut s, 4).await.len(), 1);
}

#[tokio::test]
async fn a_prune_keeps_the_revocations_committed_with_it() {
    let clock = FakeClock::new();
    let h = Harness::start_with_clock(fast_settings(), Arc::new(clock.clone())).await;
    h.create_org("acme").await;
    // seq 1: a short-lived token's revocation, all expired once the clock moves.
    let req = pb::MintRequest { org: "acme".into(), ttl_seconds: 60, ..Default::default() };
    let token = h.client().mint(bearer(req, &h.bootstrap)).await.unwrap().into_inner().token;
    let req = pb::RevokeRequest { target: Some(Target::Token(token)), reason: String::new() };
    h.client().revoke(bearer(req, &h.bootstrap)).await.unwrap();
    let first = until_head(&mut subscribe(&h, 0, "", &[]).await, 1).await;
    clock.advance(Duration::from_secs(2 * 3600));
    let (b, c) = (h.mint("acme", &[]).await.family, h.mint("acme", &[]).await.family);

    // Two revocations and a prune queued together (the writer runs only once
    // this task waits), so they commit as one batch.
    let (commits, _) = h.authority.commits();
    let a = &h.authority;
    let (seq_b, seq_c, pruned) = tokio::join!(
        a.revoke(Some(&h.bootstrap), None, RevokeTarget::Family(b), "test"),
        a.revoke(Some(&h.bootstrap), None, RevokeTarget::Family(c), "test"),
        a.prune(),
    );
    assert_eq!(h.authority.commits().0 - commits, 1, "one batch");
    assert_eq!((seq_b.unwrap(), seq_c.unwrap(), pruned.unwrap().revocations), (2, 3, 1));
    // Seq 2 is kept, so it is retained: a subscriber that applied seq 1
    // resumes with 2 and 3, without a reset.
    assert_eq!(h.authority.head().retained_from, 2);
    let epoch = h.authority.epoch().to_owned();
    let mut s = subscribe(&h, 1, &epoch, &first[0].digest).await;
    assert_eq!(until_head(&mut s, 3).await.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_subscriber_catches_up_from_the_database() {
    let h = Harness::start_with(Settings { fanout_buffer: 4, ..fast_settings() }).await;
    h.create_org("acme").await;
    let mut tokens = Vec::new();
    for _ in 0..600 {
        tokens.push(h.mint("acme", &[]).await.family);
    }
    // Subscribed, but not reading while 600 revocations are committed.
    let mut s = subscribe(&h, 0, "", &[]).await;
    let mut calls = tokio::task::JoinSet::new();
    for family in tokens {
        let (mut c, b) = (h.client(), h.bootstrap.clone());
        calls.spawn(async move {
            let req = pb::RevokeRequest { target: Some(Target::Family(family)), reason: String::new() };
            c.revoke(bearer(req, &b)).await.unwrap().into_inner().seq
        });
    }
    let mut seqs: Vec<u64> = calls.join_all().await;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=600).collect::<Vec<_>>(), "acknowledged seqs are contiguous");
    let got = until_head(&mut s, 600).await;
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=600).collect::<Vec<_>>());
    assert!(h.authority.catch_ups() > 0, "the subscriber did fall behind the fan-out");
}

#[tokio::test]
async fn stream_ends_cleanly_on_shutdown() {
    let h = Harness::start().await;
    let mut s = subscribe(&h, 0, "", &[]).await;
    assert!(matches!(next(&mut s).await, Event::Heartbeat(_)));
    let authority = h.authority.clone();
    let stopped = tokio::spawn(h.stop());
    // The stream ends with a clean end-of-stream, not an error, and shutdown completes.
    let end = tokio::time::timeout(DEADLINE, async {
        loop {
            match s.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("stream ends in time");
    assert!(matches!(end, Ok(None)), "{end:?}");
    tokio::time::timeout(DEADLINE, stopped).await.expect("shutdown completes").unwrap();
    assert_eq!(authority.subscribers(), 0);
}
