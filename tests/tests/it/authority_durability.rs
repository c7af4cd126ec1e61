//! Durability with the real binary: a burst of concurrent Revoke calls, kill -9
//! in the middle, restart on the same port. Every revocation that returned OK
//! is there with its original seq, the log is contiguous, and a new subscriber
//! receives all of it. On both stores; `postgres_durability.rs` adds the
//! PostgreSQL server's own faults and reuses the helpers here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::subscribe_event::Event;
use tally_tests::{Authority, DEADLINE, bearer, eventually};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Tokens minted up front, each revoked by family in the burst.
const TOKENS: usize = 2000;
/// Concurrent callers minting and revoking.
const CALLERS: usize = 48;
/// The authority is killed once this many revocations were acknowledged.
const KILL_AFTER_ACKS: usize = 400;
/// Time for the whole stream replay after the restart.
const REPLAY_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub(crate) struct Minted {
    pub(crate) token: String,
    pub(crate) family: String,
}

/// Mints `n` tokens for `org` with `CALLERS` concurrent callers.
pub(crate) async fn mint_many(a: &Authority, org: &str, n: usize) -> Vec<Minted> {
    let mut calls = JoinSet::new();
    for caller in 0..CALLERS {
        let (mut client, token, org) = (a.client(), a.bootstrap().to_owned(), org.to_owned());
        let count = n / CALLERS + usize::from(caller < n % CALLERS);
        calls.spawn(async move {
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let req = pb::MintRequest { org: org.clone(), ..Default::default() };
                let r = client.mint(bearer(req, &token)).await.expect("Mint").into_inner();
                out.push(Minted { token: r.token, family: r.family });
            }
            out
        });
    }
    calls.join_all().await.into_iter().flatten().collect()
}

/// What the burst produced.
#[derive(Debug, Default)]
pub(crate) struct Burst {
    /// Acknowledged revocations: family → seq returned by Revoke.
    pub(crate) acked: BTreeMap<String, u64>,
    /// Families a Revoke was sent for (acknowledged or not).
    pub(crate) attempted: HashSet<String>,
    /// Calls that failed (in flight at the kill, or sent after it).
    pub(crate) failed: usize,
    /// The status of each failed call: (family, code, message).
    pub(crate) errors: Vec<(String, tonic::Code, String)>,
}

/// What a caller does after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Stops (the authority is gone).
    Stop,
    /// Goes on with the next family (the authority stays; its database failed).
    Continue,
}

/// Revokes every family with `callers` concurrent callers until the queue
/// is empty (or, with [`OnError::Stop`], until their calls fail); `acks`
/// counts acknowledgements as they come.
pub(crate) fn revoke_burst(
    a: &Authority,
    families: Vec<String>,
    acks: watch::Sender<usize>,
    callers: usize,
    on_error: OnError,
) -> (JoinSet<()>, Arc<Mutex<Burst>>) {
    let queue = Arc::new(Mutex::new(families));
    let burst = Arc::new(Mutex::new(Burst::default()));
    let mut tasks = JoinSet::new();
    for _ in 0..callers {
        let (mut client, token) = (a.client(), a.bootstrap().to_owned());
        let (queue, burst, acks) = (queue.clone(), burst.clone(), acks.clone());
        tasks.spawn(async move {
            loop {
                let Some(family) = queue.lock().unwrap().pop() else { return };
                burst.lock().unwrap().attempted.insert(family.clone());
                let req = pb::RevokeRequest { target: Some(Target::Family(family.clone())), reason: "burst".into() };
                match client.revoke(bearer(req, &token)).await {
                    Ok(r) => {
                        burst.lock().unwrap().acked.insert(family, r.into_inner().seq);
                        acks.send_modify(|n| *n += 1);
                    }
                    Err(status) => {
                        let mut b = burst.lock().unwrap();
                        b.failed += 1;
                        b.errors.push((family, status.code(), status.message().to_owned()));
                        if on_error == OnError::Stop {
                            return;
                        }
                    }
                }
            }
        });
    }
    (tasks, burst)
}

pub(crate) fn family_of(r: &pb::Revocation) -> String {
    match r.target.as_ref().and_then(|t| t.target.as_ref()) {
        Some(pb::revocation_target::Target::Family(f)) => hex::encode(f),
        other => panic!("seq {}: not a family revocation: {other:?}", r.seq),
    }
}

