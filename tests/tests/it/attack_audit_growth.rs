//! Finding 6 of the security review: callers without credentials must not
//! grow the audit table without bound. 500 unauthenticated calls once wrote
//! 500 audit rows, never pruned. Now refusals are one row per actor, action,
//! org and minute with a count, and rows past `--audit-retention` are pruned
//! by the writer; this test reads the real authority's SQLite file beside it.

use sqlx::Connection;
use tally_proto::v1 as pb;
use tally_tests::Authority;
use tonic::Request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_refusals_are_a_few_rows() {
    let a = Authority::start().await;
    let mut c = a.client();
    for i in 0..500 {
        let mut req = Request::new(pb::ListOrgsRequest {});
        if i % 2 == 0 {
            req.metadata_mut().insert("authorization", "Bearer tly_garbage".parse().unwrap());
        }
        c.list_orgs(req).await.unwrap_err();
    }
    // Refusals are queued without waiting; the next change commits after them.
    a.create_org("acme").await;

    let mut db = a.db_connect().await.unwrap();
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE outcome = 'denied'").fetch_one(&mut db).await.unwrap();
    // One row for the minute, two should the calls straddle a minute's end.
    assert!(rows <= 2, "{rows} audit rows for 500 refusals");
    let refusals: i64 = sqlx::query_scalar("SELECT CAST(SUM(count) AS BIGINT) FROM audit WHERE outcome = 'denied'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(refusals, 500, "every refusal counted");
    db.close().await.unwrap();
}
