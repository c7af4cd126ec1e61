//! Durability on PostgreSQL, with the real binary on a throwaway cluster of
//! its own (so the test may restart the server): five kill -9s of the
//! authority, each during a revocation burst from 64 callers, lose no
//! acknowledged revocation and leave the log contiguous from 1; and a
//! PostgreSQL restart (`pg_ctl restart -m fast`) in the middle of a burst
//! fails each call it cuts off with `UNAVAILABLE` (never `INTERNAL`, never
//! a driver's text), keeps every acknowledged one, and the authority and
//! its replica (each taking half the burst) serve again without being
//! restarted, streaming one log.
//!
//! PostgreSQL only: they run in the PostgreSQL pass of `cargo xtask test`
//! (the SQLite pass skips `postgres_durability`).

use std::collections::HashMap;
use std::time::Duration;

use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_tests::{Authority, AuthorityOptions, DEADLINE, PgCluster, TestStore, bearer, eventually};
use tokio::sync::watch;
use tonic::Code;

use crate::authority_durability::{OnError, family_of, mint_many, replay_all, revoke_burst};

/// Concurrent callers of each burst.
const CALLERS: usize = 64;
/// Kills of the authority, each during its own burst.
const KILLS: usize = 5;
/// Families revoked in each kill's burst.
const PER_BURST: usize = 400;
/// The authority is killed once this many of a burst's revocations were acknowledged.
const KILL_AFTER_ACKS: usize = 150;

/// A throwaway cluster, when this run's store is PostgreSQL.
fn cluster() -> Option<PgCluster> {
    if !TestStore::is_postgres() {
        eprintln!("postgres_durability: this run's store is SQLite (cargo xtask test runs it on PostgreSQL)");
        return None;
    }
    Some(PgCluster::start().expect("starting a throwaway PostgreSQL cluster"))
}

async fn authority_on(cluster: &PgCluster) -> Authority {
    let options = AuthorityOptions { store: Some(TestStore::Postgres(cluster.url())), ..Default::default() };
    let a = Authority::start_with(options).await;
    a.create_org("acme").await;
    a
}

