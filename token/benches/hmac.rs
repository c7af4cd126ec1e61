//! The chain's one hot operation, HMAC-SHA256 keyed by the previous
//! signature, as Tally computes it (`tally_token::chain_step`: the SHA-256
//! compression function on stack buffers) beside the `hmac` crate doing the
//! same, side by side in one run. A chain step's key is the previous
//! signature, new every step, so no pad state can be cached for it; the
//! root step's can, and is compared too (the crate's keyed state cloned).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tally_token::{Caveat, Signature, chain_step};

type HmacSha256 = Hmac<Sha256>;

fn bench(c: &mut Criterion) {
    let sig = Signature::from_bytes([7; 32]);
    let mut group = c.benchmark_group("chain step");
    for len in [16usize, 64, 256, 2048] {
        let caveat = Caveat::first_party(vec![b'a'; len]);
        group.bench_with_input(BenchmarkId::new("tally", len), &caveat, |b, caveat| {
            b.iter(|| chain_step(black_box(&sig), black_box(caveat)))
        });
        group.bench_with_input(BenchmarkId::new("hmac crate", len), &caveat, |b, caveat| {
            b.iter(|| {
                let mut mac = <HmacSha256 as Mac>::new_from_slice(black_box(sig.as_bytes())).expect("any key size");
                mac.update(black_box(&caveat.id));
                mac.finalize().into_bytes()
            })
        });
        // The root step's case: the key's pad states computed once, cloned per message.
        let keyed = <HmacSha256 as Mac>::new_from_slice(sig.as_bytes()).expect("any key size");
        group.bench_with_input(BenchmarkId::new("hmac crate, cached pads", len), &caveat, |b, caveat| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(&caveat.id));
                mac.finalize().into_bytes()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
