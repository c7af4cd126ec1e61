//! `/metrics` of both services after a scripted workload: every counter the
//! workload touches moves by exactly what the script did, and the latency
//! histograms count each call once.

use std::net::SocketAddr;

use tally_proto::v1 as pb;
use tally_proto::v1::{Reason, Source};
use tally_tests::{Authority, AuthorityOptions, DEADLINE, Verifier, VerifierOptions, bearer, metric, scrape};
use tally_token::{Limits, Macaroon};

const METRICS: &str = "metrics on ";

/// A snapshot of `/metrics`, read by sample name (labels included).
struct Scrape(String);

impl Scrape {
    async fn of(addr: SocketAddr) -> Self {
        Self(scrape(addr).await.expect("scraping /metrics"))
    }

    fn get(&self, name: &str) -> f64 {
        metric(&self.0, name).unwrap_or_else(|| panic!("no sample {name} in:\n{}", self.0))
    }
}

/// How much each sample moved between two scrapes.
fn deltas(before: &Scrape, after: &Scrape, names: &[&str]) -> Vec<(String, f64)> {
    names.iter().map(|n| (n.to_string(), after.get(n) - before.get(n))).collect()
}

fn expect(got: Vec<(String, f64)>, want: &[f64]) {
    let want: Vec<(String, f64)> = got.iter().zip(want).map(|((n, _), w)| (n.clone(), *w)).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_histograms_move_by_what_the_workload_did() {
    let metrics_args = vec!["--metrics-listen".to_owned(), "127.0.0.1:0".to_owned()];
    let mut authority =
        Authority::start_with(AuthorityOptions { serve_args: metrics_args.clone(), ..Default::default() }).await;
    let line = authority.process().wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await.unwrap();
    let authority_metrics: SocketAddr = line[METRICS.len()..].trim().parse().unwrap();
    authority.create_org("acme").await;
    let verifier_token = authority.system_token("verifier", &[]).await;
    let verifier = Verifier::start(
        &authority.url(),
        &verifier_token,
        VerifierOptions { args: metrics_args, ..Default::default() },
    )
    .await;
    let verifier_metrics = verifier.metrics_addr().await.unwrap();
    verifier.wait_synced().await;

    let (a0, v0) = (Scrape::of(authority_metrics).await, Scrape::of(verifier_metrics).await);

    // The script.
    let minted_a = authority.mint("acme", &["action in read,write"]).await;
    let a = minted_a.token.clone();
    let b = authority.mint("acme", &[]).await;
    let d = authority.mint("acme", &[]).await.token;
    for _ in 0..4 {
        // 1 from the authority, then 3 from the cache: the prefix cache, then twice its memo
        let r = verifier.check(&a, "read").await;
        assert!(r.allowed, "{r:?}");
    }
    let r = verifier.check(&a, "delete").await; // the cache (its memo), denied by a caveat
    assert!(!r.allowed && r.source() == Source::Cache, "{r:?}");
    let mut child = Macaroon::from_text(&a, &Limits::default()).unwrap();
    child.add_first_party("action in read");
    let r = verifier.check(&child.to_text(), "read").await; // a descendant of a cached token
    assert!(r.allowed && r.source() == Source::Descendant, "{r:?}");
    // The last 8 characters hold the end of the signature and the end-of-stream byte (0).
    let forged = format!("{}AAAAAAAA", &d[..d.len() - 8]);
    assert_ne!(forged, d);
    let r = verifier.check(&forged, "read").await; // the authority says forged…
    assert!(!r.allowed && r.source() == Source::Authority, "{r:?}");
    let r = verifier.check(&forged, "read").await; // …and the negative cache repeats it
    assert!(!r.allowed && r.source() == Source::NegativeCache, "{r:?}");
    let revoke = pb::RevokeRequest {
        target: Some(pb::revoke_request::Target::Family(b.family.clone())),
        reason: "metrics test".into(),
    };
    let seq = authority.client().revoke(bearer(revoke, authority.bootstrap())).await.unwrap().into_inner().seq;
    verifier.wait_applied(seq).await;
    let r = verifier.check(&b.token, "read").await; // never cached, but on the deny list
    assert!(!r.allowed && r.source() == Source::Local, "{r:?}");
    // `a`, memoized, revoked: the memo no longer answers for it.
    let revoke = pb::RevokeRequest {
        target: Some(pb::revoke_request::Target::Family(minted_a.family.clone())),
        reason: "metrics test".into(),
    };
    let seq = authority.client().revoke(bearer(revoke, authority.bootstrap())).await.unwrap().into_inner().seq;
    verifier.wait_applied(seq).await;
    let r = verifier.check(&a, "read").await;
    assert!(!r.allowed && r.reason() == Reason::Revoked && r.source() == Source::Local, "{r:?}");

    let (a1, v1) = (Scrape::of(authority_metrics).await, Scrape::of(verifier_metrics).await);
    expect(
        deltas(
            &v0,
            &v1,
            &[
                r#"tally_verifier_checks_total{outcome="allowed"}"#,
                r#"tally_verifier_checks_total{outcome="denied"}"#,
                r#"tally_verifier_answers_total{source="authority"}"#,
                r#"tally_verifier_answers_total{source="cache"}"#,
                r#"tally_verifier_answers_total{source="descendant"}"#,
                r#"tally_verifier_answers_total{source="negative_cache"}"#,
                r#"tally_verifier_answers_total{source="local"}"#,
                "tally_verifier_memo_hits_total",
                "tally_verifier_authority_verifies_total",
                "tally_verifier_authority_verify_duration_seconds_count",
                r#"tally_verifier_authority_verify_duration_seconds_bucket{le="+Inf"}"#,
                "tally_verifier_revocations_applied_total",
                r#"tally_verifier_rpc_duration_seconds_count{method="tally.v1.Verifier/Check"}"#,
            ],
        ),
        &[5.0, 5.0, 2.0, 4.0, 1.0, 1.0, 2.0, 3.0, 2.0, 2.0, 2.0, 2.0, 10.0],
    );
    expect(
        deltas(
            &a0,
            &a1,
            &[
                "tally_authority_mint_total",
                "tally_authority_verify_total",
                "tally_authority_revoke_total",
                "tally_authority_log_head_seq",
                r#"tally_authority_rpc_duration_seconds_count{method="tally.v1.Authority/Mint"}"#,
                r#"tally_authority_rpc_duration_seconds_count{method="tally.v1.Authority/Verify"}"#,
                r#"tally_authority_rpc_duration_seconds_count{method="tally.v1.Authority/Revoke"}"#,
                r#"tally_authority_rpc_duration_seconds_count{method="tally.v1.Authority/Subscribe"}"#,
                r#"tally_authority_rpc_duration_seconds_count{method="other"}"#,
            ],
        ),
        &[3.0, 2.0, 2.0, 2.0, 3.0, 2.0, 2.0, 0.0, 0.0],
    );
    // Gauges: the stream is caught up; one subscriber.
    assert_eq!(v1.get("tally_verifier_stream_lag"), 0.0);
    assert_eq!(v1.get("tally_verifier_applied_seq"), seq as f64);
    assert_eq!(a1.get("tally_authority_subscribers"), 1.0);
    // Every sample of the authority names its replica.
    let unlabelled: Vec<&str> =
        a1.0.lines().filter(|l| l.starts_with("tally_authority_") && !l.contains("replica=\"")).collect();
    assert!(unlabelled.is_empty(), "samples without a replica label: {unlabelled:?}");
    // Histogram buckets are cumulative and end at the count.
    let mint = r#"tally_authority_rpc_duration_seconds_bucket{method="tally.v1.Authority/Mint",le="+Inf"}"#;
    assert_eq!(a1.get(mint), a1.get(r#"tally_authority_rpc_duration_seconds_count{method="tally.v1.Authority/Mint"}"#));
    // Every group commit is timed (the mints and revokes above made some).
    let commits = "tally_authority_commits_total";
    assert!(a1.get(commits) > a0.get(commits), "no commits counted");
    assert_eq!(a1.get("tally_authority_commit_duration_seconds_count"), a1.get(commits));
    assert_eq!(a1.get(r#"tally_authority_commit_duration_seconds_bucket{le="+Inf"}"#), a1.get(commits));
    assert!(a1.get("tally_authority_commit_duration_seconds_sum") > 0.0);
}
