//! Criterion benchmarks of the token hot paths: parse + full verification of a
//! 5-caveat token (the authority's Verify), continuing a cached chain by 2
//! caveats (the verifier's descendant hit), and the worst a token's holder
//! can make caveat evaluation cost: the resource glob alone on the worst
//! inputs ("glob worst"), and `evaluate` of the worst tokens found within
//! the token limits against the worst resource within each candidate bound
//! of `FieldLimits::resource` ("evaluate worst").

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use tally_token::{
    Bundle, Context, DecodedBundle, FieldLimits, KeyId, Limits, MAX_GLOB_WEIGHT, Macaroon, RequestFields, RootKey,
    TallyId, continue_chain, evaluate, glob_match, glob_weight, prefix_key, verify_view_with_key, verify_with_key,
};

/// The candidate bounds of `FieldLimits::resource`, in bytes.
const RESOURCE_BOUNDS: [usize; 3] = [1024, 2048, 4096];

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

/// A token's holder's attack on the evaluation of a Check: caveats that
/// all hold (evaluation stops at the first that does not) and the resource
/// they are matched against.
struct Attack {
    name: &'static str,
    caveats: Vec<String>,
    resource: String,
}

/// As many copies of `caveat` as a token within the default limits holds
/// (128 caveats, 16 KiB, 2 KiB per caveat) and, for a resource glob, as the
/// evaluation's glob budget lets hold (`MAX_GLOB_WEIGHT`), added to a minted
/// token as a holder would; checked by decoding the result under those limits.
fn fill(caveat: &str) -> Vec<String> {
    let limits = Limits::default();
    let weight = caveat.strip_prefix("resource = ").map_or(0, glob_weight);
    let mut spent = 0;
    let key = RootKey::from_bytes([42; 32]);
    let mut token =
        Macaroon::mint(&key, TallyId::new(KeyId(1), [7; 16]).encode(), Some("https://tally.example".into()));
    assert!(caveat.len() <= limits.max_field_bytes);
    while token.caveats().len() < limits.max_caveats && spent + weight <= MAX_GLOB_WEIGHT {
        let mut next = token.clone();
        next.add_first_party(caveat);
        if next.encode_v2().len() > limits.max_token_bytes {
            break;
        }
        token = next;
        spent += weight;
    }
    let decoded = Macaroon::from_text(&token.to_text(), &limits).expect("within the token limits");
    decoded.caveats().iter().map(|c| String::from_utf8(c.id.clone()).unwrap()).collect()
}

/// The worst tokens found for a resource of `n` bytes. Each glob is a
/// segment between stars that first matches at the very end of the text, so
/// every caveat scans the whole resource; the segments hold `?` (or are
/// long literals), so no search skips ahead. What varies is the trade
/// between how many caveats fit and how much each costs per character.
fn attacks(n: usize) -> Vec<Attack> {
    let a_then_b = format!("{}b", "a".repeat(n - 1));
    let wide_then_b = format!("{}b", "é".repeat((n - 1) / 2));
    let glob = |segment: String| format!("resource = *{segment}*");
    let longest = (n - 2).min(2030) / 2 * 2;
    vec![
        // As many caveats as fit (128) of one word of Shift-And state each.
        Attack {
            name: "64-char ? segments",
            caveats: fill(&glob(format!("{}ab", "a?".repeat(31)))),
            resource: a_then_b.clone(),
        },
        // 128 caveats of two words each: about the most words of state that fit.
        Attack {
            name: "110-char ? segments",
            caveats: fill(&glob(format!("{}ab", "a?".repeat(54)))),
            resource: a_then_b.clone(),
        },
        // The same over 2-byte characters, which cost the most per byte.
        Attack {
            name: "96-char ? segments, é text",
            caveats: fill(&glob(format!("{}éb", "é?".repeat(47)))),
            resource: wide_then_b.clone(),
        },
        Attack {
            name: "64-char ? segments, é text",
            caveats: fill(&glob(format!("{}éb", "é?".repeat(31)))),
            resource: wide_then_b,
        },
        // Few caveats, each the longest segment the resource can hold (W up to 32).
        Attack {
            name: "longest ? segment",
            caveats: fill(&glob(format!("{}b", "a?".repeat(longest / 2)))),
            resource: a_then_b.clone(),
        },
        // Literals long enough for memmem, whose searcher costs about 6 ns per needle byte to build.
        Attack { name: "110-byte literals", caveats: fill(&glob(format!("{}b", "a".repeat(109)))), resource: a_then_b },
        // Short segments, each found just past the probes, so each sets up a search.
        Attack {
            name: "short segments",
            caveats: fill(&format!("resource = {}*", "*a?b".repeat((n / 9).min(508)))),
            resource: "xxxxxaxb?".repeat(n / 9),
        },
    ]
}

fn glob_worst(c: &mut Criterion) {
    let mut group = c.benchmark_group("glob worst");
    // The finding: 2 KiB globs against a 300 KB resource (3 s for seven before).
    let text = "a".repeat(300_000);
    let run = "a".repeat(2030);
    let q = "a?".repeat(1014);
    for (name, pattern) in [
        ("reported *a…ab, 300 KB", format!("*{run}b")),
        ("*a…ab*, 300 KB", format!("*{run}b*")),
        ("*a?a?…ab* (W = 32), 300 KB", format!("*{q}ab*")),
    ] {
        group.bench_function(name, |b| b.iter(|| glob_match(black_box(&pattern), black_box(&text))));
    }
    // Within each bound: the longest `?` segment the resource holds, which
    // matches only at its end.
    for n in RESOURCE_BOUNDS {
        let text = format!("{}b", "a".repeat(n - 1));
        let pattern = format!("*{}b*", "a?".repeat((n - 2).min(2030) / 2));
        assert!(glob_match(&pattern, &text));
        group.bench_function(format!("longest ? segment, {n} B"), |b| {
            b.iter(|| glob_match(black_box(&pattern), black_box(&text)))
        });
    }
    group.finish();
}

fn evaluate_worst(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate worst");
    for n in RESOURCE_BOUNDS {
        let limits = FieldLimits { resource: n, ..FieldLimits::default() };
        for attack in attacks(n) {
            let fields = RequestFields::parse("", &attack.resource, "", "", "", "", &limits).expect("within the bound");
            let mut ctx = Context::at(SystemTime::now());
            ctx.resource = fields.resource;
            let caveats: Vec<&[u8]> = attack.caveats.iter().map(|c| c.as_bytes()).collect();
            assert!(evaluate(caveats.iter().copied(), &ctx).is_ok(), "{}: every caveat holds", attack.name);
            group.bench_function(format!("{n} B/{} ({} caveats)", attack.name, caveats.len()), |b| {
                b.iter(|| evaluate(black_box(caveats.iter().copied()), &ctx).is_ok())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, glob_worst, evaluate_worst);
criterion_main!(benches);
