//! The audit log's size is bounded by what callers do, not by how often they
//! try: refusals are aggregated (one row per actor, action, org and minute,
//! with a count), names of orgs that do not exist are not kept, and rows
//! older than the retention period are pruned by the writer.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{FakeClock, Harness, bearer, fast_settings};
use tally_authority::Settings;
use tally_proto::v1 as pb;
use tonic::Request;

/// Every audit row, oldest first, as an unscoped operator reads them.
async fn rows(h: &Harness) -> Vec<pb::AuditEntry> {
    let req = pb::ListAuditRequest { limit: 1000, ..Default::default() };
    h.client().list_audit(bearer(req, &h.bootstrap)).await.unwrap().into_inner().entries
}

fn denied(rows: &[pb::AuditEntry]) -> Vec<&pb::AuditEntry> {
    rows.iter().filter(|r| r.outcome == "denied").collect()
}

#[tokio::test]
async fn refusals_are_one_row_per_actor_action_org_and_minute() {
    let clock = FakeClock::new();
    let settings = Settings { audit_retention: Duration::from_secs(90 * 24 * 3600), ..fast_settings() };
    let h = Harness::start_with_clock(settings, Arc::new(clock.clone())).await;
    h.create_org("acme").await;
    let mut c = h.client();
    // Truncated to the minute, so the calls below all fall within one.
    clock.advance(Duration::from_millis(60_000 - clock_ms(&clock) % 60_000));
    for _ in 0..500 {
        c.list_orgs(Request::new(pb::ListOrgsRequest {})).await.unwrap_err();
    }
    for org in ["acme", "no-such-org-1", "no-such-org-2"] {
        for _ in 0..3 {
            c.list_keys(Request::new(pb::ListKeysRequest { org: org.into() })).await.unwrap_err();
        }
    }
    // Refusals are queued without waiting: the next change commits after them.
    h.create_org("beta").await;
    let all = rows(&h).await;
    let refused = denied(&all);
    let summary: Vec<_> =
        refused.iter().map(|r| (r.actor.as_str(), r.action.as_str(), r.org.as_str(), r.count)).collect();
    assert_eq!(
        summary,
        [("anonymous", "org.list", "", 500), ("anonymous", "key.list", "acme", 3), ("anonymous", "key.list", "", 6)],
        "one row each: orgs that do not exist are not named"
    );

    // The next minute starts new rows.
    clock.advance(Duration::from_secs(60));
    c.list_orgs(Request::new(pb::ListOrgsRequest {})).await.unwrap_err();
    h.create_org("gamma").await;
    let all = rows(&h).await;
    let lists: Vec<u64> = denied(&all).iter().filter(|r| r.action == "org.list").map(|r| r.count).collect();
    assert_eq!(lists, [500, 1]);
    assert!(all.iter().filter(|r| r.outcome == "ok").all(|r| r.count == 1));
}

#[tokio::test]
async fn rows_past_the_retention_period_are_pruned() {
    let clock = FakeClock::new();
    let settings = Settings { audit_retention: Duration::from_secs(7 * 24 * 3600), ..fast_settings() };
    let h = Harness::start_with_clock(settings, Arc::new(clock.clone())).await;
    h.create_org("acme").await;
    h.client().list_orgs(Request::new(pb::ListOrgsRequest {})).await.unwrap_err();
    h.create_org("beta").await;
    let before = rows(&h).await.len();
    assert!(before >= 4, "init, system org, acme, a refusal, beta: {before}");

    clock.advance(Duration::from_secs(6 * 24 * 3600));
    assert_eq!(h.authority.prune().await.unwrap().audit_rows, 0, "within the retention period");
    clock.advance(Duration::from_secs(2 * 24 * 3600));
    h.create_org("gamma").await;
    let pruned = h.authority.prune().await.unwrap().audit_rows;
    assert_eq!(pruned as usize, before, "every row older than 7 days (the first prune's own row is 2 days old)");
    let left: Vec<_> = rows(&h).await.into_iter().map(|r| r.action).collect();
    assert_eq!(left, ["log.prune", "org.create", "log.prune"]);
}

fn clock_ms(clock: &FakeClock) -> u64 {
    use tally_authority::Clock;
    clock.now_ms() as u64
}
