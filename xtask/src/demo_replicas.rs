//! `cargo xtask demo --replicas N`: N authority replicas on one throwaway
//! PostgreSQL database, and two regional verifiers that each list every
//! replica in their own order of preference. One replica is killed during
//! the demo: its verifier follows another without failing closed, and a
//! revocation made on a third reaches both regions.

use std::time::{Duration, Instant};

use anyhow::ensure;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::{CheckRequest, MintRequest, Reason, RevokeRequest, Source};
use tally_tests::{Authority, AuthorityOptions, PgCluster, TestStore, Verifier, VerifierOptions, bearer};

use crate::demo::{FAIL_CLOSED_AFTER, check, step, time_propagation};

pub(crate) async fn demo(cluster: &PgCluster, n: usize) -> anyhow::Result<()> {
    println!("Tally demo: {n} authority replicas on one PostgreSQL database, two regional verifiers, on 127.0.0.1.");

    step(
        1,
        &format!("Starting {n} authorities on PostgreSQL (127.0.0.1:{}): init once, then serve ×{n}…", cluster.port()),
    );
    let options = AuthorityOptions {
        heartbeat: Duration::from_millis(200),
        rust_log: "warn".into(),
        store: Some(TestStore::Postgres(cluster.url())),
        ..Default::default()
    };
    let first = Authority::start_with(options).await;
    let mut replicas = vec![first];
    for _ in 1..n {
        let replica = replicas[0].start_replica().await;
        replicas.push(replica);
    }
    for (i, r) in replicas.iter().enumerate() {
        println!("   replica {i} listening on {}", r.addr());
    }
    let boot = replicas[0].bootstrap().to_owned();

    step(2, "Starting verifiers \"eu\" (prefers replica 0) and \"us\" (prefers replica 1), each listing them all…");
    let token = replicas[0].system_token("verifier", &[]).await;
    let urls: Vec<String> = replicas.iter().map(Authority::url).collect();
    let in_order = |first: usize| (0..n).map(|i| urls[(first + i) % n].clone()).collect::<Vec<_>>().join(",");
    let opts = |region: &str| VerifierOptions {
        region: region.into(),
        fail_closed_after: FAIL_CLOSED_AFTER,
        rust_log: "warn".into(),
        args: vec!["--failback-after".into(), "1h".into()],
        ..VerifierOptions::default()
    };
    let mut eu = Verifier::start(&in_order(0), &token, opts("eu")).await;
    let mut us = Verifier::start(&in_order(1), &token, opts("us")).await;
    eu.wait_synced().await;
    us.wait_synced().await;
    println!("   eu follows {}, us follows {}", eu.status().await.authority, us.status().await.authority);

    step(3, "Creating org \"acme\" on replica 0, minting for alice on replica 1 (it reads the new key through)…");
    replicas[0].create_org("acme").await;
    let req = MintRequest { org: "acme".into(), subject: "alice".into(), ttl_seconds: 3600, ..Default::default() };
    let minted = replicas[1].client().mint(bearer(req, &boot)).await?.into_inner();
    for (region, v) in [("eu", &eu), ("us", &us)] {
        let miss = check(v, region, "token", &minted.token, "read", "").await?;
        let hit = check(v, region, "token", &minted.token, "read", "").await?;
        ensure!(miss.allowed && hit.allowed && hit.source() == Source::Cache, "expected a miss then a hit: {hit:?}");
    }

    step(4, "Killing replica 0 (SIGKILL): eu follows another replica, its cache still answering…");
    replicas[0].kill_9();
    let killed = Instant::now();
    let mut hits = 0;
    while killed.elapsed() < FAIL_CLOSED_AFTER + Duration::from_millis(500) {
        let s = eu.status().await;
        ensure!(!s.fail_closed, "eu failed closed though other replicas serve: {s:?}");
        let req = CheckRequest { bundle: minted.token.clone(), action: "read".into(), ..Default::default() };
        let r = eu.client().check(req).await?.into_inner();
        ensure!(r.allowed && r.source() == Source::Cache, "the cached token must stay allowed: {r:?}");
        hits += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = eu.status().await;
    println!(
        "   {hits} checks over {:.1} s, all cache hits; eu now follows {} (never failed closed)",
        killed.elapsed().as_secs_f64(),
        s.authority
    );
    ensure!(s.authority != urls[0], "eu still follows the killed replica");

    let last = n - 1;
    step(5, &format!("Revoking the token on replica {last}; timing how fast each region applies it…"));
    let req = RevokeRequest { target: Some(Target::Family(minted.family.clone())), reason: "demo".into() };
    let seq = replicas[last].client().revoke(bearer(req, &boot)).await?.into_inner().seq;
    time_propagation(seq, &[("eu", &eu), ("us", &us)]).await?;
    for (region, v) in [("eu", &eu), ("us", &us)] {
        let r = check(v, region, "token", &minted.token, "read", "").await?;
        ensure!(r.reason() == Reason::Revoked, "must be revoked: {r:?}");
    }

    step(6, "Shutting everything down…");
    eu.stop().await?;
    us.stop().await?;
    println!("   done. docs/authority.md (Replicas) tells how they share one log.");
    Ok(())
}
