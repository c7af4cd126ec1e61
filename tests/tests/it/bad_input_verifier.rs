//! Bad input to every RPC of the real `tally-verifier` (Check, Status), one
//! table row per request: malformed, oversized, empty and wrong-type tokens,
//! bad request fields, protobuf that does not decode. Each row asserts the
//! exact gRPC status code (and, for denials, the reason); after each, both
//! processes still run, answer their health checks and never logged
//! "panicked"; the verifier's stream position did not move, and malformed
//! input reached neither its cache nor the authority.

use std::time::Duration;

use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_tests::bad_input::{Expect, attenuate, bad_bundles, forge, key_id_of, stranger};
use tally_tests::raw::{self, RawReply};
use tally_tests::{Authority, DEADLINE, Verifier, VerifierOptions, bearer};
use tally_token::{KeyId, TallyId};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};

/// Over the server's 1 MiB message limit.
const HUGE: usize = 2 << 20;
const SERVICE: &str = "tally.v1.Verifier";

#[derive(Debug, Clone)]
enum Call {
    Check(pb::CheckRequest),
    /// Status with this `authorization` metadata, if any.
    Status(Option<String>),
    /// A hand-framed request to `/tally.v1.Verifier/METHOD` (see `raw`).
    Raw {
        method: &'static str,
        body: String,
        authorization: Option<Vec<u8>>,
    },
}

async fn run(v: &Verifier, call: Call) -> Result<String, Status> {
    let mut c = v.client();
    match call {
        Call::Check(req) => c.check(req).await.map(|r| {
            let r = r.into_inner();
            format!("allowed={} reason={:?}", r.allowed, r.reason())
        }),
        Call::Status(auth) => {
            let mut req = Request::new(pb::StatusRequest {});
            if let Some(a) = auth {
                req.metadata_mut().insert("authorization", MetadataValue::try_from(a.as_str()).expect("ASCII"));
            }
            c.status(req).await.map(|r| format!("region={}", r.into_inner().region))
        }
        Call::Raw { method, body, authorization } => {
            let channel = raw::channel(v.addr()).await.map_err(|e| Status::unknown(e.to_string()))?;
            let headers: Vec<(&str, &[u8])> =
                authorization.as_deref().map(|v| ("authorization", v)).into_iter().collect();
            let reply: RawReply = raw::call(&channel, &format!("/{SERVICE}/{method}"), &headers, body)
                .await
                .map_err(|e| Status::unknown(format!("raw call failed: {e:#}")))?;
            if reply.code == Code::Ok {
                Ok(format!("{} reply messages", reply.messages.len()))
            } else {
                Err(Status::new(reply.code, reply.message))
            }
        }
    }
}

