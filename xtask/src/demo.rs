//! `cargo xtask demo`: Tally's main job end to end, on loopback, with the
//! embedded default (a temp SQLite file, no other services), or with
//! `--store postgres` on a throwaway PostgreSQL cluster (`--replicas N`:
//! several authorities on it, `demo_replicas.rs`). Starts the real
//! binaries as processes (through the end-to-end test harness), narrates each
//! step, and exits non-zero if anything does not behave as told.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::{CheckRequest, CheckResponse, MintRequest, Reason, RevokeRequest, Source};
use tally_tests::{Authority, AuthorityOptions, PgCluster, TestStore, Verifier, VerifierOptions, bearer};
use tally_token::{Limits, Macaroon};

/// Silence after which the demo's verifiers fail closed (10 s in production).
pub(crate) const FAIL_CLOSED_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The authority's store: `sqlite` (a temp file, the default) or
    /// `postgres` (a throwaway cluster of the installed PostgreSQL).
    #[arg(long, value_enum, default_value_t = DemoStore::Sqlite)]
    store: DemoStore,
    /// Authority replicas on one PostgreSQL database (2 or more: implies
    /// `--store postgres`), one of them killed during the demo.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DemoStore {
    Sqlite,
    Postgres,
}

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // Stopped and removed when the demo ends (after the authority).
    let cluster = match (args.store, args.replicas) {
        (DemoStore::Sqlite, 1) => None,
        _ => Some(PgCluster::start().context("starting a throwaway PostgreSQL cluster")?),
    };
    match (cluster.as_ref(), args.replicas) {
        (Some(cluster), n) if n > 1 => runtime.block_on(crate::demo_replicas::demo(cluster, usize::from(n))),
        (cluster, _) => runtime.block_on(demo(cluster)),
    }
}

