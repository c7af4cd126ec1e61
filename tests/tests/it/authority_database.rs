//! The authority's database commands against the real binary, on either
//! store: `epoch bump` (refused while an authority serves the database;
//! afterwards every verifier flushes, and the log and the keys carry on),
//! `init` on a database that is initialised already, and `serve` on a
//! schema newer than the binary: each refused with one clear line.

use std::process::ExitStatus;
use std::time::Duration;

use tally_proto::v1::{Reason, Source};
use tally_tests::{AUTHORITY, Authority, Child, Cluster, DEADLINE, binary_in, eventually};

/// Runs `tally-authority ARGS` to its end: (status, stdout, stderr).
async fn run(args: &[&str]) -> (ExitStatus, Vec<String>, Vec<String>) {
    let mut child = Child::spawn(&binary_in(AUTHORITY.package, AUTHORITY.name), args, &[]).unwrap();
    let status = child.wait(DEADLINE).await.expect("tally-authority exits");
    (status, child.stdout().snapshot(), child.stderr().snapshot())
}

fn kek_file(a: &Authority) -> String {
    a.dir().join("kek.hex").to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_bump_flushes_every_verifier_and_keeps_the_log_and_the_keys() {
    let mut c = Cluster::start(Duration::from_secs(10)).await;
    c.authority.create_org("acme").await;
    let token = c.authority.mint("acme", &[]).await.token;
    let revoked = c.authority.mint("acme", &[]).await;
    c.authority.revoke_family(&revoked.family).await;
    for v in [&c.eu, &c.us] {
        v.check(&token, "read").await;
        assert_eq!(v.check(&token, "read").await.source(), Source::Cache);
    }
    let before = c.eu.wait_applied(1).await;
    let db = c.authority.db().arg().to_owned();

    // Refused while the authority serves the database.
    let (status, out, err) = run(&["epoch", "bump", "--db", &db]).await;
    assert!(!status.success() && out.is_empty(), "{out:?} {err:?}");
    assert_eq!(err.len(), 1, "one clear line: {err:?}");
    assert!(err[0].contains("in use by another tally-authority"), "{err:?}");

    c.authority.stop().await.expect("graceful stop");
    let (status, out, err) = run(&["epoch", "bump", "--db", &db]).await;
    assert!(status.success(), "{out:?} {err:?}");
    assert!(out[0].contains(&format!("bumped from {}", before.epoch)), "{out:?}");
    c.authority.restart().await;

    for v in [&c.eu, &c.us] {
        let after = eventually(Duration::from_secs(10), || async {
            let s = v.status().await;
            if s.resets > before.resets && s.synced { Ok(s) } else { Err(format!("{s:?}")) }
        })
        .await;
        assert_ne!(after.epoch, before.epoch, "a new epoch");
        assert_eq!(after.applied_seq, 1, "the log carries on: it is the same history, vouched for again");
        // The cache was flushed: the token is asked about again, and is
        // still good (the keys are the database's, not the epoch's).
        let r = v.check(&token, "read").await;
        assert!(r.allowed, "{r:?}");
        assert_eq!(r.source(), Source::Authority, "the cache was flushed");
        let r = v.check(&revoked.token, "read").await;
        assert_eq!(r.reason(), Reason::Revoked);
    }
    // Seqs go on from the head.
    let next = c.authority.mint("acme", &[]).await;
    assert_eq!(c.authority.revoke_family(&next.family).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_an_initialised_database_and_serve_a_schema_newer_than_itself() {
    let mut a = Authority::start().await;
    a.create_org("acme").await;
    a.stop().await.expect("graceful stop");
    let db = a.db().arg().to_owned();
    let kek = kek_file(&a);

    let (status, out, err) = run(&["init", "--db", &db, "--kek-file", &kek]).await;
    assert!(!status.success(), "init ran twice: {out:?}");
    assert!(out.is_empty(), "no token printed: {out:?}");
    assert_eq!(err.len(), 1, "one clear line: {err:?}");
    assert!(err[0].contains("init never touches an existing database"), "{err:?}");
    // And it left the database as it was.
    a.restart().await;
    assert_eq!(
        a.client()
            .list_orgs(tally_tests::bearer(Default::default(), a.bootstrap()))
            .await
            .unwrap()
            .into_inner()
            .orgs
            .len(),
        2
    );
    a.stop().await.expect("graceful stop");

    // A migration this binary does not know: a newer Tally ran here.
    let mut conn = a.db_connect_writable().await.unwrap();
    sqlx::query(concat!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)",
        " VALUES (9999, 'from a newer tally', TRUE, $1, 0)"
    ))
    .bind(vec![0u8; 48])
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    let (status, out, err) = run(&["serve", "--db", &db, "--kek-file", &kek, "--listen", "127.0.0.1:0"]).await;
    assert!(!status.success(), "served a newer schema: {out:?}");
    assert!(out.iter().all(|l| !l.starts_with("listening on")), "it never listened: {out:?}");
    assert_eq!(err.len(), 1, "one clear line: {err:?}");
    assert!(err[0].contains("newer than this tally-authority"), "{err:?}");
}

/// Key ids are random, so two databases, or a database and the backup it was
/// restored from, never give one key id to two keys: a token minted under a
/// key this database does not hold is `UNKNOWN_KEY` ("not ours"), never
/// `FORGED` ("tampered") under a different key that took its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_from_another_database_or_lost_in_a_restore_is_unknown_not_forged() {
    let a = Authority::start().await;
    let mut b = Authority::start().await;
    let key_a = a.create_org("acme").await;
    let key_b = b.create_org("acme").await;
    assert_ne!(key_a, key_b, "one org name, two databases: two key ids");
    assert!(key_a >= 1 << 32 && key_b >= 1 << 32, "random, clear of the old sequential ids: {key_a} {key_b}");
    let from_a = a.mint("acme", &[]).await;
    assert_eq!(from_a.key_id, key_a);
    let r = b.verify(&from_a.token).await;
    assert_eq!(r.reason(), Reason::UnknownKey, "{r:?}");
    assert!(a.verify(&from_a.token).await.valid);

    // B is restored from a backup taken before a rotation: the rotated-to
    // key is lost, and the next rotation makes a key of another id.
    let backup = b.dir().join("backup");
    b.backup_to(&backup).await;
    let rotate = |b: &Authority| {
        let req = tally_tests::bearer(tally_proto::v1::RotateKeyRequest { org: "acme".into() }, b.bootstrap());
        let mut c = b.client();
        async move { c.rotate_key(req).await.expect("RotateKey").into_inner().key_id }
    };
    let lost = rotate(&b).await;
    let minted_under_lost = b.mint("acme", &[]).await;
    assert_eq!(minted_under_lost.key_id, lost);
    b.stop().await.expect("graceful stop");
    b.restore_from(&backup);
    b.restart().await;
    let again = rotate(&b).await;
    assert_ne!(again, lost, "a restored database does not give a lost key's id to a new key");
    let r = b.verify(&minted_under_lost.token).await;
    assert_eq!(r.reason(), Reason::UnknownKey, "{r:?}");
    // The restored database's own key still verifies.
    assert!(b.verify(&b.mint("acme", &[]).await.token).await.valid);
}