/// Checks the log as a new subscriber replays it: seqs exactly 1..=head,
/// each acknowledged revocation at the seq it was acknowledged with, each
/// family once. Returns the head.
async fn assert_log_holds(a: &Authority, acked: &HashMap<String, u64>) -> u64 {
    let (events, head, _) = replay_all(a).await;
    let seqs: Vec<u64> = events.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "seqs are exactly 1..=head");
    let at: HashMap<u64, String> = events.iter().map(|r| (r.seq, family_of(r))).collect();
    for (family, seq) in acked {
        assert_eq!(at.get(seq), Some(family), "acknowledged revocation of {family} at seq {seq} is not in the log");
    }
    let families: std::collections::HashSet<&String> = at.values().collect();
    assert_eq!(families.len(), events.len(), "a family logged twice");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_five_kill_9s_during_64_caller_bursts_lose_no_acknowledged_revocation() {
    let Some(pg) = cluster() else { return };
    let mut a = authority_on(&pg).await;
    let minted = mint_many(&a, "acme", KILLS * PER_BURST).await;
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut cut_off = 0;
    for (round, chunk) in minted.chunks(PER_BURST).enumerate() {
        let (acks_tx, mut acks) = watch::channel(0);
        let families = chunk.iter().map(|m| m.family.clone()).collect();
        let (callers, burst) = revoke_burst(&a, families, acks_tx, CALLERS, OnError::Stop);
        tokio::time::timeout(Duration::from_secs(60), acks.wait_for(|n| *n >= KILL_AFTER_ACKS))
            .await
            .expect("acknowledgements in time")
            .expect("callers alive");
        assert!(!a.kill_9().success(), "round {round}: killed, not exited");
        tokio::time::timeout(DEADLINE, callers.join_all()).await.expect("every caller notices the kill");
        let burst = std::mem::take(&mut *burst.lock().unwrap());
        assert!(burst.acked.len() < PER_BURST, "round {round}: the kill came before the burst finished");
        cut_off += burst.failed;
        for (family, seq) in burst.acked {
            assert!(acked.insert(family, seq).is_none(), "a family acknowledged twice");
        }
        a.restart().await;
        let head = assert_log_holds(&a, &acked).await;
        assert!(head >= acked.len() as u64, "round {round}: head {head} < {} acknowledged", acked.len());
    }
    let mut seqs: Vec<u64> = acked.values().copied().collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), acked.len(), "two acknowledgements with one seq");
    assert!(cut_off > 0, "some calls were cut off by the kills");
    println!("{KILLS} kills: {} revocations acknowledged, {cut_off} calls cut off, none lost", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarting_mid_burst_fails_calls_clearly_and_every_replica_serves_again() {
    let Some(pg) = cluster() else { return };
    let a = authority_on(&pg).await;
    // A replica takes half the burst.
    let b = a.start_replica().await;
    let minted = mint_many(&a, "acme", 1500).await;
    let by_family: HashMap<String, String> = minted.iter().map(|m| (m.family.clone(), m.token.clone())).collect();
    let (acks_tx, mut acks) = watch::channel(0);
    let (b_acks_tx, _b_acks) = watch::channel(0);
    let families: Vec<String> = minted[..1400].iter().map(|m| m.family.clone()).collect();
    let (to_a, to_b) = families.split_at(700);
    let (callers, burst) = revoke_burst(&a, to_a.to_vec(), acks_tx, CALLERS / 2, OnError::Continue);
    let (b_callers, b_burst) = revoke_burst(&b, to_b.to_vec(), b_acks_tx, CALLERS / 2, OnError::Continue);
    tokio::time::timeout(Duration::from_secs(60), acks.wait_for(|n| *n >= 100))
        .await
        .expect("acknowledgements in time")
        .expect("callers alive");
    pg.restart_fast().expect("pg_ctl restart -m fast");
    tokio::time::timeout(Duration::from_secs(120), callers.join_all()).await.expect("the burst ends");
    tokio::time::timeout(Duration::from_secs(120), b_callers.join_all()).await.expect("the replica's burst ends");
    let mut burst = std::mem::take(&mut *burst.lock().unwrap());
    let b_burst = std::mem::take(&mut *b_burst.lock().unwrap());
    burst.failed += b_burst.failed;
    burst.errors.extend(b_burst.errors);
    burst.acked.extend(b_burst.acked);

    // Each call cut off failed clearly: UNAVAILABLE, a message of Tally's.
    assert!(burst.failed > 0, "the restart cut some calls off");
    for (family, code, message) in &burst.errors {
        assert_eq!(*code, Code::Unavailable, "{family}: {code:?} {message}");
        assert!(!message.contains("postgres") && !message.contains("SQLSTATE"), "driver detail leaked: {message}");
    }
    // The authority serves again without a restart: a new revocation commits.
    let spare = minted[1400].family.clone();
    let mut client = a.client();
    let token = a.bootstrap().to_owned();
    let seq = eventually(Duration::from_secs(30), || {
        let req = pb::RevokeRequest { target: Some(Target::Family(spare.clone())), reason: String::new() };
        let (mut c, req) = (client.clone(), bearer(req, &token));
        async move { c.revoke(req).await.map(|r| r.into_inner().seq) }
    })
    .await;
    // Every acknowledged revocation is in the log at its seq, and in force.
    let mut acked: HashMap<String, u64> = burst.acked.into_iter().collect();
    acked.insert(spare.clone(), seq);
    // So does the replica, and it streams the same log.
    let spare_b = minted[1401].family.clone();
    let b_token = b.bootstrap().to_owned();
    let b_client = b.client();
    let seq_b = eventually(Duration::from_secs(30), || {
        let req = pb::RevokeRequest { target: Some(Target::Family(spare_b.clone())), reason: String::new() };
        let (mut c, req) = (b_client.clone(), bearer(req, &b_token));
        async move { c.revoke(req).await.map(|r| r.into_inner().seq) }
    })
    .await;
    acked.insert(spare_b, seq_b);
    let head = assert_log_holds(&a, &acked).await;
    assert_eq!(head, seq.max(seq_b), "the new revocations are the head");
    assert_eq!(assert_log_holds(&b, &acked).await, head, "one log, from either replica");
    for family in acked.keys() {
        let req = bearer(pb::VerifyRequest { bundle: by_family[family].clone() }, &token);
        let v = client.verify(req).await.expect("Verify").into_inner();
        assert_eq!(v.reason(), pb::Reason::Revoked, "{family}: {v:?}");
    }
    let log = a.stderr_lines().join("\n");
    assert!(!log.contains("panicked"), "{log}");
    println!(
        "restart mid-burst: {} acknowledged, {} failed with UNAVAILABLE, head {head}",
        acked.len() - 2,
        burst.failed
    );
}
