//! Fuzzes the caveat language alone: parsing, printing back, address ranges,
//! globs and evaluation, each compared with the reference implementation in
//! `src/reference.rs`.
//!
//! The input is read as lines. A line `@NAME VALUE` sets a field of the
//! request (`action`, `resource`, `service`, `subject`, `org`, `role`, `ip`,
//! `now` as unix seconds or RFC 3339, `skew` in nanoseconds); `@NAME` alone
//! clears it. Every other line is a caveat. The whole input is a caveat too.
//!
//! Properties:
//! - `Predicate::parse_bytes` and `PredicateRef::parse_bytes` agree with
//!   each other and with the reference parser;
//! - a parsed caveat printed back in its plain form parses to the same
//!   predicate, and printing that again gives the same text;
//! - `Cidr` parses what the reference parses and agrees on membership;
//! - `glob_match` agrees with the reference glob;
//! - `evaluate`, `CompiledCaveats::evaluate` and the
//!   reference evaluator agree on the verdict, the failing caveat and its
//!   kind, and the claims; the verdict and the claims do not depend on the
//!   order of the caveats.

#![no_main]

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use tally_fuzz::reference::{self, Fail, Pred, Range};
use tally_token::{
    Cidr, Claims, CompiledCaveats, Context, Denial, DenialKind, Predicate, PredicateRef, evaluate, format_rfc3339,
    glob_match,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Largest pattern × text for which globs are compared (the reference is quadratic).
const GLOB_WORK: usize = 1 << 14;

/// 2030-03-17T17:46:40Z, the default `now`.
const DEFAULT_NOW: i128 = 1_900_000_000 * 1_000_000_000;

/// The plain printed form of a parsed caveat, or `None` for an instant
/// outside what RFC 3339 can print.
fn print(p: PredicateRef<'_>) -> Option<String> {
    let list = |l| PredicateRef::items(l).collect::<Vec<_>>().join(",");
    let instant = |t| Some(format_rfc3339(t)).filter(|s| !s.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
    Some(match p {
        PredicateRef::Org(v) => format!("org = {v}"),
        PredicateRef::Expires(t) => format!("expires < {}", instant(t)?),
        PredicateRef::NotBefore(t) => format!("not-before > {}", instant(t)?),
        PredicateRef::ActionIn(l) => format!("action in {}", list(l)),
        PredicateRef::Resource(v) => format!("resource = {v}"),
        PredicateRef::Service(v) => format!("service = {v}"),
        PredicateRef::Subject(v) => format!("subject = {v}"),
        PredicateRef::ClientIpIn(l) => format!("client-ip in {}", list(l)),
        PredicateRef::Role(v) => format!("role = {v}"),
    })
}

/// One caveat through every parser; returns what the reference read.
fn check_caveat(bytes: &[u8]) -> Option<Pred> {
    let lib = Predicate::parse_bytes(bytes);
    let reference = reference::parse(bytes);
    match (&lib, &reference) {
        (Ok(l), Some(r)) => assert!(reference::same(l, r), "{l:?} vs reference {r:?}"),
        (Err(_), None) => {}
        _ => panic!("parse {:?}: library {lib:?}, reference {reference:?}", String::from_utf8_lossy(bytes)),
    }
    let borrowed = PredicateRef::parse_bytes(bytes);
    assert_eq!(borrowed.map(PredicateRef::into_owned), lib);

    if let Some(text) = borrowed.ok().and_then(print) {
        let again = PredicateRef::parse(&text);
        assert_eq!(again.map(PredicateRef::into_owned), lib, "printed as {text:?}");
        assert_eq!(again.ok().and_then(print).as_deref(), Some(text.as_str()), "printing is not a fixpoint");
    }
    reference
}

/// An address range through `Cidr` and the reference.
fn check_range(text: &str, probes: &[IpAddr]) {
    let lib = text.parse::<Cidr>();
    let reference = Range::parse(text);
    assert_eq!(lib.is_ok(), reference.is_some(), "range {text:?}: {lib:?} vs {reference:?}");
    let (Ok(lib), Some(reference)) = (lib, reference) else { return };
    assert_eq!(reference.text().parse::<Cidr>(), Ok(lib), "{text:?} is not {}", reference.text());
    if let Some(addr) = text.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()) {
        // Except a range wider than the mapped block written with a mapped address.
        let mapped_in_v6 = reference.addr.is_ipv6() && matches!(addr, IpAddr::V6(a) if a.to_ipv4_mapped().is_some());
        assert!(lib.contains(addr) || mapped_in_v6, "{text:?} does not contain its own address");
    }
    for &ip in probes.iter().chain([reference.addr].iter()) {
        assert_eq!(lib.contains(ip), reference.contains(ip), "{text:?} contains {ip}?");
    }
}

fn check_glob(pattern: &str, text: &str) {
    if pattern.len().max(1) * text.len().max(1) <= GLOB_WORK {
        assert_eq!(glob_match(pattern, text), reference::glob(pattern, text), "glob {pattern:?} on {text:?}");
    }
}

/// The library's verdict against the reference's.
fn same_verdict(
    lib: &Result<Claims<'_>, Denial>,
    reference: &Result<reference::Claims, (usize, Fail)>,
    lines: &[&[u8]],
) {
    match (lib, reference) {
        (Ok(c), Ok(r)) => {
            assert_eq!(c.org, r.org.as_deref());
            assert_eq!(c.subject, r.subject.as_deref());
            assert_eq!(c.role, r.role.as_deref());
            assert_eq!(c.expires_unix_nanos, r.expires);
        }
        (Err(d), Err((i, fail))) => {
            assert_eq!(d.index, *i, "{d:?}");
            assert_eq!(d.caveat, String::from_utf8_lossy(lines[*i]));
            match (d.kind, fail) {
                (DenialKind::Expired, Fail::Expired)
                | (DenialKind::NotYetValid, Fail::NotYetValid)
                | (DenialKind::Unsatisfied, Fail::Unsatisfied)
                | (DenialKind::TooCostly, Fail::TooCostly) => {}
                (DenialKind::Invalid(e), Fail::Invalid) => assert_eq!(Err(e), Predicate::parse_bytes(lines[*i])),
                _ => panic!("denial {d:?}, reference {fail:?}"),
            }
            let _ = d.to_string();
        }
        _ => panic!("library {lib:?}, reference {reference:?}"),
    }
}

fn check_evaluation(lines: &[&[u8]], preds: &[Option<Pred>], ctx: &Context<'_>) {
    let raw = evaluate(lines.iter().copied(), ctx);
    assert_eq!(CompiledCaveats::compile(lines.iter().copied()).evaluate(ctx), raw);
    same_verdict(&raw, &reference::evaluate(preds, ctx), lines);
    // Caveats form a set: the order changes at most which failure is reported.
    let reversed = evaluate(lines.iter().rev().copied(), ctx);
    match (&raw, &reversed) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("order matters: {raw:?} then reversed {reversed:?}"),
    }
}