/// Subscribes from the beginning and reads until a heartbeat says the head
/// was reached; returns the revocations and the heartbeat's (head, epoch).
pub(crate) async fn replay_all(a: &Authority) -> (Vec<pb::Revocation>, u64, String) {
    let req = pb::SubscribeRequest { from_seq: 0, epoch: String::new(), from_digest: Vec::new() };
    let mut stream = a.client().subscribe(bearer(req, a.bootstrap())).await.expect("Subscribe").into_inner();
    let mut got: Vec<pb::Revocation> = Vec::new();
    let read = async {
        loop {
            match stream.message().await.expect("stream error").expect("stream ended").event.expect("empty event") {
                Event::Revocation(r) => got.push(r),
                Event::Heartbeat(hb) if hb.head_seq == got.last().map_or(0, |r| r.seq) => {
                    return (hb.head_seq, hb.epoch);
                }
                Event::Heartbeat(_) => {}
                Event::Reset(r) => panic!("unexpected reset {r:?}"),
            }
        }
    };
    let (head, epoch) = tokio::time::timeout(REPLAY_DEADLINE, read).await.expect("replay reached the head in time");
    (got, head, epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_revocations_survive_kill_9() {
    let mut a = Authority::start().await;
    a.create_org("acme").await;
    let t0 = Instant::now();
    let minted = mint_many(&a, "acme", TOKENS).await;
    let minted_in = t0.elapsed();
    assert_eq!(minted.len(), TOKENS);
    let by_family: HashMap<String, String> = minted.iter().map(|m| (m.family.clone(), m.token.clone())).collect();
    assert_eq!(by_family.len(), TOKENS, "families are unique");
    let epoch_before = a.verify(&minted[0].token).await.epoch;

    // The burst, and kill -9 once enough calls were acknowledged: others are in flight.
    let (acks_tx, mut acks) = watch::channel(0);
    let t1 = Instant::now();
    let families = minted.iter().map(|m| m.family.clone()).collect();
    let (callers, burst) = revoke_burst(&a, families, acks_tx, CALLERS, OnError::Stop);
    tokio::time::timeout(Duration::from_secs(60), acks.wait_for(|n| *n >= KILL_AFTER_ACKS))
        .await
        .expect("acknowledgements in time")
        .expect("callers alive");
    let status = a.kill_9();
    let killed_at = t1.elapsed();
    assert!(!status.success(), "killed, not exited: {status}");
    tokio::time::timeout(DEADLINE, callers.join_all()).await.expect("every caller notices the kill");
    let burst = std::mem::take(&mut *burst.lock().unwrap());
    let acked = burst.acked;
    assert!(acked.len() >= KILL_AFTER_ACKS);
    assert!(acked.len() < TOKENS, "the kill came before the burst finished");
    assert!(burst.failed > 0, "some calls were cut off by the kill");

    // Acknowledged seqs are distinct.
    let mut seqs: Vec<u64> = acked.values().copied().collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), acked.len(), "two acknowledgements with the same seq");

    let t2 = Instant::now();
    a.restart().await;
    // The first call after the restart may race the new server's accept loop.
    let mut client = a.client();
    let token = a.bootstrap().to_owned();
    let first = &minted[0].token;
    eventually(DEADLINE, || {
        let (mut c, req) = (client.clone(), bearer(pb::VerifyRequest { bundle: first.clone() }, &token));
        async move { c.verify(req).await }
    })
    .await;
    let restarted_in = t2.elapsed();

    // Every acknowledged revocation is in force after the restart.
    for family in acked.keys() {
        let req = bearer(pb::VerifyRequest { bundle: by_family[family].clone() }, &token);
        let v = client.verify(req).await.expect("Verify").into_inner();
        assert_eq!(v.reason(), pb::Reason::Revoked, "acknowledged revocation of {family} lost: {v:?}");
        assert_eq!(v.epoch, epoch_before, "same database, same epoch");
    }
    // Tokens never sent for revocation still verify.
    let untouched: Vec<&Minted> = minted.iter().filter(|m| !burst.attempted.contains(&m.family)).collect();
    for m in &untouched {
        let v = client.verify(bearer(pb::VerifyRequest { bundle: m.token.clone() }, &token)).await.unwrap();
        assert!(v.into_inner().valid, "{} was never revoked", m.family);
    }

    // A new subscriber gets the whole log, contiguous, with the acknowledged seqs.
    let (events, head, epoch) = replay_all(&a).await;
    assert_eq!(epoch, epoch_before);
    assert!(head >= acked.len() as u64, "head {head} < {} acknowledgements", acked.len());
    let got_seqs: Vec<u64> = events.iter().map(|r| r.seq).collect();
    assert_eq!(got_seqs, (1..=head).collect::<Vec<_>>(), "seqs are exactly 1..=head");
    let at: HashMap<u64, String> = events.iter().map(|r| (r.seq, family_of(r))).collect();
    for (family, seq) in &acked {
        assert_eq!(at.get(seq), Some(family), "seq {seq} was acknowledged for {family}");
    }
    // Nothing else: each logged family was sent, and logged once.
    let logged: HashSet<&String> = at.values().collect();
    assert_eq!(logged.len(), events.len(), "a family logged twice");
    assert!(logged.iter().all(|f| burst.attempted.contains(*f)), "a family in the log was never revoked");
    assert!(events.windows(2).all(|w| w[0].digest != w[1].digest), "digests chain");

    // And the revived authority keeps appending after the head.
    let next = &untouched.first().expect("some tokens were never revoked").family;
    let req = pb::RevokeRequest { target: Some(Target::Family(next.clone())), reason: String::new() };
    assert_eq!(client.revoke(bearer(req, &token)).await.unwrap().into_inner().seq, head + 1);

    // A graceful stop and a second restart on the same port keep it all too.
    let status = a.stop().await.expect("graceful stop");
    assert!(status.success(), "{status}");
    a.restart().await;
    let v = a.verify(&by_family[next]).await;
    assert_eq!(v.reason(), pb::Reason::Revoked, "{v:?}");
    assert_eq!(replay_all(&a).await.1, head + 1);

    println!(
        "minted {TOKENS} in {minted_in:?}; killed after {killed_at:?} with {} acknowledged, {} cut off, \
         {} committed (head); restart to first answer {restarted_in:?}",
        acked.len(),
        burst.failed,
        head
    );
}
