//! Authority replicas: several `tally-authority serve` processes on one
//! PostgreSQL database (DESIGN §9), each with verifiers of its own.
//!
//! * Revocations acknowledged by any replica reach the verifiers of every
//!   replica, and the log is one: seqs contiguous in commit order, each
//!   acknowledged revocation at the seq it was acknowledged with, whichever
//!   replica a subscriber replays it from.
//! * Orgs and keys made, rotated and retired on any replica, concurrently:
//!   no two keys share an id, a token minted on one replica verifies at once
//!   on the others, and a retired key stops verifying on every one.
//! * A replica cut off from PostgreSQL (black hole) while its verifiers still
//!   reach it stops vouching for the log: a token revoked on another replica
//!   is never allowed by its verifier past revoke-ack + threshold + one
//!   heartbeat; when the path heals, it follows the log again by itself.
//!
//! PostgreSQL only: they run in the PostgreSQL pass of `cargo xtask test`
//! (the SQLite pass skips `replicas`, and a SQLite file serves one process).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_proto::v1 as pb;
use tally_tests::{
    Authority, AuthorityOptions, CheckLoad, History, Mode, Proxy, TestStore, Tracked, Verifier, VerifierOptions,
    bearer, eventually, raw,
};

use crate::authority_durability::{family_of, replay_all};

/// Whether this run's store can have replicas; says so when not.
fn postgres() -> bool {
    if !TestStore::is_postgres() {
        eprintln!("replicas: this run's store is SQLite (cargo xtask test runs it on PostgreSQL)");
    }
    TestStore::is_postgres()
}

async fn verifier_of(a: &Authority, region: &str, fail_closed_after: Duration) -> Verifier {
    let token = a.system_token("verifier", &[]).await;
    let options = VerifierOptions { region: region.into(), fail_closed_after, ..Default::default() };
    let v = Verifier::start(&a.url(), &token, options).await;
    v.wait_synced().await;
    v
}

