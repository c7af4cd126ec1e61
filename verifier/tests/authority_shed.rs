//! With the authority out of reach (a listener that accepts connections and
//! never answers), Verify calls hang until their timeout; past
//! `max_authority_calls` of them a check is denied at once instead of
//! queueing, and counted.

use std::net::TcpListener;
use std::time::Duration;

use tally_token::{KeyId, Macaroon, Reason, RootKey, TallyId};
use tally_verifier::{CheckRequest, Settings, Source, Upstream, Verifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_a_check_is_denied_at_once_not_queued() {
    // Accepts (the kernel completes the handshake) and never reads nor writes.
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", black_hole.local_addr().unwrap());
    let upstream = Upstream::new(&url, "unused", Duration::from_secs(2)).unwrap();
    let verifier = Verifier::new(upstream, Settings { max_authority_calls: 2, ..Settings::default() });
    verifier.assume_synced("test");

    let key = RootKey::from_bytes([3; 32]);
    let tokens: Vec<String> =
        (0..3u8).map(|i| Macaroon::mint(&key, TallyId::new(KeyId(1), [i; 16]).encode(), None).to_text()).collect();
    let reqs: Vec<CheckRequest<'_>> =
        tokens.iter().map(|t| CheckRequest { bundle: t, action: Some("read"), ..Default::default() }).collect();
    let (a, b, c) = tokio::join!(verifier.check(&reqs[0]), verifier.check(&reqs[1]), verifier.check(&reqs[2]));
    let answers = [a.unwrap(), b.unwrap(), c.unwrap()];

    for o in &answers {
        assert!(!o.allowed, "{o:?}");
        assert_eq!((o.reason, o.source), (Reason::AuthorityUnavailable, Source::Authority), "{o:?}");
    }
    let shed: Vec<_> = answers.iter().filter(|o| o.detail.contains("Verify calls already in flight")).collect();
    assert_eq!(shed.len(), 1, "exactly the third call is shed: {answers:?}");
    assert_eq!(verifier.authority_verifies(), 2, "two calls reached the (silent) authority");
    assert_eq!(verifier.authority_shed(), 1);
    assert!(verifier.render_metrics().contains("tally_verifier_authority_shed_total 1\n"));

    // The slots are given back: once the calls have failed, the next one is made.
    let again = verifier.check(&reqs[0]).await.unwrap();
    assert!(!again.detail.contains("already in flight"), "{again:?}");
    assert_eq!(verifier.authority_verifies(), 3);
    drop(black_hole);
}
