//! A batch whose write fails midway: nothing of it is kept, its callers get
//! `UNAVAILABLE`, no seq is used up, and the writer goes on committing.
//!
//! The fault is injected into the real database (either store): a trigger
//! that aborts the audit INSERT of one revocation, after its revocation row
//! was written in the same transaction.

use crate::common;

use std::time::Duration;

use common::{Harness, assert_code, bearer};
use sqlx::Connection;
use tally_authority::{LogHead, next_digest};
use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::subscribe_event::Event;
use tonic::Code;

fn revoke(family: &str, reason: &str) -> pb::RevokeRequest {
    pb::RevokeRequest { target: Some(Target::Family(family.into())), reason: reason.into() }
}

/// Makes every audit INSERT whose detail is `fail here` fail.
async fn inject_fault(h: &Harness, conn: &mut sqlx::AnyConnection) {
    let statements: &[&str] = if h.db.is_postgres() {
        &[
            "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$",
            "CREATE TRIGGER injected_fault BEFORE INSERT ON audit FOR EACH ROW \
             WHEN (NEW.detail = 'fail here') EXECUTE FUNCTION injected_fault()",
        ]
    } else {
        &["CREATE TRIGGER injected_fault BEFORE INSERT ON audit WHEN NEW.detail = 'fail here' \
           BEGIN SELECT RAISE(ABORT, 'injected fault'); END"]
    };
    for sql in statements {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
}

#[tokio::test]
async fn a_failed_commit_keeps_nothing_and_the_next_one_commits() {
    let h = Harness::start().await;
    h.create_org("acme").await;
    let doomed = h.mint("acme", &[]).await;
    let next = h.mint("acme", &[]).await;

    let mut conn = common::db_connect(&h).await;
    inject_fault(&h, &mut conn).await;

    let failed = h.client().revoke(bearer(revoke(&doomed.family, "fail here"), &h.bootstrap)).await;
    assert_code(failed, Code::Unavailable);
    assert!(h.verify(&doomed.token).await.valid, "a revocation that was not committed is not in force");

    // The writer is not left inside the failed transaction, and the seq the
    // failed batch had taken is handed out again.
    let seq = h.client().revoke(bearer(revoke(&next.family, "ok"), &h.bootstrap)).await.unwrap().into_inner().seq;
    assert_eq!(seq, 1);
    assert_eq!(h.verify(&next.token).await.reason(), pb::Reason::Revoked);

    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT seq, target, digest FROM revocations ORDER BY seq").fetch_all(&mut conn).await.unwrap();
    assert_eq!(rows.len(), 1, "only the committed revocation is stored");
    let (seq, target, stored_digest) = rows.into_iter().next().unwrap();
    assert_eq!((seq, hex::encode(target)), (1, next.family.clone()));
    let family: [u8; 16] = hex::decode(&next.family).unwrap().try_into().unwrap();
    let from_empty = next_digest(&LogHead::default().digest, 1, &tally_authority::Target::Family(family));
    assert_eq!(stored_digest, from_empty, "seq 1 chains from the empty log, not from the failed entry");
    let failed_audit: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE detail = 'fail here'").fetch_one(&mut conn).await.unwrap();
    assert_eq!(failed_audit, 0);
    conn.close().await.unwrap();

    // A subscriber from 0 gets the log as stored: seq 1 alone.
    let verifier = h.system_token("verifier", &[]).await;
    let req = pb::SubscribeRequest { from_seq: 0, ..Default::default() };
    let mut stream = h.client().subscribe(bearer(req, &verifier)).await.unwrap().into_inner();
    let mut got = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("in time");
        match msg.unwrap().expect("stream open").event {
            Some(Event::Revocation(r)) => got.push((r.seq, r.digest)),
            Some(Event::Heartbeat(hb)) if hb.head_seq >= 1 => break,
            _ => {}
        }
    }
    assert_eq!(got, vec![(1, stored_digest)]);
}
