//! Criterion benchmark of the in-process Check path on a cache of 1M tokens:
//! exact hit (a token presented again: answered by the token memo), the same
//! without the memo (decoding and the prefix cache), and descendant hit (2
//! caveats appended to a cached token). Every one evaluates every caveat.
//! And the worst Check a token's holder can make within the limits ("check,
//! worst token"): a descendant of a cached token, its chain continued over
//! every caveat a 16 KiB token holds: resource globs that scan the whole
//! resource at its bound and lists read to their last item, as many as the
//! evaluation's budgets let hold, then the cheapest or the longest caveats.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tally_token::{
    Bundle, DecodedBundle, FieldLimits, KeyId, Limits, Macaroon, RequestFields, RootKey, TallyId, verify_with_key,
};
use tally_verifier::{CheckRequest, Settings, Source, Upstream, Verified, Verifier};

/// Cached tokens (override with TALLY_BENCH_ENTRIES, e.g. for a quick profile).
fn entries() -> u32 {
    std::env::var("TALLY_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn token(key: &RootKey, i: u32) -> Macaroon {
    let mut nonce = [0u8; 16];
    nonce[..4].copy_from_slice(&i.to_le_bytes());
    nonce[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
    let mut m = Macaroon::mint(key, TallyId::new(KeyId(1), nonce).encode(), None);
    for c in
        ["org = acme", "expires < 2099-01-01T00:00:00Z", "action in read,write", "resource = apps/*", "service = web"]
    {
        m.add_first_party(c);
    }
    m
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let upstream = Upstream::new("http://127.0.0.1:9", "unused", Duration::from_secs(1)).unwrap();
    let n = entries();
    let settings = Settings {
        remember_descendants: false,
        cache_capacity: n as usize + 16,
        fail_closed_after: Duration::from_secs(24 * 3600), // no subscription here: stay "in contact"
        ..Settings::default()
    };
    let verifier = Verifier::new(upstream, settings);
    verifier.assume_synced("bench");
    let key = RootKey::from_bytes([7; 32]);
    let derived = key.derive();
    let limits = Limits::default();
    // Fill the cache as the authority path would: Verify's chain → remember.
    // The authority hands out signatures from the minted length on only: for a token presented as minted, its own signature alone.
    for i in 0..n {
        let bundle = Bundle::single(token(&key, i));
        let chain = verify_with_key(&bundle, &derived, &limits).unwrap().chain;
        let minted = chain.len() - 1;
        let verified = Verified {
            org: "acme".into(),
            family: None,
            expires_at_ms: Some(4_070_908_800_000),
            epoch: "bench".into(),
            chain_from: minted,
            chain: chain[minted..].to_vec(),
        };
        verifier.remember(&bundle.view(), &verified);
    }
    assert_eq!(verifier.cache_len(), n as usize, "one entry per token: its minted prefix is itself");

    let exact = token(&key, n / 2).to_text();
    let mut child = token(&key, n / 3);
    child.add_first_party("action in read");
    child.add_first_party("resource = apps/web/*");
    let child = child.to_text();
    let req = |bundle| CheckRequest {
        bundle,
        action: Some("read"),
        resource: Some("apps/web/index"),
        service: Some("web"),
        ..Default::default()
    };

    let mut group = c.benchmark_group("check, 1M cached tokens");
    // What `check` runs before it would ask the authority: the token memo,
    // then decoding, the deny lists and the prefix cache.
    for (name, text) in [("exact hit", &exact), ("descendant hit (+2 caveats)", &child)] {
        let r = req(text.as_str());
        let out = verifier.check_cached(&r).unwrap().unwrap();
        assert!(out.allowed, "{name}: {out:?}");
        group.bench_function(name, |b| b.iter(|| verifier.check_cached(black_box(&r)).unwrap().unwrap().allowed));
    }
    // The same exact hit without the memo: a token not presented lately.
    let r = req(exact.as_str());
    group.bench_function("exact hit, not memoized", |b| {
        b.iter(|| {
            let mut decoded = DecodedBundle::default();
            decoded.decode_into(black_box(&exact), &limits).unwrap();
            verifier.check_local(&decoded.view(&limits).unwrap(), &r).unwrap().allowed
        })
    });
    group.finish();
}

/// A holder's worst tokens within the limits (16 KiB, 128 caveats, 2 KiB a
/// caveat): `minted`, then as many copies of `resource` as the evaluation's
/// glob budget lets hold (as many as fit when they weigh nothing), as many
/// of `list` as its list-item budget lets
/// hold, then as many copies of `filler` as fit.
fn filled(minted: &Macaroon, resource: Option<&str>, list: Option<&str>, filler: &str) -> Macaroon {
    let limits = Limits::default();
    let mut token = minted.clone();
    let add = |token: &mut Macaroon, caveat: &str| {
        let mut next = token.clone();
        next.add_first_party(caveat);
        let fits = next.caveats().len() <= limits.max_caveats && next.encode_v2().len() <= limits.max_token_bytes;
        if fits {
            *token = next;
        }
        fits
    };
    if let Some(caveat) = resource {
        // A glob that searches nothing weighs 0: as many as fit.
        let weight = tally_token::glob_weight(caveat.trim_start_matches("resource = "));
        let copies = tally_token::MAX_GLOB_WEIGHT.checked_div(weight).unwrap_or(u32::MAX);
        for _ in 0..copies {
            if !add(&mut token, caveat) {
                break;
            }
        }
    }
    if let Some(caveat) = list {
        let items = caveat.bytes().filter(|&b| b == b',').count() as u32 + 1;
        for _ in 0..tally_token::MAX_LIST_ITEMS / items {
            add(&mut token, caveat);
        }
    }
    while add(&mut token, filler) {}
    token
}

fn worst(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let upstream = Upstream::new("http://127.0.0.1:9", "unused", Duration::from_secs(1)).unwrap();
    let settings = Settings {
        remember_descendants: false,
        memo_capacity: 0,
        fail_closed_after: Duration::from_secs(24 * 3600),
        ..Settings::default()
    };
    let field_limits = settings.field_limits;
    let verifier = Verifier::new(upstream, settings);
    verifier.assume_synced("bench");
    let key = RootKey::from_bytes([9; 32]);
    let mut minted = Macaroon::mint(&key, TallyId::new(KeyId(1), [3; 16]).encode(), None);
    for c in ["org = acme", "expires < 2099-01-01T00:00:00Z"] {
        minted.add_first_party(c);
    }
    // Cached as the authority's Verify answer for the minted token leaves it.
    let bundle = Bundle::single(minted.clone());
    let chain = verify_with_key(&bundle, &key.derive(), &Limits::default()).unwrap().chain;
    let verified = Verified {
        org: "acme".into(),
        family: None,
        expires_at_ms: None,
        epoch: "bench".into(),
        chain_from: 2,
        chain: vec![chain.last().unwrap().clone()],
    };
    verifier.remember(&bundle.view(), &verified);

    let n = FieldLimits::default().resource;
    let ascii = format!("{}b", "a".repeat(n - 1));
    let wide = format!("{}b", "é".repeat((n - 1) / 2));
    // Address ranges the client's address (192.168.1.1) is in only at the end
    // of each list, so every range of every caveat is read.
    let ranges = |size: usize| {
        let mut list: Vec<String> = (0..).map(|i| format!("10.{}.{}.0/24", i / 250, i % 250)).take(size).collect();
        list.push("192.168.1.1/32".into());
        format!("client-ip in {}", list.join(","))
    };
    let ranges = ranges(tally_token::MAX_LIST_ITEMS as usize / 2 - 1);
    let actions: Vec<String> = (0..tally_token::MAX_LIST_ITEMS as usize / 2 - 1)
        .map(|i| format!("a{i:05}"))
        .chain(["read".to_owned()])
        .collect();
    let actions = format!("action in {}", actions.join(","));
    // Fillers once the budgets are spent: the fewest bytes per caveat (one
    // HMAC each), or the most bytes a caveat compares (informational when
    // the request names no subject, so every copy holds).
    let plain = "org = acme".to_owned();
    let subject = format!("subject = {}", "s".repeat(2000));
    // Short segments, each found just past where its search starts: every one sets up a search.
    let segmented = "xxxxxaxb?".repeat(n / 9);
    let question = Some(format!("resource = *{}ab*", "a?".repeat(54)));
    let attacks = [
        ("110-char ? globs, address lists, org caveats", question.clone(), Some(&ranges), &plain, &ascii),
        ("110-char ? globs, address lists, long subjects", question, Some(&ranges), &subject, &ascii),
        (
            "96-char ? globs over é, address lists, org caveats",
            Some(format!("resource = *{}éb*", "é?".repeat(47))),
            Some(&ranges),
            &plain,
            &wide,
        ),
        (
            "64-char ? globs over é, address lists, org caveats",
            Some(format!("resource = *{}éb*", "é?".repeat(31))),
            Some(&ranges),
            &plain,
            &wide,
        ),
        (
            "110-byte literal globs, address lists, org caveats",
            Some(format!("resource = *{}b*", "a".repeat(109))),
            Some(&ranges),
            &plain,
            &ascii,
        ),
        (
            "short-segment globs, address lists, org caveats",
            Some(format!("resource = {}*", "*a?b".repeat(n / 9))),
            Some(&ranges),
            &plain,
            &segmented,
        ),
        (
            "one-star ? globs compared in place, address lists",
            Some(format!("resource = *{}", "?".repeat((n - 1) / 2 + 1))),
            Some(&ranges),
            &plain,
            &wide,
        ),
        (
            "one-star literal globs compared in place, address lists",
            Some(format!("resource = {}*", "é".repeat((n - 1) / 2 - 1))),
            Some(&ranges),
            &plain,
            &wide,
        ),
        ("address lists, org caveats", None, Some(&ranges), &plain, &ascii),
        ("action lists, org caveats", None, Some(&actions), &plain, &ascii),
        ("128 org caveats (the chain alone)", None, None, &plain, &ascii),
        ("long subjects", None, None, &subject, &ascii),
    ];
    let mut group = c.benchmark_group("check, worst token");
    for (name, resource, list, filler, resource_text) in attacks {
        let text = filled(&minted, resource.as_deref(), list.map(String::as_str), filler).to_text();
        let fields = RequestFields::parse("read", resource_text, "", "", "192.168.1.1", "", &field_limits)
            .expect("within the bound");
        let req = CheckRequest::new(&text, fields);
        let limits = Limits::default();
        let check = || {
            // Decoded every time: a holder varies the token so nothing repeats it.
            let mut decoded = DecodedBundle::default();
            decoded.decode_into(black_box(&text), &limits).unwrap();
            verifier.check_local(&decoded.view(&limits).unwrap(), &req).unwrap()
        };
        let out = check();
        assert!(out.allowed, "{name}: every caveat holds ({out:?})");
        assert_eq!(out.source, Source::Descendant, "{name}");
        let caveats = Macaroon::from_text(&text, &limits).unwrap().caveats().len();
        group.bench_function(format!("{name} ({caveats} caveats, {} B)", text.len()), |b| b.iter(|| check().allowed));
    }
    group.finish();
}

criterion_group!(benches, bench, worst);
criterion_main!(benches);