/// Waits until each region has applied `seq`, printing how long after now
/// (just after Revoke returned) each did; fails after 5 s.
pub(crate) async fn time_propagation(seq: u64, regions: &[(&str, &Verifier)]) -> anyhow::Result<()> {
    let acked = Instant::now();
    let mut waiting = regions.to_vec();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (region, v) in waiting {
            if v.status().await.applied_seq >= seq {
                println!(
                    "   {region}: revocation seq {seq} applied {:.1} ms after Revoke returned",
                    acked.elapsed().as_secs_f64() * 1e3
                );
            } else {
                still.push((region, v));
            }
        }
        waiting = still;
        if acked.elapsed() > Duration::from_secs(5) {
            bail!("revocation not applied within 5 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

pub(crate) fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

fn source(s: Source) -> &'static str {
    match s {
        Source::Cache => "cache hit",
        Source::Descendant => "descendant of a cached token: chain continued locally",
        Source::Authority => "asked the authority",
        Source::NegativeCache => "recent negative answer",
        Source::Local => "decided locally",
        Source::Unspecified => "?",
    }
}

pub(crate) async fn check(
    v: &Verifier,
    region: &str,
    what: &str,
    bundle: &str,
    action: &str,
    resource: &str,
) -> anyhow::Result<CheckResponse> {
    let req =
        CheckRequest { bundle: bundle.into(), action: action.into(), resource: resource.into(), ..Default::default() };
    let started = Instant::now();
    let r = v.client().check(req).await.context("Check")?.into_inner();
    let took = started.elapsed();
    let verdict = if r.allowed { "allowed".to_owned() } else { format!("DENIED ({:?}: {})", r.reason(), r.detail) };
    println!(
        "   {region:<3} {what:<11} {action:<5} {resource:<8} → {verdict:<40} [{}, {} µs round trip]",
        source(r.source()),
        took.as_micros()
    );
    Ok(r)
}

async fn demo(cluster: Option<&PgCluster>) -> anyhow::Result<()> {
    println!("Tally demo: one authority and two regional verifiers, as processes on 127.0.0.1.");

    let (store, on) = match cluster {
        Some(c) => {
            (TestStore::Postgres(c.url()), format!("PostgreSQL (a throwaway cluster on 127.0.0.1:{})", c.port()))
        }
        None => (TestStore::Sqlite, "a temp SQLite database".to_owned()),
    };
    step(1, &format!("Building and starting the authority on {on} (init prints a bootstrap operator token)…"));
    let options = AuthorityOptions {
        heartbeat: Duration::from_millis(200),
        rust_log: "warn".into(),
        store: Some(store),
        ..Default::default()
    };
    let mut authority = Authority::start_with(options).await;
    println!("   authority listening on {} (database {})", authority.addr(), authority.db().arg());

    step(2, "Minting a verifier token (role = verifier) and starting verifiers \"eu\" and \"us\"…");
    let verifier_token = authority.system_token("verifier", &[]).await;
    let opts = |region: &str| VerifierOptions {
        region: region.into(),
        fail_closed_after: FAIL_CLOSED_AFTER,
        rust_log: "warn".into(),
        ..VerifierOptions::default()
    };
    let mut eu = Verifier::start(&authority.url(), &verifier_token, opts("eu")).await;
    let mut us = Verifier::start(&authority.url(), &verifier_token, opts("us")).await;
    eu.wait_synced().await;
    us.wait_synced().await;
    println!("   eu on {}, us on {}; both synced with the revocation stream", eu.addr(), us.addr());

    step(3, "Creating org \"acme\" and minting a token for alice: action in read,write, valid 1 h…");
    authority.create_org("acme").await;
    let req = MintRequest {
        org: "acme".into(),
        caveats: vec!["action in read,write".into()],
        subject: "alice".into(),
        ttl_seconds: 3600,
        ..Default::default()
    };
    let minted = authority.client().mint(bearer(req, authority.bootstrap())).await?.into_inner();
    let token = minted.token.clone();
    println!("   token {}… (family {})", &token[..24], minted.family);

    step(4, "Alice attenuates it offline, no call home: + \"action in read\" + \"resource = docs/*\"…");
    let mut narrower = Macaroon::from_text(&token, &Limits::default())?;
    narrower.add_first_party("action in read");
    narrower.add_first_party("resource = docs/*");
    let narrower = narrower.to_text();
    println!("   attenuated token {}…", &narrower[..24]);

    step(5, "Checking in both regions (caveats are evaluated on every check):");
    for (region, v) in [("eu", &eu), ("us", &us)] {
        let miss = check(v, region, "token", &token, "read", "").await?;
        let hit = check(v, region, "token", &token, "read", "").await?;
        let desc = check(v, region, "attenuated", &narrower, "read", "docs/a").await?;
        let narrowed = check(v, region, "attenuated", &narrower, "write", "docs/a").await?;
        ensure!(miss.allowed && miss.source() == Source::Authority, "expected a cold miss: {miss:?}");
        ensure!(hit.allowed && hit.source() == Source::Cache, "expected a cache hit: {hit:?}");
        ensure!(desc.allowed && desc.source() == Source::Descendant, "expected a descendant hit: {desc:?}");
        ensure!(!narrowed.allowed, "the attenuated token must not allow write");
    }

    step(6, "Revoking the token's family at the authority; timing how fast each region applies it…");
    let req = RevokeRequest { target: Some(Target::Family(minted.family.clone())), reason: "demo".into() };
    let seq = authority.client().revoke(bearer(req, authority.bootstrap())).await?.into_inner().seq;
    time_propagation(seq, &[("eu", &eu), ("us", &us)]).await?;
    for (region, v) in [("eu", &eu), ("us", &us)] {
        let r = check(v, region, "token", &token, "read", "").await?;
        let d = check(v, region, "attenuated", &narrower, "read", "docs/a").await?;
        ensure!(r.reason() == Reason::Revoked && d.reason() == Reason::Revoked, "both must be revoked");
    }

    step(7, "Killing the authority (SIGKILL). Verifiers must stop trusting their cache once it goes silent…");
    let fresh = authority.mint("acme", &[]).await.token;
    check(&eu, "eu", "new token", &fresh, "read", "").await?;
    let cached = check(&eu, "eu", "new token", &fresh, "read", "").await?;
    ensure!(cached.source() == Source::Cache, "expected a cache hit before the kill");
    authority.kill_9();
    let killed = Instant::now();
    loop {
        if eu.status().await.fail_closed {
            break;
        }
        if killed.elapsed() > FAIL_CLOSED_AFTER + Duration::from_secs(5) {
            bail!("eu did not fail closed");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "   eu failed closed {:.2} s after the kill (threshold {:?}): cache dropped",
        killed.elapsed().as_secs_f64(),
        FAIL_CLOSED_AFTER
    );
    let r = check(&eu, "eu", "new token", &fresh, "read", "").await?;
    ensure!(r.reason() == Reason::AuthorityUnavailable, "expected authority unavailable: {r:?}");

    step(8, "Shutting everything down…");
    eu.stop().await?;
    us.stop().await?;
    println!("   done. Next: README.md (running by hand) and ARCHITECTURE.md (how it works).");
    Ok(())
}
