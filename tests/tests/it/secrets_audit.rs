//! Secrets audit of a whole deployment: an authority and two verifiers at
//! debug log level run an end-to-end workload (mint, attenuate, checks that
//! miss, hit and hit a descendant, revocations, refused credentials, a forged
//! token, failing closed without the authority). Every line any process wrote
//! and the full `/metrics` text of all three must hold no token (text, body,
//! or any 16-character piece of either), no signature (the tokens' own
//! trailing 32 bytes and the genuine chain signatures, in hex or base64) and
//! not the KEK.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::{Reason, Source};
use tally_tests::bad_input::{attenuate, forge};
use tally_tests::{Authority, AuthorityOptions, DEADLINE, Verifier, VerifierOptions, bearer, eventually, scrape};
use tally_token::TEXT_PREFIX;
use tonic::{Code, Request};

/// Debug everywhere, trace for Tally's own crates.
const RUST_LOG: &str = "debug,tally_authority=trace,tally_verifier=trace,tally_token=trace";
/// A piece of a secret this long found anywhere is a leak.
const MIN_LEAK: usize = 16;
/// Short, so failing closed after the authority dies takes little time; far
/// above the harness's 200 ms heartbeat, so it does not trip before.
const FAIL_CLOSED_AFTER: Duration = Duration::from_millis(1500);
const METRICS: &str = "metrics on ";

/// Every text form of every secret, and each one's 16-byte windows.
#[derive(Debug, Default)]
struct Needles {
    /// (what, text form)
    forms: Vec<(String, String)>,
}

impl Needles {
    /// Bytes (a signature, a key) in hex and every base64 flavour.
    fn bytes(&mut self, what: &str, bytes: &[u8]) {
        let hex = hex::encode(bytes);
        for form in [
            hex.to_uppercase(),
            hex,
            STANDARD.encode(bytes),
            STANDARD_NO_PAD.encode(bytes),
            URL_SAFE.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
            format!("{bytes:?}"),
        ] {
            self.forms.push((what.into(), form));
        }
    }

    /// A token: its text, its body, the body in standard base64, and its
    /// trailing signature (the last 32 bytes of its V2 encoding).
    fn token(&mut self, what: &str, text: &str) {
        let body = text.strip_prefix(TEXT_PREFIX).unwrap_or(text);
        self.forms.push((what.into(), text.into()));
        let v2 = URL_SAFE_NO_PAD.decode(body).expect("a token's body is base64url");
        self.forms.push((format!("{what} (standard base64)"), STANDARD.encode(&v2)));
        self.bytes(&format!("{what} signature"), &v2[v2.len() - 32..]);
    }