fn revoke_family(family: &str) -> pb::RevokeRequest {
    pb::RevokeRequest { target: Some(pb::revoke_request::Target::Family(family.into())), reason: String::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_on_any_replica_reach_the_verifiers_of_every_replica_in_one_log() {
    if !postgres() {
        return;
    }
    let a = Authority::start().await;
    let replicas = [a.start_replica().await, a.start_replica().await];
    let all: Vec<&Authority> = std::iter::once(&a).chain(replicas.iter()).collect();
    // The org is made after the replicas started: they learn it from the database.
    a.create_org("acme").await;
    let mut verifiers = Vec::new();
    for (i, r) in all.iter().enumerate() {
        verifiers.push(verifier_of(r, &format!("r{i}"), Duration::from_secs(10)).await);
    }

    // Tokens minted on every replica; each cached at every verifier.
    let mut tokens = Vec::new();
    for r in &all {
        for _ in 0..3 {
            tokens.push(r.mint("acme", &[]).await);
        }
    }
    for v in &verifiers {
        for t in &tokens {
            assert!(v.check(&t.token, "read").await.allowed);
        }
    }

    // One revocation made on the first replica: how long until the
    // verifiers of all three have applied it (an upper bound, polled).
    let timed = a.mint("acme", &[]).await;
    let mut c = a.client();
    let seq = c.revoke(bearer(revoke_family(&timed.family), a.bootstrap())).await.expect("Revoke").into_inner().seq;
    let acked = std::time::Instant::now();
    for v in &verifiers {
        v.wait_applied(seq).await;
    }
    eprintln!("replicas: revocation on replica 0 applied by the verifiers of all 3 within {:?}", acked.elapsed());

    // Revocations spread over the replicas, concurrently.
    let mut calls = tokio::task::JoinSet::new();
    for (i, t) in tokens.iter().enumerate() {
        let mut c = all[i % all.len()].client();
        let (req, family) = (bearer(revoke_family(&t.family), a.bootstrap()), t.family.clone());
        calls.spawn(async move { (family, c.revoke(req).await.expect("Revoke").into_inner().seq) });
    }
    let acked: HashMap<String, u64> = calls.join_all().await.into_iter().collect();
    let head = *acked.values().max().unwrap();
    assert_eq!(head, tokens.len() as u64 + 1, "one seq per revocation, after the timed one, whichever replica took it");

    // Every verifier denies every one of them.
    for v in &verifiers {
        v.wait_applied(head).await;
        for t in &tokens {
            let r = v.check(&t.token, "read").await;
            assert_eq!(r.reason(), pb::Reason::Revoked, "{r:?}");
        }
    }
    // Each replica's own view: its id, its database (no password), the head it read.
    let mut ids = HashSet::new();
    for r in &all {
        let req = bearer(pb::AuthorityStatusRequest {}, a.bootstrap());
        let s = r.client().status(req).await.expect("Status").into_inner();
        assert!(ids.insert(s.replica.clone()), "two replicas named {}", s.replica);
        assert!(s.vouching && s.head_seq == head && s.database.starts_with("postgres://"), "{s:?}");
    }
    // One log, whichever replica replays it.
    for r in &all {
        let (events, replayed_head, _) = replay_all(r).await;
        assert_eq!(replayed_head, head);
        let at: HashMap<u64, String> = events.iter().map(|e| (e.seq, family_of(e))).collect();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=head).collect::<Vec<_>>());
        for (family, seq) in &acked {
            assert_eq!(at.get(seq), Some(family), "revocation of {family} acked at seq {seq}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_rotated_and_retired_on_any_replica_are_known_on_every_one() {
    if !postgres() {
        return;
    }
    let a = Authority::start().await;
    let b = a.start_replica().await;
    let c = a.start_replica().await;
    let all = [&a, &b, &c];

    // Orgs made and rotated concurrently on all three: key ids never repeat.
    let mut calls = tokio::task::JoinSet::new();
    for (i, r) in all.iter().enumerate() {
        for j in 0..4 {
            let (mut client, boot) = (r.client(), r.bootstrap().to_owned());
            let org = format!("org-{i}-{j}");
            calls.spawn(async move {
                let made = client.create_org(bearer(pb::CreateOrgRequest { org: org.clone() }, &boot)).await;
                let first = made.expect("CreateOrg").into_inner().key_id;
                let rotated = client.rotate_key(bearer(pb::RotateKeyRequest { org }, &boot)).await;
                [first, rotated.expect("RotateKey").into_inner().key_id]
            });
        }
    }
    let ids: Vec<u64> = calls.join_all().await.into_iter().flatten().collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "a key id given twice: {ids:?}");

    // Minted on one replica (for an org another made), verified at once on the others.
    for (i, r) in all.iter().enumerate() {
        let org = format!("org-{}-0", (i + 1) % 3);
        let minted = r.mint(&org, &[]).await;
        for other in all {
            let v = other.verify(&minted.token).await;
            assert!(v.valid, "minted on replica {i}, refused: {v:?}");
            assert_eq!(v.key_id, minted.key_id, "minted under the org's current key everywhere");
        }
    }

    // A key retired on one replica stops verifying on every one.
    let doomed = b.mint("org-0-1", &[]).await;
    let mut client = c.client();
    let rotated = client.rotate_key(bearer(pb::RotateKeyRequest { org: "org-0-1".into() }, c.bootstrap())).await;
    assert_ne!(rotated.unwrap().into_inner().key_id, doomed.key_id);
    let retire = pb::RetireKeyRequest { key_id: doomed.key_id };
    let seq = client.retire_key(bearer(retire, c.bootstrap())).await.expect("RetireKey").into_inner().seq;
    for r in all {
        eventually(Duration::from_secs(5), || async {
            let v = r.verify(&doomed.token).await;
            if v.reason() == pb::Reason::RetiredKey && v.as_of_seq >= seq { Ok(()) } else { Err(format!("{v:?}")) }
        })
        .await;
        // And minting there goes on under the org's newest key.
        let next = r.mint("org-0-1", &[]).await;
        assert_ne!(next.key_id, doomed.key_id);
        assert!(r.verify(&next.token).await.valid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_database_stops_vouching_and_follows_again_when_healed() {
    if !postgres() {
        return;
    }
    const FAIL_CLOSED_AFTER: Duration = Duration::from_secs(2);
    let a = Authority::start_with(AuthorityOptions::default()).await;
    a.create_org("acme").await;
    let proxy = Proxy::start(a.db().server_addr()).await;
    let b = a.start_replica_via(&a.db().arg_via(proxy.addr())).await;
    let near = verifier_of(&a, "near", FAIL_CLOSED_AFTER).await;
    let far = verifier_of(&b, "far", FAIL_CLOSED_AFTER).await;

    let keep = Tracked::from(a.mint("acme", &[]).await);
    let doomed = Tracked::from(a.mint("acme", &[]).await);
    let history = History::new();
    for (v, region) in [(&near, "near"), (&far, "far")] {
        for t in [&keep, &doomed] {
            history.until_cached(&v.client(), region, t).await;
        }
    }
    let tokens = Arc::new(Mutex::new(vec![keep.clone(), doomed.clone()]));
    let loads = [(&near, "near"), (&far, "far")]
        .map(|(v, region)| CheckLoad::start(history.clone(), v.client(), region, tokens.clone()));

    // B loses PostgreSQL silently; its verifier still reaches it.
    proxy.set(Mode::BlackHole);
    let acked = history.revoke(a.client(), a.bootstrap(), &doomed.family).await.expect("revoke acknowledged");
    // B stops vouching, so "far" fails closed: past it, nothing is allowed there.
    eventually(Duration::from_secs(10), || async {
        let s = far.status().await;
        if s.fail_closed { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    // B's readiness follows: NOT_SERVING while it cannot read its database.
    let b_health = raw::channel(b.addr()).await.expect("a channel to B");
    eventually(Duration::from_secs(5), || async {
        match raw::health(&b_health, "tally.v1.Authority").await {
            Ok(false) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let status = b.client().status(bearer(pb::AuthorityStatusRequest {}, b.bootstrap())).await.unwrap().into_inner();
    assert!(!status.vouching && status.head_read_age_ms > 0, "{status:?}");
    let mut b_client = b.client();
    // B cannot write: its calls fail, UNAVAILABLE once its database did not
    // answer in time, or DEADLINE_EXCEEDED when the call's deadline came first.
    let refused = b_client.revoke(bearer(revoke_family(&keep.family), b.bootstrap())).await;
    let refused = refused.expect_err("B cannot write");
    assert!(matches!(refused.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded), "{refused:?}");

    // Healed: B follows the log again by itself, and "far" with it.
    proxy.set(Mode::Pass);
    proxy.close_all();
    eventually(Duration::from_secs(30), || async {
        let s = far.status().await;
        if s.synced && !s.fail_closed && s.applied_seq >= acked { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    let r = far.check(&doomed.token, "read").await;
    assert_eq!(r.reason(), pb::Reason::Revoked, "{r:?}");
    assert!(far.check(&keep.token, "read").await.allowed);
    assert!(raw::health(&b_health, "tally.v1.Authority").await.unwrap(), "B is SERVING again");
    for load in loads {
        load.stop().await;
    }
    // The bound: revoke-ack + the verifier's threshold + one heartbeat (and
    // the follower's interval before B fell silent).
    let heartbeat = AuthorityOptions::default().heartbeat;
    history.assert_safe(FAIL_CLOSED_AFTER + heartbeat * 2, &HashSet::new());
    eprintln!("replicas: cut off: {}", history.summary());
}

/// A verifier given three replicas in order of preference: the first
/// killed (kill -9) during a revocation burst spread over all three, it
/// follows the second without failing closed (a cached token stays allowed
/// throughout), nothing acknowledged by any replica is lost, and it goes
/// back to the first once that returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_fails_over_between_replicas_without_failing_closed_and_goes_back() {
    if !postgres() {
        return;
    }
    let a = Authority::start().await;
    a.create_org("acme").await;
    let mut preferred = a.start_replica().await;
    let second = a.start_replica().await;
    let urls = format!("{},{},{}", preferred.url(), second.url(), a.url());
    let token = a.system_token("verifier", &[]).await;
    let args = vec!["--failback-after".to_owned(), "1s".to_owned()];
    let options =
        VerifierOptions { region: "eu".into(), fail_closed_after: Duration::from_secs(3), args, ..Default::default() };
    let v = Verifier::start(&urls, &token, options.clone()).await;
    v.wait_synced().await;
    assert_eq!(v.status().await.authority, preferred.url());
    // A verifier whose first authority is down from the start serves from the next.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let late = Verifier::start(&format!("{down},{}", second.url()), &token, options).await;
    let s = late.wait_synced().await;
    assert_eq!(s.authority, second.url(), "{s:?}");
    drop(late);

    let kept = Tracked::from(a.mint("acme", &[]).await);
    let history = History::new();
    history.until_cached(&v.client(), "eu", &kept).await;
    let load = CheckLoad::start(history.clone(), v.client(), "eu", Arc::new(Mutex::new(vec![kept.clone()])));
    let resets = v.status().await.resets;

    // A burst of revocations over the three replicas; the preferred one dies in it.
    let mut minted = HashMap::new();
    for _ in 0..90 {
        let m = a.mint("acme", &[]).await;
        minted.insert(m.family, m.token);
    }
    let families: Vec<String> = minted.keys().cloned().collect();
    let replicas = [preferred.client(), second.client(), a.client()];
    let mut calls = tokio::task::JoinSet::new();
    for (i, family) in families.iter().enumerate() {
        let mut c = replicas[i % 3].clone();
        let (req, family) = (bearer(revoke_family(family), a.bootstrap()), family.clone());
        calls.spawn(async move {
            tokio::time::sleep(Duration::from_millis(5 * i as u64)).await;
            c.revoke(req).await.ok().map(|r| (family, r.into_inner().seq))
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    preferred.kill_9();
    let acked: HashMap<String, u64> = calls.join_all().await.into_iter().flatten().collect();
    assert!(acked.len() >= 60, "the replicas alive acknowledged their share: {}", acked.len());

    // The verifier follows the second replica, and has every acknowledged revocation.
    let head = *acked.values().max().unwrap();
    eventually(Duration::from_secs(10), || async {
        let s = v.status().await;
        if s.authority == second.url() && s.synced && s.applied_seq >= head { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    let (events, _, _) = replay_all(&a).await;
    let at: HashMap<u64, String> = events.iter().map(|e| (e.seq, family_of(e))).collect();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=events.len() as u64).collect::<Vec<_>>());
    for (family, seq) in &acked {
        assert_eq!(at.get(seq), Some(family), "revocation of {family} acked at seq {seq}");
        let r = v.check(&minted[family], "read").await;
        assert_eq!(r.reason(), pb::Reason::Revoked, "{r:?}");
    }

    // The preferred replica returns (same port): the verifier goes back to it.
    preferred.restart().await;
    eventually(Duration::from_secs(15), || async {
        let s = v.status().await;
        if s.authority == preferred.url() && s.synced { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    load.stop().await;
    let checks = history.checks();
    let refused: Vec<_> = checks.iter().filter(|c| !c.allowed()).collect();
    assert!(
        refused.is_empty(),
        "the cached token was refused {} times of {}: {:?}",
        refused.len(),
        checks.len(),
        refused.first()
    );
    assert_eq!(v.status().await.resets, resets, "failing over needs no reset: one log");
    eprintln!("replicas: failover: {}, {} revocations acked", history.summary(), acked.len());
}

/// `epoch bump` runs only while no replica serves the database, and then
/// every verifier of every replica flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_bump_waits_for_every_replica_and_flushes_the_verifiers_of_each() {
    if !postgres() {
        return;
    }
    let mut a = Authority::start().await;
    a.create_org("acme").await;
    let mut b = a.start_replica().await;
    let token = a.mint("acme", &[]).await.token;
    let verifiers =
        [verifier_of(&a, "a", Duration::from_secs(10)).await, verifier_of(&b, "b", Duration::from_secs(10)).await];
    let mut before = Vec::new();
    for v in &verifiers {
        v.check(&token, "read").await;
        assert_eq!(v.check(&token, "read").await.source(), pb::Source::Cache);
        before.push(v.status().await);
    }
    let db = a.db().arg().to_owned();
    let bump = || async {
        let bin = tally_tests::binary_in(tally_tests::AUTHORITY.package, tally_tests::AUTHORITY.name);
        let mut child = tally_tests::Child::spawn(&bin, ["epoch", "bump", "--db", &db], &[]).unwrap();
        let status = child.wait(tally_tests::DEADLINE).await.expect("epoch bump exits");
        (status, child.stderr().snapshot())
    };
    a.stop().await.expect("graceful stop");
    let (status, err) = bump().await;
    assert!(!status.success(), "bumped while a replica serves");
    assert!(err.iter().any(|l| l.contains("in use by another tally-authority")), "{err:?}");
    b.stop().await.expect("graceful stop");
    let (status, err) = bump().await;
    assert!(status.success(), "{err:?}");
    a.restart().await;
    b.restart().await;
    for (v, before) in verifiers.iter().zip(&before) {
        eventually(Duration::from_secs(15), || async {
            let s = v.status().await;
            if s.resets > before.resets && s.synced && s.epoch != before.epoch { Ok(()) } else { Err(format!("{s:?}")) }
        })
        .await;
        let r = v.check(&token, "read").await;
        assert!(r.allowed, "{r:?}");
        assert_eq!(r.source(), pb::Source::Authority, "the cache was flushed");
    }
}
