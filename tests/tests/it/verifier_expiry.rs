//! A cached token stops being allowed at its `expires` instant (no clock skew
//! configured), though it is never revoked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tally_proto::v1::{MintRequest, Reason, Source};
use tally_tests::{Cluster, bearer, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_token_expires_on_time() {
    let c = Cluster::start_with(Duration::from_secs(10), &["--clock-skew", "0s"]).await;
    c.authority.create_org("acme").await;
    let req = MintRequest { org: "acme".into(), ttl_seconds: 2, ..Default::default() };
    let minted = c.authority.client().mint(bearer(req, c.authority.bootstrap())).await.unwrap().into_inner();
    c.eu.check(&minted.token, "read").await;
    let hit = c.eu.check(&minted.token, "read").await;
    let now_ms = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    if now_ms() < minted.expires_at_unix_ms {
        assert!(hit.allowed, "{hit:?}");
        assert_eq!(hit.source(), Source::Cache);
        assert_eq!(hit.expires_at_unix_ms, minted.expires_at_unix_ms);
    }
    let denied = eventually(Duration::from_secs(6), || async {
        let r = c.eu.check(&minted.token, "read").await;
        if r.allowed { Err("still allowed".to_owned()) } else { Ok((r, now_ms())) }
    })
    .await;
    assert_eq!(denied.0.reason(), Reason::Expired, "{:?}", denied.0);
    assert!(denied.1 >= minted.expires_at_unix_ms, "denied only at or after the expiry instant");
}
