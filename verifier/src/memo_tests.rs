//! The token memo against everything that revokes: a memoized token is never
//! answered from the memo once a revocation, a key retirement, a reset or
//! failing closed could concern it. Streamed events are applied as the
//! subscription applies them; the cache is filled as a Verify answer fills it.

use std::time::Duration;

use tally_proto::v1 as pb;
use tally_proto::v1::revocation_target::Target;
use tally_proto::v1::subscribe_event::Event;
use tally_token::{Bundle, KeyId, Limits, Macaroon, Reason, RevocationId, RootKey, TallyId, verify_with_key};

use crate::Upstream;
use crate::convert::stream_message;
use crate::outcome::Source;
use crate::verdict::Verified;
use crate::verifier::{CheckRequest, Settings, Verifier};

const EPOCH: &str = "memo-test";

fn verifier() -> Verifier {
    // Never dialled: every token here is cached before it is checked.
    let upstream = Upstream::new("http://127.0.0.1:9", "unused", Duration::from_secs(1)).unwrap();
    let v = Verifier::new(upstream, Settings { fail_closed_after: Duration::from_secs(3600), ..Settings::default() });
    v.assume_synced(EPOCH);
    v
}

/// A token of `key_id` and family `nonce`, cached as the authority's Verify answer would cache it.
fn cached_token(v: &Verifier, key_id: u64, nonce: u8) -> (String, Macaroon) {
    let key = RootKey::from_bytes([key_id as u8; 32]);
    let mut m = Macaroon::mint(&key, TallyId::new(KeyId(key_id), [nonce; 16]).encode(), None);
    m.add_first_party("org = acme");
    m.add_first_party("action in read,write");
    let bundle = Bundle::single(m.clone());
    let chain = verify_with_key(&bundle, &key.derive(), &Limits::default()).unwrap().chain;
    // As minted: the authority hands out its own signature alone.
    let minted = chain.len() - 1;
    let verified = Verified {
        org: "acme".into(),
        family: None,
        expires_at_ms: None,
        epoch: EPOCH.into(),
        chain_from: minted,
        chain: chain[minted..].to_vec(),
    };
    v.remember(&bundle.view(), &verified);
    (m.to_text(), m)
}

fn memo_hits(v: &Verifier) -> u64 {
    v.metrics.memo_hits.get()
}

/// Checks `text` for `read` locally: (allowed, reason, source), or `None`
/// when the authority would be asked.
fn check_local(v: &Verifier, text: &str) -> Option<(bool, Reason, Source)> {
    let req = CheckRequest { bundle: text, action: Some("read"), ..Default::default() };
    v.check_cached(&req).unwrap().map(|out| (out.allowed, out.reason, out.source))
}

fn check(v: &Verifier, text: &str) -> (bool, Reason, Source) {
    check_local(v, text).expect("answered locally")
}

/// Checks `text` until the memo answers it (the first exact hit memoizes it).
fn memoize(v: &Verifier, text: &str) {
    let before = memo_hits(v);
    assert_eq!(check(v, text), (true, Reason::Ok, Source::Cache));
    assert_eq!(check(v, text), (true, Reason::Ok, Source::Cache));
    assert_eq!(memo_hits(v), before + 1, "the second check is the memo's");
}

fn apply(v: &Verifier, seq: u64, target: Target) {
    let revocation = pb::Revocation {
        seq,
        target: Some(pb::RevocationTarget { target: Some(target) }),
        digest: Vec::new(),
        expires_at_unix_ms: 0,
    };
    v.apply_event(stream_message(pb::SubscribeEvent {
        event: Some(Event::Revocation(revocation)),
        sent_at_unix_ms: 0,
    }));
}

#[tokio::test]
async fn a_memoized_token_is_denied_once_revoked_by_family_branch_or_key() {
    let v = verifier();
    let (a, _) = cached_token(&v, 1, 0xa);
    let (b, b_macaroon) = cached_token(&v, 1, 0xb);
    let (c, _) = cached_token(&v, 2, 0xc);
    let (other, _) = cached_token(&v, 1, 0xd);
    for t in [&a, &b, &c, &other] {
        memoize(&v, t);
    }
    let hits = memo_hits(&v);

    apply(&v, 1, Target::Family(vec![0xa; 16]));
    assert_eq!(check(&v, &a), (false, Reason::Revoked, Source::Local));

    let branch = RevocationId::branch(b_macaroon.signature());
    let branch = pb::BranchTarget { family: vec![0xb; 16], branch: branch.bytes().to_vec() };
    apply(&v, 2, Target::Branch(branch));
    // The family's cache entries are dropped: the authority is asked (and says revoked).
    assert_eq!(check_local(&v, &b), None, "a revoked branch is not answered from the memo");

    apply(&v, 3, Target::KeyId(2));
    assert_eq!(check(&v, &c).1, Reason::RetiredKey);
    assert_eq!(memo_hits(&v), hits, "no revoked token was answered by the memo");

    // The token nothing revoked: answered by the cache again, then memoized again.
    memoize(&v, &other);
}

#[tokio::test]
async fn failing_closed_and_resets_leave_nothing_in_the_memo() {
    let v = verifier();
    let (a, _) = cached_token(&v, 1, 0xa);
    memoize(&v, &a);
    assert!(v.memo.len() > 0);
    v.sync.set_fail_closed(true);
    assert_eq!(check_local(&v, &a), None, "failing closed: the authority must be asked");

    let v = verifier();
    let (a, _) = cached_token(&v, 1, 0xa);
    memoize(&v, &a);
    let reset = pb::Reset { epoch: "another".into(), head_seq: 0, replay_after: 0, reason: "test".into() };
    v.apply_event(stream_message(pb::SubscribeEvent { event: Some(Event::Reset(reset)), sent_at_unix_ms: 0 }));
    assert_eq!(v.memo.len(), 0, "token texts dropped with the cache");
    assert_eq!(check_local(&v, &a), None);
}
