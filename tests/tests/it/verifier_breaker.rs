//! The breaker on Verify calls: with the authority out of reach (a black
//! hole: connections accepted, nothing answered), only the first few checks
//! that need it wait for the Verify deadline; once that many failed in a row,
//! the rest are denied at once (authority unavailable) without a call, which
//! the verifier's own counters show. When the link comes back, a probe call
//! gets through and checks are answered by the authority again, with no
//! restart. And a stream silent past the threshold trips the breaker at
//! once: with the cache dropped, checks do not all become Verify calls into
//! the same silence.

use std::time::Duration;

use tally_proto::v1::{Reason, Source};
use tally_tests::{Authority, Mode, Proxy, Verifier, VerifierOptions, eventually, metric, scrape};

/// Failed Verify calls in a row that open the breaker.
const FAILURES: u32 = 3;
/// Long enough that no probe is due while the checks below run.
const COOL_DOWN: Duration = Duration::from_secs(5);
const VERIFY_TIMEOUT: &str = "300ms";
/// Checks made while the authority is out of reach (each needs it).
const CHECKS: usize = 20;
/// A probe every cool-down; the Verify connection black-holed before may
/// need its keep-alive timeout (4 s) to be dropped and redialled.
const RECOVERY: Duration = Duration::from_secs(30);

/// Callers whose own deadline is shorter than the Verify deadline (Envoy's
/// ext_authz timeout, say) give up first; their calls still run to the end
/// and open the breaker, so later checks are refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_whose_callers_gave_up_still_open_the_breaker() {
    let (authority, proxy, eu) = start(&["--authority-timeout", "1s", "--breaker-cool-down", "5s"]).await;
    authority.create_org("acme").await;
    let token = authority.mint("acme", &[]).await.token;

    proxy.set(Mode::BlackHole);
    let impatient = || {
        let mut req = tonic::Request::new(tally_proto::v1::CheckRequest {
            bundle: token.clone(),
            action: "read".into(),
            ..Default::default()
        });
        req.set_timeout(Duration::from_millis(100));
        let mut client = eu.client();
        async move { client.check(req).await }
    };
    // Every caller gives up after 100 ms, long before the 1 s Verify deadline;
    // once three of the calls they started have timed out, the breaker answers.
    let answer = eventually(Duration::from_secs(10), || async {
        match impatient().await {
            Ok(r) if r.get_ref().detail.contains("next try in") => Ok(r.into_inner()),
            Ok(r) => Err(format!("answered, but not by the breaker: {:?}", r.into_inner())),
            Err(status) => Err(format!("the caller gave up: {:?}", status.code())),
        }
    })
    .await;
    assert!(!answer.allowed);
    assert_eq!(answer.reason(), Reason::AuthorityUnavailable, "{answer:?}");
}