fn check(bundle: &str, action: &str) -> pb::CheckRequest {
    pb::CheckRequest { bundle: bundle.into(), action: action.into(), resource: "public/x".into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verifier_rpc_refuses_bad_input_exactly() {
    let mut a = Authority::start().await;
    let boot = a.bootstrap().to_owned();
    let mut c = a.client();
    a.create_org("acme").await;
    a.create_org("beta").await;
    let old_acme = a.mint("acme", &[]).await.token;
    c.rotate_key(bearer(pb::RotateKeyRequest { org: "acme".into() }, &boot)).await.unwrap();
    let retire = pb::RetireKeyRequest { key_id: key_id_of(&old_acme).0 };
    c.retire_key(bearer(retire, &boot)).await.unwrap();
    let acme_tok = a.mint("acme", &["action in read", "resource = public/*"]).await.token;
    let beta_tok = a.mint("beta", &[]).await.token;
    let revoked = a.mint("acme", &[]).await.token;
    let by_holder = pb::RevokeRequest { target: Some(Target::Token(revoked.clone())), reason: String::new() };
    let seq = c.revoke(Request::new(by_holder)).await.unwrap().into_inner().seq;
    let verifier_token = a.system_token("verifier", &[]).await;
    let options = VerifierOptions { fail_closed_after: Duration::from_secs(30), ..VerifierOptions::default() };
    let mut v = Verifier::start(&a.url(), &verifier_token, options).await;
    v.wait_synced().await;
    v.wait_applied(seq).await;
    // Warm the cache: the genuine token is an exact hit from now on.
    let warm = v.client().check(check(&acme_tok, "read")).await;
    assert!(warm.unwrap().into_inner().allowed);

    let long_ago = "expires < 2001-01-01T00:00:00Z";
    let acme_key = key_id_of(&acme_tok);
    let mut rows: Vec<(String, Call, Expect)> = Vec::new();
    let e = Expect::Err;

    // Check: malformed and oversized bundles, with and without a cached parent.
    for (name, bundle) in bad_bundles(&acme_tok) {
        rows.push((format!("Check: {name}"), Call::Check(check(&bundle, "read")), e(Code::InvalidArgument)));
    }
    let huge = format!("tly_{}", "A".repeat(HUGE));
    rows.push(("Check: over the message limit".into(), Call::Check(check(&huge, "read")), e(Code::OutOfRange)));
    // Check: bad request fields.
    for (name, ip) in [
        ("not an address", "not-an-ip".to_owned()),
        ("a CIDR", "10.0.0.0/8".into()),
        ("octet out of range", "999.1.1.1".into()),
        ("bad IPv6", "::ffff:zz".into()),
        ("address with a port", "127.0.0.1:80".into()),
    ] {
        let req = pb::CheckRequest { client_ip: ip, ..check(&acme_tok, "read") };
        rows.push((format!("Check client_ip: {name}"), Call::Check(req), e(Code::InvalidArgument)));
    }
    // Every field is bounded (a caveat's cost grows with the text it is
    // matched against): one byte over its bound, and 100 KB.
    let limits = tally_token::FieldLimits::default();
    let base = || check(&acme_tok, "read");
    for n in [1, 100_000] {
        for (field, req) in [
            ("action", pb::CheckRequest { action: "r".repeat(limits.action + n), ..base() }),
            ("resource", pb::CheckRequest { resource: "p".repeat(limits.resource + n), ..base() }),
            ("service", pb::CheckRequest { service: "s".repeat(limits.service + n), ..base() }),
            ("subject", pb::CheckRequest { subject: "u".repeat(limits.subject + n), ..base() }),
            ("org", pb::CheckRequest { org: "o".repeat(limits.org + n), ..base() }),
        ] {
            rows.push((
                format!("Check: {field} {n} byte(s) over its bound"),
                Call::Check(req),
                e(Code::InvalidArgument),
            ));
        }
    }
    for org in ["Acme", "acme corp", "acme/x", "ácme"] {
        let req = pb::CheckRequest { org: org.into(), ..base() };
        rows.push((format!("Check: org {org:?} is no org name"), Call::Check(req), e(Code::InvalidArgument)));
    }
    let at_bound = pb::CheckRequest { resource: "p".repeat(limits.resource), ..base() };
    rows.push(("Check: a resource at its bound is checked".into(), Call::Check(at_bound), Expect::Ok("allowed=")));
    // Check: well-formed tokens that must be denied, each for its reason.
    let denials: Vec<(&str, pb::CheckRequest, &'static str)> = vec![
        ("forged", check(&forge(&acme_tok), "read"), "allowed=false reason=Forged"),
        ("forged, uncached", check(&forge(&beta_tok), "read"), "allowed=false reason=Forged"),
        (
            "a stranger's key",
            check(&stranger(TallyId::new(acme_key, [9; 16]).encode()), "read"),
            "allowed=false reason=Forged",
        ),
        (
            "an unknown key id",
            check(&stranger(TallyId::new(KeyId(9999), [9; 16]).encode()), "read"),
            "allowed=false reason=UnknownKey",
        ),
        (
            "a foreign identifier",
            check(&stranger(b"not a tally id".to_vec()), "read"),
            "allowed=false reason=UnknownKey",
        ),
        ("expired", check(&attenuate(&acme_tok, &[long_ago]), "read"), "allowed=false reason=Expired"),
        (
            "not yet valid",
            check(&attenuate(&acme_tok, &["not-before > 2099-01-01T00:00:00Z"]), "read"),
            "allowed=false reason=NotYetValid",
        ),
        ("revoked", check(&revoked, "read"), "allowed=false reason=Revoked"),
        ("retired key", check(&old_acme, "read"), "allowed=false reason=RetiredKey"),
        ("unknown caveat", check(&attenuate(&acme_tok, &["frobnicate ~ yes"]), "read"), "reason=CaveatFailed"),
        ("binary caveat", check(&attenuate(&acme_tok, &["\u{0}\u{1}\u{7f}"]), "read"), "reason=CaveatFailed"),
        ("unrelated discharge", check(&format!("{acme_tok},{beta_tok}"), "read"), "reason=DischargeInvalid"),
        ("no action", check(&acme_tok, ""), "allowed=false reason=CaveatFailed"),
        (
            "another subject",
            pb::CheckRequest {
                subject: "mallory".into(),
                ..check(&attenuate(&acme_tok, &["subject = alice"]), "read")
            },
            "allowed=false reason=CaveatFailed",
        ),
        ("a Tally API token", check(&verifier_token, "read"), "allowed=false reason=CaveatFailed"),
        ("the bootstrap operator token", check(&boot, "read"), "allowed=false reason=CaveatFailed"),
    ];
    for (name, req, reply) in denials {
        rows.push((format!("Check: {name}"), Call::Check(req), Expect::Ok(reply)));
    }
    // Check and Status ignore credentials: bad ones change nothing.
    let latin1 = Some(b"Bearer \xe9\xff".to_vec());
    let check_body = raw::frame("\n\x04tly_").unwrap();
    let call = Call::Raw { method: "Check", body: check_body, authorization: latin1.clone() };
    rows.push(("Check: non-ASCII authorization, bad bundle".into(), call, e(Code::InvalidArgument)));
    for (name, auth) in [("garbage bearer", "Bearer tly_!!"), ("basic auth", "Basic Zm9vOmJhcg==")] {
        rows.push((format!("Status: {name}"), Call::Status(Some(auth.into())), Expect::Ok("region=eu")));
    }
    let call = Call::Raw { method: "Status", body: raw::frame("").unwrap(), authorization: latin1 };
    rows.push(("Status: non-ASCII authorization".into(), call, Expect::Ok("1 reply messages")));
    // Protobuf that does not decode, unknown fields, unknown methods.
    for (method, name, msg, expect) in [
        ("Check", "bundle as a varint", "\x08\x01", e(Code::Internal)),
        ("Check", "truncated message", "\n\x05ab", e(Code::Internal)),
        ("Check", "field number 0", "\x00\x01", e(Code::Internal)),
        ("Check", "unknown field only (an empty bundle)", "\x78\x01", e(Code::InvalidArgument)),
        ("Status", "unknown field", "\x08\x01", Expect::Ok("1 reply messages")),
        ("Status", "truncated message", "\n\x05ab", e(Code::Internal)),
        ("Frobnicate", "unknown method", "", e(Code::Unimplemented)),
    ] {
        let call = Call::Raw { method, body: raw::frame(msg).unwrap(), authorization: None };
        rows.push((format!("{method}: {name}"), call, expect));
    }
    for (name, body) in [
        ("frame header cut short", "\0\0".to_owned()),
        ("frame longer than its body", "\0\0\0\0\x09\n\x04tly_".to_owned()),
        ("compressed flag without an encoding", format!("\x01{}", &raw::frame("\n\x04tly_").unwrap()[1..])),
    ] {
        let call = Call::Raw { method: "Check", body, authorization: None };
        rows.push((format!("Check: {name}"), call, e(Code::Internal)));
    }

    // Run the table.
    let v_channel = raw::channel(v.addr()).await.unwrap();
    let a_channel = raw::channel(a.addr()).await.unwrap();
    let before = v.status().await;
    let mut failures = Vec::new();
    let total = rows.len();
    for (name, call, expect) in rows {
        let prior = v.status().await;
        let got = tokio::time::timeout(DEADLINE, run(&v, call)).await;
        let got = got.unwrap_or_else(|_| Err(Status::deadline_exceeded("the call hung")));
        let ok = match (&got, expect) {
            (Err(s), Expect::Err(code)) => s.code() == code,
            (Ok(summary), Expect::Ok(text)) => summary.contains(text),
            _ => false,
        };
        if !ok {
            let got = got.as_ref().map_err(|s| format!("{:?}: {}", s.code(), s.message()));
            failures.push(format!("{name}: expected {expect:?}, got {got:?}"));
        }
        if let Err(e) = raw::assert_alive(v.process(), &v_channel, SERVICE).await {
            panic!("verifier, after row {name:?}: {e:#}");
        }
        if let Err(e) = raw::assert_alive(a.process(), &a_channel, "tally.v1.Authority").await {
            panic!("authority, after row {name:?}: {e:#}");
        }
        let after = v.status().await;
        if (after.applied_seq, after.head_seq, after.resets) != (before.applied_seq, before.head_seq, before.resets) {
            failures.push(format!("{name}: the stream position moved: {before:?} → {after:?}"));
        }
        if got.is_err()
            && (after.cache_entries, after.authority_verifies) != (prior.cache_entries, prior.authority_verifies)
        {
            failures.push(format!("{name}: refused input reached the cache or the authority: {prior:?} → {after:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {total} rows failed:\n{}", failures.len(), failures.join("\n"));
    assert!(v.status().await.synced, "still synced");
    println!("{total} rows passed");
}
