//! Fuzzes everything `tally-token` does with untrusted input: V2 binary and
//! text decoding, bundle parsing, the caveat language, evaluation, prefix
//! keys and verification. Nothing may panic, and a few properties must hold:
//!
//! - whatever decodes re-encodes (binary and text) to an equal macaroon;
//! - a parsed bundle re-serialises to an equal bundle;
//! - `CompiledCaveats::evaluate` agrees with `evaluate`;
//! - `prefix_keys` has one key per prefix and agrees with `prefix_key`;
//! - a token re-signed under the fixed key never fails verification with
//!   `BadSignature`, and a verified chain is consistent with `continue_chain`;
//! - decoding under tighter limits never accepts what the defaults reject.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use tally_token::{
    Bundle, Caveat, CompiledCaveats, Context, DerivedKey, Error, Limits, Macaroon, Predicate, RootKey, TallyId,
    continue_chain, evaluate, format_rfc3339, prefix_key, prefix_keys, verify_with_key,
};

/// The key the seed tokens are minted under (see README.md).
const ROOT_KEY: [u8; 32] = [0x42; 32];

fn root_key() -> DerivedKey {
    RootKey::from_bytes(ROOT_KEY).derive()
}

/// A request with most fields set, at 2030-03-17T17:46:40Z.
fn fixed_ctx() -> Context<'static> {
    let mut c = Context::at(UNIX_EPOCH + Duration::from_secs(1_900_000_000));
    c.action = Some("read");
    c.resource = Some("apps/web/é/x");
    c.service = Some("web");
    c.client_ip = Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    c.org = Some("acme");
    c.role = Some("operator");
    c
}

/// A request whose string fields are the fuzz input itself (so globs and
/// sets are matched against arbitrary text), over IPv6, with zero skew.
fn input_ctx(text: &str) -> Context<'_> {
    let mut c = Context::at(UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    c.skew_nanos = 0;
    c.action = Some(text);
    c.resource = Some(text);
    c.service = Some(text);
    c.subject = Some(text);
    c.org = Some(text);
    c.role = Some(text);
    c.client_ip = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
    c
}

fn small_limits() -> Limits {
    Limits { max_token_bytes: 512, max_caveats: 3, max_field_bytes: 40, max_discharges: 2, max_depth: 1 }
}

/// Parses and evaluates one caveat's bytes both ways.
fn check_caveat_bytes(bytes: &[u8], ctxs: &[Context<'_>]) {
    let parsed = CompiledCaveats::compile([bytes]);
    if let Ok(Predicate::Expires(t) | Predicate::NotBefore(t)) = &Predicate::parse_bytes(bytes) {
        // Timestamps the parser produced format back to RFC 3339 (UTC) that
        // parses to the same instant, unless outside what RFC 3339 can print.
        let formatted = format_rfc3339(*t);
        if !formatted.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            assert_eq!(Predicate::parse(&format!("expires < {formatted}")), Ok(Predicate::Expires(*t)), "{formatted}");
        }
    }
    for ctx in ctxs {
        let raw = evaluate([bytes], ctx);
        assert_eq!(raw, parsed.evaluate(ctx));
        if let Err(denial) = raw {
            let _ = denial.to_string();
        }
    }
}

