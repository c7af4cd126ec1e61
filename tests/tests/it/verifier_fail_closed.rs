//! Fail closed: with the authority killed, checks that were cache hits are
//! denied within the silence threshold (plus a heartbeat); with it restarted,
//! checks succeed again and the verifier resumed from its seq (no reset).

use std::time::{Duration, Instant};

use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::{Reason, RevokeRequest, Source};
use tally_tests::{Cluster, bearer, eventually};

const THRESHOLD: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_down_then_back() {
    let mut c = Cluster::start(THRESHOLD).await;
    c.authority.create_org("acme").await;
    let doomed = c.authority.mint("acme", &[]).await;
    let token = c.authority.mint("acme", &[]).await.token;
    let req = RevokeRequest { target: Some(Target::Family(doomed.family)), reason: String::new() };
    let seq = c.authority.client().revoke(bearer(req, c.authority.bootstrap())).await.unwrap().into_inner().seq;
    c.eu.wait_applied(seq).await;
    c.eu.check(&token, "read").await;
    assert_eq!(c.eu.check(&token, "read").await.source(), Source::Cache);
    let resets = c.eu.status().await.resets;

    c.authority.kill_9();
    let killed = Instant::now();
    // Within the threshold plus one heartbeat (and polling slack), the cached token is denied.
    let denied = eventually(THRESHOLD + Duration::from_secs(3), || async {
        let r = c.eu.check(&token, "read").await;
        if r.allowed { Err(format!("still allowed after {:?}", killed.elapsed())) } else { Ok(r) }
    })
    .await;
    assert!(
        killed.elapsed() >= THRESHOLD - Duration::from_millis(300),
        "not before the threshold: {:?}",
        killed.elapsed()
    );
    assert_eq!(denied.reason(), Reason::AuthorityUnavailable);
    // The cache stops answering at the threshold; the watchdog drops it within its next tick.
    eventually(Duration::from_secs(1), || async {
        let s = c.eu.status().await;
        if s.fail_closed && s.cache_entries == 0 { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;

    c.authority.restart().await;
    let back = eventually(Duration::from_secs(10), || async {
        let r = c.eu.check(&token, "read").await;
        if r.allowed { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await;
    assert!(back.allowed);
    let status = c.eu.wait_synced().await;
    assert_eq!(status.resets, resets, "resumed from its seq, no reset");
    assert_eq!(status.applied_seq, seq);
    eventually(Duration::from_secs(5), || async {
        let r = c.eu.check(&token, "read").await;
        if r.source() == Source::Cache { Ok(()) } else { Err(format!("{:?}", r.source())) }
    })
    .await;
}