    /// Leaks in `lines`: any `MIN_LEAK`-byte window of a line that is a
    /// window of some form.
    fn find(&self, source: &str, lines: &[String]) -> Vec<String> {
        let mut windows: HashSet<&[u8]> = HashSet::new();
        for (_, form) in &self.forms {
            windows.extend(form.as_bytes().windows(MIN_LEAK));
        }
        let mut found = Vec::new();
        for line in lines {
            if let Some(w) = line.as_bytes().windows(MIN_LEAK).find(|w| windows.contains(w)) {
                let what = self.forms.iter().find(|(_, f)| contains(f.as_bytes(), w)).map(|(what, _)| what);
                let piece = String::from_utf8_lossy(w);
                found.push(format!("{source}: a piece of {} ({piece}) in {line:?}", what.expect("from a form")));
            }
        }
        found
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn metrics_addr(v: &mut Verifier) -> SocketAddr {
    let line = v.process().wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await.unwrap();
    line[METRICS.len()..].trim().parse().unwrap()
}

fn check(bundle: &str, action: &str) -> pb::CheckRequest {
    pb::CheckRequest { bundle: bundle.into(), action: action.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line_or_metric() {
    let metrics_args = vec!["--metrics-listen".to_owned(), "127.0.0.1:0".to_owned()];
    let options =
        AuthorityOptions { rust_log: RUST_LOG.into(), serve_args: metrics_args.clone(), ..Default::default() };
    let mut a = Authority::start_with(options).await;
    let line = a.process().wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await.unwrap();
    let authority_metrics: SocketAddr = line[METRICS.len()..].trim().parse().unwrap();
    let boot = a.bootstrap().to_owned();
    let mut c = a.client();
    let verifier_token = a.system_token("verifier", &[]).await;
    let options = |region: &str| VerifierOptions {
        region: region.into(),
        fail_closed_after: FAIL_CLOSED_AFTER,
        rust_log: RUST_LOG.into(),
        args: metrics_args.clone(),
        ..VerifierOptions::default()
    };
    let mut eu = Verifier::start(&a.url(), &verifier_token, options("eu")).await;
    let mut us = Verifier::start(&a.url(), &verifier_token, options("us")).await;
    let eu_metrics = metrics_addr(&mut eu).await;
    let us_metrics = metrics_addr(&mut us).await;
    eu.wait_synced().await;
    us.wait_synced().await;

    let mut needles = Needles::default();
    needles.bytes("KEK", &hex::decode(a.kek_hex()).unwrap());
    let mut tokens = vec![("bootstrap token", boot.clone()), ("verifier token", verifier_token.clone())];

    // Mint and attenuate.
    a.create_org("acme").await;
    let mint = pb::MintRequest {
        org: "acme".into(),
        caveats: vec!["action in read,write".into()],
        subject: "alice".into(),
        ttl_seconds: 600,
        location: "https://tally.example".into(),
    };
    let minted = c.mint(bearer(mint, &boot)).await.unwrap().into_inner();
    let token = minted.token.clone();
    let child = attenuate(&token, &["action in read"]);
    let operator = a.system_token("operator", &["org = acme"]).await;
    tokens.extend([("minted token", token.clone()), ("attenuated token", child.clone()), ("acme operator", operator)]);

    // Checks: a cold miss, a hit, a descendant, in both regions; a denial by caveat.
    for v in [&eu, &us] {
        let mut sources = Vec::new();
        for req in [check(&token, "read"), check(&token, "write"), check(&child, "read"), check(&child, "write")] {
            let r = v.client().check(req).await.unwrap().into_inner();
            sources.push((r.allowed, r.source()));
        }
        let expected = [
            (true, Source::Authority),
            (true, Source::Cache),
            (true, Source::Descendant),
            (false, Source::Cache), // the descendant, cached by the check before, denies write
        ];
        assert_eq!(sources, expected);
    }

    // A forged token, garbage, and refused credentials.
    let forged = forge(&token);
    let r = eu.check(&forged, "read").await;
    assert_eq!((r.allowed, r.reason()), (false, Reason::Forged));
    // Malformed pieces of a real token: the errors must not quote them.
    for bad in ["tly_!!".to_owned(), token[..token.len() - 12].to_owned(), format!("{token},")] {
        let err = eu.client().check(check(&bad, "read")).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = c.verify(bearer(pb::VerifyRequest { bundle: bad.clone() }, &verifier_token)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = c.mint(bearer(pb::MintRequest { org: "acme".into(), ..Default::default() }, &bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let forged_boot = forge(&boot);
    let other = pb::MintRequest { org: "acme".into(), ..Default::default() };
    for (bearer_text, code) in [
        (forged_boot.as_str(), Code::Unauthenticated),
        (token.as_str(), Code::PermissionDenied),
        ("tly_", Code::Unauthenticated),
    ] {
        let err = c.mint(bearer(other.clone(), bearer_text)).await.unwrap_err();
        assert_eq!(err.code(), code);
    }
    let err = c.mint(Request::new(other.clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c.verify(bearer(pb::VerifyRequest { bundle: token.clone() }, &token)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    c.introspect(bearer(pb::IntrospectRequest { bundle: token.clone() }, &boot)).await.unwrap();
    // The genuine chain signatures, as the verifiers get them: from the
    // minted length to the presented token's.
    for t in [&token, &child] {
        let v = c.verify(bearer(pb::VerifyRequest { bundle: t.clone() }, &verifier_token)).await.unwrap().into_inner();
        let caveats = tally_token::Macaroon::from_text(t, &Default::default()).unwrap().caveats().len();
        assert_eq!(v.chain.len() + v.chain_from as usize, caveats + 1);
        for (k, sig) in v.chain.iter().enumerate() {
            let k = k + v.chain_from as usize;
            needles.bytes(&format!("chain signature {k}"), sig);
        }
    }

    // Revocations: the holder revokes the attenuated token (its branch), an
    // operator the whole family; both regions deny each within the deadline.
    let holder = pb::RevokeRequest { target: Some(Target::Token(child.clone())), reason: "audit".into() };
    let seq = c.revoke(Request::new(holder)).await.unwrap().into_inner().seq;
    for v in [&eu, &us] {
        v.wait_applied(seq).await;
        assert_eq!(v.check(&child, "read").await.reason(), Reason::Revoked);
        assert!(v.check(&token, "read").await.allowed, "the parent survives its branch");
    }
    let family = pb::RevokeRequest { target: Some(Target::Family(minted.family.clone())), reason: "audit".into() };
    let seq = c.revoke(bearer(family, &boot)).await.unwrap().into_inner().seq;
    for v in [&eu, &us] {
        v.wait_applied(seq).await;
        assert_eq!(v.check(&token, "read").await.reason(), Reason::Revoked);
    }

    // Fail closed: a cached token, then the authority dies.
    let last = a.mint("acme", &["action in read"]).await.token;
    tokens.push(("last token", last.clone()));
    for v in [&eu, &us] {
        assert!(v.check(&last, "read").await.allowed);
        assert!(v.check(&last, "read").await.allowed);
    }
    let authority_text = scrape(authority_metrics).await.unwrap();
    a.kill_9();
    for v in [&eu, &us] {
        eventually(DEADLINE, || async {
            let s = v.status().await;
            if s.fail_closed { Ok(()) } else { Err(format!("not failing closed yet: {s:?}")) }
        })
        .await;
        let r = v.check(&last, "read").await;
        assert_eq!((r.allowed, r.reason()), (false, Reason::AuthorityUnavailable));
    }
    let eu_text = scrape(eu_metrics).await.unwrap();
    let us_text = scrape(us_metrics).await.unwrap();
    eu.stop().await.unwrap();
    us.stop().await.unwrap();

    // The audit.
    tokens.extend([("forged token", forged), ("forged bearer", forged_boot)]);
    for (what, t) in &tokens {
        needles.token(what, t);
    }
    let lines = |v: &mut Verifier| {
        let p = v.process();
        let mut lines = p.stdout().snapshot();
        lines.extend(p.stderr().snapshot());
        lines
    };
    let sources: Vec<(&str, Vec<String>)> = vec![
        ("authority log", a.log_lines()),
        ("eu log", lines(&mut eu)),
        ("us log", lines(&mut us)),
        ("authority metrics", authority_text.lines().map(str::to_owned).collect()),
        ("eu metrics", eu_text.lines().map(str::to_owned).collect()),
        ("us metrics", us_text.lines().map(str::to_owned).collect()),
    ];
    let mut leaks = Vec::new();
    for (source, lines) in &sources {
        leaks.extend(needles.find(source, lines));
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));

    // The audit has teeth: debug logs and metrics were captured.
    for (source, lines) in &sources {
        assert!(lines.len() >= 10, "{source}: only {} lines", lines.len());
        if source.ends_with("log") {
            assert!(lines.iter().any(|l| l.contains("DEBUG") || l.contains("TRACE")), "{source}: debug logging is on");
        }
    }
    assert!(authority_text.contains("tally_authority_verify_total"), "{authority_text}");
    let total: usize = sources.iter().map(|(_, l)| l.len()).sum();
    println!(
        "{total} lines checked against {} forms of {} tokens and their signatures",
        needles.forms.len(),
        tokens.len()
    );
}

/// The search itself finds what it claims to.
#[test]
fn the_search_finds_planted_secrets() {
    let token = attenuate_offline();
    let mut needles = Needles::default();
    needles.token("token", &token);
    needles.bytes("key", &[0x5a; 32]);
    let body = &token[TEXT_PREFIX.len()..];
    let v2 = URL_SAFE_NO_PAD.decode(body).unwrap();
    let sig = &v2[v2.len() - 32..];
    for line in [
        format!("bearer {token}"),
        format!("piece {}…", &body[40..40 + MIN_LEAK]),
        format!("sig={}", hex::encode(sig)),
        format!("sig=\"{}\"", STANDARD.encode(sig)),
        format!("sig {}", &URL_SAFE_NO_PAD.encode(sig)[3..3 + MIN_LEAK]),
        format!("key {}", hex::encode_upper([0x5a; 32])),
        format!("std {}", STANDARD.encode(&v2)),
    ] {
        assert_eq!(needles.find("test", std::slice::from_ref(&line)).len(), 1, "not found in {line:?}");
    }
    let clean = "DEBUG tally_verifier: check family=8a095e0f427a0c56917c6555400a3242 source=cache allowed=true";
    assert!(needles.find("test", &[clean.to_owned()]).is_empty());
}

fn attenuate_offline() -> String {
    let mut m = tally_token::Macaroon::mint(&tally_token::RootKey::from_bytes([3; 32]), b"identifier".to_vec(), None);
    m.add_first_party("action in read");
    m.add_first_party("resource = apps/web/*");
    m.to_text()
}