/// Everything that can be done with one decoded macaroon.
fn check_macaroon(m: &Macaroon, limits: &Limits, ctxs: &[Context<'_>]) {
    // (a) Round trips: binary and text.
    let bytes = m.encode_v2();
    let back = Macaroon::decode_v2(&bytes, limits).expect("re-encoded macaroon must decode");
    assert_eq!(&back, m, "binary round trip");
    let text = m.to_text();
    let back = Macaroon::from_text(&text, limits).expect("re-encoded text must decode");
    assert_eq!(&back, m, "text round trip");

    // (c) Every caveat through the caveat language and evaluation.
    let first_party: Vec<&[u8]> = m.caveats().iter().filter(|c| !c.is_third_party()).map(|c| c.id.as_slice()).collect();
    for c in m.caveats() {
        check_caveat_bytes(&c.id, ctxs);
    }
    let parsed = CompiledCaveats::compile(first_party.iter().copied());
    for ctx in ctxs {
        let raw = evaluate(first_party.iter().copied(), ctx);
        assert_eq!(raw, parsed.evaluate(ctx));
        if let Ok(claims) = raw {
            if let Some(t) = claims.expires_unix_nanos {
                let _ = format_rfc3339(t);
            }
        }
    }

    // (e) Prefix keys.
    let keys = prefix_keys(m.identifier(), m.caveats());
    assert_eq!(keys.len(), m.caveats().len() + 1);
    assert_eq!(keys[0], prefix_key(m.identifier(), &[]));
    assert_eq!(*keys.last().unwrap(), prefix_key(m.identifier(), m.caveats()));

    // Identifier layout.
    if let Ok(id) = TallyId::decode(m.identifier()) {
        assert_eq!(id.encode(), m.identifier());
        assert_eq!(TallyId::decode(&id.encode()), Ok(id));
    }
}

/// `m` with its signature recomputed under the fixed root key, so that
/// verification gets past the root chain and into the caveats.
fn resign(m: &Macaroon) -> Macaroon {
    let start = Macaroon::mint_with_derived(&root_key(), m.identifier().to_vec(), None);
    let sig = continue_chain(start.signature(), m.caveats());
    Macaroon::from_parts(m.location().map(str::to_owned), m.identifier().to_vec(), m.caveats().to_vec(), sig)
}

/// (e) Verification of a bundle under the fixed key, as is and with a
/// re-signed root token.
fn check_bundle(bundle: &Bundle, limits: &Limits, ctxs: &[Context<'_>]) {
    let key = root_key();
    check_verified(bundle, &key, limits, ctxs);

    let resigned = Bundle { root: resign(&bundle.root), discharges: bundle.discharges.clone() };
    match verify_with_key(&resigned, &key, limits) {
        Err(Error::BadSignature) => panic!("re-signed root token failed its own chain"),
        _ => check_verified(&resigned, &key, limits, ctxs),
    }
}

fn check_verified(bundle: &Bundle, key: &DerivedKey, limits: &Limits, ctxs: &[Context<'_>]) {
    let Ok(v) = verify_with_key(bundle, key, limits) else { return };
    let root = &bundle.root;
    assert_eq!(v.chain.len(), root.caveats().len() + 1);
    assert_eq!(v.chain.last(), Some(root.signature()));
    assert_eq!(&continue_chain(&v.chain[0], root.caveats()), root.signature());
    let root_first_party = root.caveats().iter().filter(|c| !c.is_third_party()).count();
    assert!(v.first_party.len() >= root_first_party);
    assert_eq!(v.id, TallyId::decode(root.identifier()).ok());
    let ids = v.revocation_ids();
    assert_eq!(ids.len(), if v.id.is_some() { v.chain.len() + 1 } else { 0 });
    let parsed = CompiledCaveats::compile(v.first_party.iter().copied());
    for ctx in ctxs {
        assert_eq!(evaluate(v.first_party.iter().copied(), ctx), parsed.evaluate(ctx));
    }
    // A verified token is also a prefix of its attenuations.
    let mut extended = root.clone();
    extended.add_first_party("action in read");
    let tail: &[Caveat] = &extended.caveats()[root.caveats().len()..];
    assert_eq!(&continue_chain(root.signature(), tail), extended.signature());
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let lossy = String::from_utf8_lossy(data);
    let ctxs = [fixed_ctx(), input_ctx(&lossy)];

    // (a) V2 binary.
    if let Ok(m) = Macaroon::decode_v2(data, &limits) {
        check_macaroon(&m, &limits, &ctxs);
        check_bundle(&Bundle::single(m), &limits, &ctxs);
    }
    // Tighter limits only ever reject more.
    if let Ok(m) = Macaroon::decode_v2(data, &small_limits()) {
        assert_eq!(Macaroon::decode_v2(data, &limits).as_ref(), Ok(&m));
    }

    // Identifier layout on the raw bytes.
    if let Ok(id) = TallyId::decode(data) {
        assert_eq!(id.encode(), data);
    }

    let Ok(text) = std::str::from_utf8(data) else {
        // Still a caveat candidate: non-UTF-8 must be a parse error.
        assert!(Predicate::parse_bytes(data).is_err());
        check_caveat_bytes(data, &ctxs);
        return;
    };

    // (b) Text: bundle, single token.
    if let Ok(bundle) = Bundle::parse(text, &limits) {
        check_macaroon(&bundle.root, &limits, &ctxs);
        for d in &bundle.discharges {
            check_macaroon(d, &limits, &ctxs);
        }
        let again = Bundle::parse(&bundle.to_text(), &limits).expect("re-serialised bundle must parse");
        assert_eq!(again, bundle, "bundle round trip");
        check_bundle(&bundle, &limits, &ctxs);
    }
    if let Ok(m) = Macaroon::from_text(text, &limits) {
        check_macaroon(&m, &limits, &ctxs);
    }

    // (d) The whole input as one caveat.
    let direct = Predicate::parse(text);
    assert_eq!(direct, Predicate::parse_bytes(data));
    check_caveat_bytes(data, &ctxs);
    // And each line of it, so one input can carry several caveats.
    if text.contains('\n') {
        let lines: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
        for line in &lines {
            let _ = Predicate::parse(std::str::from_utf8(line).unwrap());
        }
        let parsed = CompiledCaveats::compile(lines.iter().copied());
        for ctx in &ctxs {
            assert_eq!(evaluate(lines.iter().copied(), ctx), parsed.evaluate(ctx));
        }
    }
});
