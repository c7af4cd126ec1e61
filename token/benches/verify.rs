//! Criterion benchmarks of the token hot paths: parse + full verification of a
//! 5-caveat token (the authority's Verify), and continuing a cached chain by 2
//! caveats (the verifier's descendant hit).

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use tally_token::{
    Bundle, Context, DecodedBundle, KeyId, Limits, Macaroon, RootKey, TallyId, continue_chain, evaluate, prefix_key,
    verify_view_with_key, verify_with_key,
};

fn five_caveat_token(key: &RootKey) -> Macaroon {
    let mut m = Macaroon::mint(key, TallyId::new(KeyId(1), [7; 16]).encode(), Some("https://tally.example".into()));
    for c in [
        "org = acme",
        "action in read,write",
        "resource = apps/web/*",
        "service = web",
        "expires < 2099-01-01T00:00:00Z",
    ] {
        m.add_first_party(c);
    }
    m
}

fn bench(c: &mut Criterion) {
    let key = RootKey::from_bytes([42; 32]);
    let derived = key.derive();
    let token = five_caveat_token(&key);
    let text = token.to_text();
    let limits = Limits::default();

    c.bench_function("parse (borrowed) + verify, 5 caveats", |b| {
        b.iter(|| {
            let mut decoded = DecodedBundle::default();
            decoded.decode_into(black_box(&text), &limits).unwrap();
            let view = decoded.view(&limits).unwrap();
            verify_view_with_key(&view, &derived, &limits).unwrap().chain.len()
        })
    });

    c.bench_function("parse only (borrowed), 5 caveats", |b| {
        b.iter(|| {
            let mut decoded = DecodedBundle::default();
            decoded.decode_into(black_box(&text), &limits).unwrap();
            decoded.view(&limits).unwrap().caveats_len()
        })
    });

    c.bench_function("parse only, 5 caveats", |b| b.iter(|| Bundle::parse(black_box(&text), &limits).unwrap()));

    c.bench_function("verify only, 5 caveats", |b| {
        let bundle = Bundle::parse(&text, &limits).unwrap();
        b.iter(|| verify_with_key(black_box(&bundle), &derived, &limits).unwrap().chain.len())
    });

    c.bench_function("parse + verify, 5 caveats", |b| {
        b.iter(|| {
            let bundle = Bundle::parse(black_box(&text), &limits).unwrap();
            verify_with_key(&bundle, &derived, &limits).unwrap().chain.len()
        })
    });

    c.bench_function("parse + verify + evaluate, 5 caveats", |b| {
        let mut ctx = Context::at(SystemTime::now());
        ctx.action = Some("read");
        ctx.resource = Some("apps/web/index");
        ctx.service = Some("web");
        b.iter(|| {
            let bundle = Bundle::parse(black_box(&text), &limits).unwrap();
            let v = verify_with_key(&bundle, &derived, &limits).unwrap();
            evaluate(v.first_party.iter().copied(), &ctx).unwrap().expires_unix_nanos
        })
    });

    let mut child = token.clone();
    child.add_first_party("action in read");
    child.add_first_party("subject = alice");
    let cached = token.signature().clone();
    c.bench_function("continue chain by 2 caveats", |b| {
        b.iter(|| continue_chain(black_box(&cached), &child.caveats()[5..]) == *child.signature())
    });

    c.bench_function("prefix key, 5 caveats", |b| {
        b.iter(|| prefix_key(token.identifier(), black_box(token.caveats())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