/// Once the stream has been silent past the threshold, the cache is dropped
/// and every check would need the authority: the verifier does not send
/// them all into the silence. The first is a probe, the rest are denied at
/// once; when the stream is heard again, checks are answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_trips_the_breaker() {
    let (authority, proxy, eu) =
        start(&["--metrics-listen", "127.0.0.1:0", "--authority-timeout", "1s", "--breaker-cool-down", "5s"]).await;
    let metrics = eu.metrics_addr().await.unwrap();
    authority.create_org("acme").await;
    let token = authority.mint("acme", &[]).await.token;
    eventually(Duration::from_secs(5), || async {
        let a = eu.check(&token, "read").await;
        if a.allowed && a.source() == Source::Cache { Ok(()) } else { Err(format!("not a cache hit yet: {a:?}")) }
    })
    .await;

    proxy.set(Mode::BlackHole);
    eventually(Duration::from_secs(10), || async {
        let s = eu.status().await;
        if s.fail_closed { Ok(()) } else { Err(format!("not failing closed: {s:?}")) }
    })
    .await;
    let calls = || async {
        let text = scrape(metrics).await.unwrap();
        metric(&text, "tally_verifier_authority_verifies_total").expect("verifies counter")
    };
    let before = calls().await;
    for i in 0..CHECKS {
        let a = eu.check(&token, "read").await;
        assert!(!a.allowed && a.reason() == Reason::AuthorityUnavailable, "check {i}: {a:?}");
    }
    // One probe (it waits out its 1 s deadline; the next is due 5 s later), not
    // one call per check, nor the FAILURES it takes to open on failures alone.
    assert_eq!(calls().await - before, 1.0, "only the probe went to the authority");

    proxy.set(Mode::Pass);
    proxy.close_all();
    let answer = eventually(RECOVERY, || async {
        let a = eu.check(&token, "read").await;
        if a.allowed { Ok(a) } else { Err(format!("still denied: {a:?}")) }
    })
    .await;
    assert!(answer.allowed, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_authority_is_not_asked_again_until_a_probe_gets_through() {
    let cool_down = format!("{}s", COOL_DOWN.as_secs());
    let (authority, proxy, eu) = start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--authority-timeout",
        VERIFY_TIMEOUT,
        "--breaker-cool-down",
        &cool_down,
    ])
    .await;
    let metrics = eu.metrics_addr().await.unwrap();
    authority.create_org("acme").await;
    let mut tokens = Vec::new();
    for _ in 0..=CHECKS {
        tokens.push(authority.mint("acme", &[]).await.token);
    }
    let counter = |text: &str, name: &str| metric(text, name).unwrap_or_else(|| panic!("{name} missing"));
    let before = scrape(metrics).await.unwrap();
    let verifies_before = counter(&before, "tally_verifier_authority_verifies_total");

    proxy.set(Mode::BlackHole);
    for (i, token) in tokens[..CHECKS].iter().enumerate() {
        let a = eu.check(token, "read").await;
        assert!(!a.allowed, "check {i} allowed through a black hole: {a:?}");
        assert_eq!(a.reason(), Reason::AuthorityUnavailable, "check {i}: {a:?}");
        assert_eq!(a.source(), Source::Authority, "check {i}: {a:?}");
        if i >= FAILURES as usize {
            assert!(a.detail.contains("next try in"), "check {i} should be refused by the open breaker: {a:?}");
        }
    }
    let during = scrape(metrics).await.unwrap();
    let calls = counter(&during, "tally_verifier_authority_verifies_total") - verifies_before;
    let refused = counter(&during, "tally_verifier_authority_breaker_total");
    assert_eq!(calls, f64::from(FAILURES), "only the calls that opened the breaker were made");
    assert_eq!(refused, (CHECKS - FAILURES as usize) as f64, "every later check was refused without a call");

    // The link comes back: a probe gets through and the authority answers again.
    proxy.set(Mode::Pass);
    proxy.close_all();
    let last = &tokens[CHECKS];
    let answer = eventually(RECOVERY, || async {
        let a = eu.check(last, "read").await;
        if a.allowed { Ok(a) } else { Err(format!("still denied: {a:?}")) }
    })
    .await;
    assert_eq!(answer.source(), Source::Authority, "{answer:?}");
    // Closed again: a token denied by the breaker before is now asked about.
    let a = eu.check(&tokens[0], "read").await;
    assert!(a.allowed && a.source() == Source::Authority, "{a:?}");
}

/// An authority, a proxy to it, and a synced verifier of it through the
/// proxy that opens its breaker after `FAILURES`, with `args` besides.
async fn start(args: &[&str]) -> (Authority, Proxy, Verifier) {
    let authority = Authority::start().await;
    let proxy = Proxy::start(authority.addr()).await;
    let verifier_token = authority.system_token("verifier", &[]).await;
    let mut all = vec!["--breaker-failures".to_owned(), FAILURES.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let eu =
        Verifier::start(&proxy.url(), &verifier_token, VerifierOptions { args: all, ..VerifierOptions::default() })
            .await;
    eu.wait_synced().await;
    (authority, proxy, eu)
}
