//! Time at the cache, on a clock the tests move: a cached token is answered
//! until its expiry and never after, a descendant dies by its own `expires`
//! caveat while its ancestor lives, the cache stops answering the moment the
//! authority has been silent past the threshold (before the watchdog's tick),
//! and the watchdog then fails closed and forgets expired revocations.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tally_token::{Bundle, FamilyId, KeyId, Limits, Macaroon, Reason, RootKey, TallyId, verify_with_key};

use crate::Upstream;
use crate::breaker::Admit;
use crate::clock::{Clock, ManualClock};
use crate::outcome::Source;
use crate::verdict::Verified;
use crate::verifier::{CheckRequest, Settings, Verifier};

const EPOCH: &str = "clock-test";
/// 2030-01-01T00:00:00Z, where every test's clock starts.
const T0_MS: i64 = 1_893_456_000_000;
const SKEW: Duration = Duration::from_secs(2);
const THRESHOLD: Duration = Duration::from_secs(10);
const ALLOWED: Option<(bool, Reason, Source)> = Some((true, Reason::Ok, Source::Cache));

fn start() -> Arc<ManualClock> {
    ManualClock::at(UNIX_EPOCH + Duration::from_millis(T0_MS as u64))
}

/// A synced verifier on `clock`, in contact with the authority now (inside a
/// runtime: the lazy channel needs one; it is never dialled).
fn verifier(clock: &Arc<ManualClock>) -> Verifier {
    let upstream = Upstream::new("http://127.0.0.1:9", "unused", Duration::from_secs(1)).unwrap();
    let settings = Settings { fail_closed_after: THRESHOLD, skew: SKEW, ..Settings::default() };
    let v = Verifier::with_clock(upstream, settings, clock.clone());
    v.assume_synced(EPOCH);
    v
}

/// A token of family `nonce` with `caveats`, cached as the authority's
/// Verify answer for it (saying it expires at `expires_at_ms`) leaves it.
fn cached(v: &Verifier, nonce: u8, caveats: &[&str], expires_at_ms: Option<i64>) -> Macaroon {
    let key = RootKey::from_bytes([1; 32]);
    let mut m = Macaroon::mint(&key, TallyId::new(KeyId(1), [nonce; 16]).encode(), None);
    for c in caveats {
        m.add_first_party(*c);
    }
    let bundle = Bundle::single(m.clone());
    let chain = verify_with_key(&bundle, &key.derive(), &Limits::default()).unwrap().chain;
    let minted = chain.len() - 1;
    let verified = Verified {
        org: "acme".into(),
        family: None,
        expires_at_ms,
        epoch: EPOCH.into(),
        chain_from: minted,
        chain: chain[minted..].to_vec(),
    };
    v.remember(&bundle.view(), &verified);
    m
}

/// Checks `text` for `read` locally: (allowed, reason, source), or `None`
/// when the authority would be asked.
fn local(v: &Verifier, text: &str) -> Option<(bool, Reason, Source)> {
    let req = CheckRequest { bundle: text, action: Some("read"), ..Default::default() };
    v.check_cached(&req).unwrap().map(|o| (o.allowed, o.reason, o.source))
}

/// Moves the clock by `by`, the authority's heartbeats keeping the verifier in contact.
fn pass(clock: &ManualClock, v: &Verifier, by: Duration) {
    clock.advance(by);
    v.sync.touch();
}

fn memo_hits(v: &Verifier) -> u64 {
    v.metrics.memo_hits.get()
}

#[tokio::test]
async fn a_cached_token_is_answered_until_its_expiry_and_never_after() {
    // Its own caveat says a minute; a token without one lives as long as the authority said.
    let cases: [(&[&str], i64); 2] =
        [(&["org = acme", "expires < 2030-01-01T00:01:00Z"], 60_000), (&["org = acme"], 30_000)];
    for (caveats, life_ms) in cases {
        let clock = start();
        let v = verifier(&clock);
        let token = cached(&v, 1, caveats, Some(T0_MS + life_ms)).to_text();
        assert_eq!(local(&v, &token), ALLOWED);
        assert_eq!(local(&v, &token), ALLOWED);
        assert_eq!(memo_hits(&v), 1, "answered again by the memo");
        pass(&clock, &v, Duration::from_millis(life_ms as u64 - 1));
        assert_eq!(local(&v, &token), ALLOWED, "its last millisecond ({caveats:?})");
        assert_eq!(memo_hits(&v), 2);
        pass(&clock, &v, Duration::from_millis(1));
        assert_eq!(local(&v, &token), None, "expired: neither the memo nor the cache answers ({caveats:?})");
        assert_eq!(memo_hits(&v), 2);
        assert_eq!(v.cache_len(), 1, "the entry is still held, and dead");
    }
}

#[tokio::test]
async fn a_descendant_dies_by_its_own_expiry_while_its_ancestor_lives() {
    let clock = start();
    let v = verifier(&clock);
    let mut child = cached(&v, 3, &["org = acme"], None);
    child.add_first_party("expires < 2030-01-01T00:00:10Z");
    let child = child.to_text();
    assert_eq!(local(&v, &child), Some((true, Reason::Ok, Source::Descendant)));
    assert_eq!(local(&v, &child), ALLOWED, "remembered: an exact hit until its own expiry");

    pass(&clock, &v, Duration::from_secs(10));
    // Its entry died with the caveat; the ancestor continues the chain, and
    // the caveat still holds within the skew.
    assert_eq!(local(&v, &child), Some((true, Reason::Ok, Source::Descendant)));
    pass(&clock, &v, SKEW);
    assert_eq!(local(&v, &child), Some((false, Reason::Expired, Source::Descendant)));
}

#[tokio::test]
async fn past_the_silence_threshold_the_cache_stops_at_once_and_the_watchdog_fails_closed() {
    let clock = start();
    let v = verifier(&clock);
    let token = cached(&v, 4, &["org = acme"], None).to_text();
    assert_eq!(local(&v, &token), ALLOWED);
    assert_eq!(local(&v, &token), ALLOWED, "memoized");

    clock.advance(THRESHOLD);
    assert_eq!(local(&v, &token), ALLOWED, "silent for exactly the threshold: still in contact");
    v.watch(clock.now());
    assert!(!v.sync.fail_closed() && v.cache_len() == 1, "nor does the watchdog act");

    clock.advance(Duration::from_millis(1));
    assert_eq!(local(&v, &token), None, "past it, neither the memo nor the cache answers, before any tick");
    assert!(!v.sync.fail_closed());
    v.watch(clock.now());
    assert!(v.sync.fail_closed());
    assert_eq!(v.cache_len(), 0, "the cache is dropped");
    // The breaker is tripped: one probe may go to the authority, the rest are denied at once.
    assert!(matches!(v.breaker.admit(clock.now().mono), Admit::Call(_)));
    assert!(matches!(v.breaker.admit(clock.now().mono), Admit::Refuse(_)));
}

#[tokio::test]
async fn the_watchdog_forgets_a_revocation_once_its_tokens_expired_past_the_skew() {
    let clock = start();
    let v = verifier(&clock);
    let family = FamilyId([5; 16]);
    v.revoked.add_family(family, T0_MS + 5_000);
    pass(&clock, &v, Duration::from_secs(5) + SKEW);
    v.watch(clock.now());
    assert!(v.revoked.denies(KeyId(1), &family).is_some(), "not before the skew has passed too");
    clock.advance(Duration::from_millis(1));
    v.watch(clock.now());
    assert!(v.revoked.denies(KeyId(1), &family).is_none());
    assert!(!v.sync.fail_closed(), "in contact all along");
}