/// The request, built from `@` lines over a default with most fields set.
fn request<'a>(directives: &[(&str, Option<&'a str>)]) -> Context<'a> {
    let mut ctx = Context::at(std::time::UNIX_EPOCH);
    ctx.now_unix_nanos = DEFAULT_NOW;
    ctx.action = Some("read");
    ctx.resource = Some("apps/web/é/x");
    ctx.service = Some("web");
    ctx.client_ip = Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    for &(name, value) in directives {
        match name {
            "action" => ctx.action = value,
            "resource" => ctx.resource = value,
            "service" => ctx.service = value,
            "subject" => ctx.subject = value,
            "org" => ctx.org = value,
            "role" => ctx.role = value,
            "ip" => ctx.client_ip = value.and_then(|v| v.parse().ok()),
            "now" => {
                let now = value.and_then(|v| match v.parse::<i64>() {
                    Ok(secs) => Some(i128::from(secs) * 1_000_000_000),
                    Err(_) => OffsetDateTime::parse(v, &Rfc3339).ok().map(OffsetDateTime::unix_timestamp_nanos),
                });
                ctx.now_unix_nanos = now.unwrap_or(DEFAULT_NOW);
            }
            "skew" => {
                if let Some(skew) = value.and_then(|v| v.parse().ok()) {
                    ctx.skew_nanos = skew;
                }
            }
            _ => {}
        }
    }
    ctx
}

fuzz_target!(|data: &[u8]| {
    check_caveat(data);

    let mut directives = Vec::new();
    let mut lines: Vec<&[u8]> = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        match line.strip_prefix(b"@").map(std::str::from_utf8) {
            Some(Ok(d)) => directives.push(match d.split_once(' ') {
                Some((name, value)) => (name, Some(value)),
                None => (d, None),
            }),
            _ => lines.push(line),
        }
    }
    let ctx = request(&directives);
    let preds: Vec<Option<Pred>> = lines.iter().map(|l| check_caveat(l)).collect();

    let texts: Vec<Cow<'_, str>> = lines.iter().map(|l| String::from_utf8_lossy(l)).collect();
    let probes: Vec<IpAddr> = ctx.client_ip.into_iter().chain(texts.iter().filter_map(|t| t.parse().ok())).collect();
    for t in &texts {
        check_range(t, &probes);
        if let Some(resource) = ctx.resource {
            check_glob(t, resource);
        }
    }
    if let [pattern, text, ..] = texts.as_slice() {
        check_glob(pattern, text);
    }

    check_evaluation(&lines, &preds, &ctx);
    check_evaluation(
        &lines,
        &preds,
        &Context { now_unix_nanos: ctx.now_unix_nanos, ..Context::at(std::time::UNIX_EPOCH) },
    );
});
