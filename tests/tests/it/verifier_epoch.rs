//! The authority's database replaced by a fresh one (new epoch): verifiers
//! notice on reconnecting (reset) and flush their cache.

use std::time::Duration;

use tally_proto::v1::{Reason, Source};
use tally_tests::{Cluster, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_epoch_flushes_verifiers() {
    let mut c = Cluster::start(Duration::from_secs(10)).await;
    c.authority.create_org("acme").await;
    let token = c.authority.mint("acme", &[]).await.token;
    for v in [&c.eu, &c.us] {
        v.check(&token, "read").await;
        assert_eq!(v.check(&token, "read").await.source(), Source::Cache);
    }
    let before = c.eu.status().await;
    assert!(before.cache_entries > 0);

    c.authority.replace_database().await;
    // The old verifier token belongs to the old database: the operator gives
    // the verifiers a new one, which they pick up without a restart.
    let token_v2 = c.authority.system_token("verifier", &[]).await;
    c.eu.write_token(&token_v2);
    c.us.write_token(&token_v2);
    for v in [&c.eu, &c.us] {
        let after = eventually(Duration::from_secs(10), || async {
            let s = v.status().await;
            if s.resets > before.resets && s.synced { Ok(s) } else { Err(format!("{s:?}")) }
        })
        .await;
        assert_ne!(after.epoch, before.epoch);
        assert_eq!(after.applied_seq, 0);
        // Nothing of the old database is trusted: the old token is unknown now.
        let r = v.check(&token, "read").await;
        assert!(!r.allowed);
        assert_eq!(r.source(), Source::Authority, "the cache was flushed");
        assert_eq!(r.reason(), Reason::UnknownKey);
    }
}
