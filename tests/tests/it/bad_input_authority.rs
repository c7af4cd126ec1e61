//! Bad input to every RPC of the real `tally-authority`, one table row per
//! request: malformed, oversized, empty, wrong-type and unauthenticated. Each
//! row asserts the exact gRPC status code; after each, the process still runs,
//! answers its health check and never logged "panicked", and nothing was
//! written: the database (opened read-only beside it) has the same rows, the
//! list RPCs answer the same, and the revocation stream's head did not move.

use sqlx::{AnyConnection, Connection};
use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::subscribe_event::Event;
use tally_tests::bad_input::{Expect, attenuate, bad_bundles, family_of, forge, key_id_of, stranger};
use tally_tests::raw::{self, RawReply};
use tally_tests::{Authority, DEADLINE, bearer};
use tally_token::{KeyId, TallyId};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};

/// Over the server's 1 MiB message limit.
const HUGE: usize = 2 << 20;
const SERVICE: &str = "tally.v1.Authority";

/// How a row presents itself.
#[derive(Debug, Clone)]
enum Auth {
    /// No `authorization` metadata.
    Anonymous,
    /// `authorization: Bearer TOKEN`.
    Bearer(String),
    /// `authorization: VALUE` exactly (visible ASCII).
    Header(String),
}

/// One RPC with its message.
#[derive(Debug, Clone)]
enum Call {
    CreateOrg(String),
    ListOrgs,
    RotateKey(String),
    RetireKey(u64),
    ListKeys(String),
    Mint(pb::MintRequest),
    Verify(String),
    Revoke(pb::RevokeRequest),
    Introspect(String),
    Subscribe(pb::SubscribeRequest),
    ListAudit(pb::ListAuditRequest),
    Status,
    /// A hand-framed request to `/tally.v1.Authority/METHOD` (see `raw`):
    /// protobuf bytes and header bytes the generated client cannot send.
    Raw {
        method: &'static str,
        body: String,
        authorization: Option<Vec<u8>>,
    },
}

#[derive(Debug)]
struct Row {
    name: String,
    auth: Auth,
    call: Call,
    expect: Expect,
}

fn row(name: impl Into<String>, auth: &Auth, call: Call, expect: Expect) -> Row {
    Row { name: name.into(), auth: auth.clone(), call, expect }
}

fn request<T>(msg: T, auth: &Auth) -> Request<T> {
    match auth {
        Auth::Anonymous => Request::new(msg),
        Auth::Bearer(t) => bearer(msg, t),
        Auth::Header(v) => {
            let mut req = Request::new(msg);
            req.metadata_mut().insert("authorization", MetadataValue::try_from(v.as_str()).expect("ASCII header"));
            req
        }
    }
}

fn summary<T>(r: Result<tonic::Response<T>, Status>, f: impl FnOnce(T) -> String) -> Result<String, Status> {
    r.map(|r| f(r.into_inner()))
}

/// Runs one row: the reply's summary, or the status.
async fn run(a: &Authority, auth: &Auth, call: Call) -> Result<String, Status> {
    let mut c = a.client();
    match call {
        Call::CreateOrg(org) => summary(c.create_org(request(pb::CreateOrgRequest { org }, auth)).await, |r| {
            format!("created {} key {}", r.org, r.key_id)
        }),
        Call::Status => summary(c.status(request(pb::AuthorityStatusRequest {}, auth)).await, |r| {
            format!("vouching={}", r.vouching)
        }),
        Call::ListOrgs => {
            summary(c.list_orgs(request(pb::ListOrgsRequest {}, auth)).await, |r| format!("{} orgs", r.orgs.len()))
        }
        Call::RotateKey(org) => summary(c.rotate_key(request(pb::RotateKeyRequest { org }, auth)).await, |r| {
            format!("rotated {} to {}", r.org, r.key_id)
        }),
        Call::RetireKey(key_id) => summary(c.retire_key(request(pb::RetireKeyRequest { key_id }, auth)).await, |r| {
            format!("retired {} at {}", r.key_id, r.seq)
        }),
        Call::ListKeys(org) => {
            summary(c.list_keys(request(pb::ListKeysRequest { org }, auth)).await, |r| format!("{} keys", r.keys.len()))
        }
        Call::Mint(m) => summary(c.mint(request(m, auth)).await, |r| format!("minted family {}", r.family)),
        Call::Verify(bundle) => summary(c.verify(request(pb::VerifyRequest { bundle }, auth)).await, |r| {
            format!("valid={} reason={:?} chain={}", r.valid, r.reason(), r.chain.len())
        }),
        Call::Revoke(r) => summary(c.revoke(request(r, auth)).await, |r| format!("revoked at {}", r.seq)),
        Call::Introspect(bundle) => summary(c.introspect(request(pb::IntrospectRequest { bundle }, auth)).await, |r| {
            format!("active={} reason={:?}", r.active, r.reason())
        }),
        Call::Subscribe(s) => {
            let mut stream = c.subscribe(request(s, auth)).await?.into_inner();
            let first = tokio::time::timeout(DEADLINE, stream.message())
                .await
                .map_err(|_| Status::deadline_exceeded("no first event"))??;
            Ok(match first.and_then(|e| e.event) {
                Some(Event::Reset(r)) => format!("first=reset head={}", r.head_seq),
                Some(Event::Heartbeat(h)) => format!("first=heartbeat head={}", h.head_seq),
                Some(Event::Revocation(r)) => format!("first=revocation seq={}", r.seq),
                None => "first=end".into(),
            })
        }
        Call::ListAudit(q) => summary(c.list_audit(request(q, auth)).await, |r| format!("entries={}", r.entries.len())),
        Call::Raw { method, body, authorization } => {
            let channel = raw::channel(a.addr()).await.map_err(|e| Status::unknown(e.to_string()))?;
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

/// What the authority holds: database rows and what the list RPCs say.
#[derive(Debug, PartialEq, Eq)]
struct State {
    rows: Vec<(&'static str, String)>,
    orgs: Vec<String>,
    keys: Vec<String>,
}

/// Row counts (and a few values) of every table, read-only, in SQL both
/// stores understand. Audit rows of refusals are expected (refusals are
/// audited), so only the others count.
async fn state(a: &Authority, db: &mut AnyConnection) -> State {
    let mut rows = Vec::new();
    let meta: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value FROM meta ORDER BY name").fetch_all(&mut *db).await.expect("meta");
    rows.push(("meta", meta.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(";")));
    let orgs: Vec<String> =
        sqlx::query_scalar("SELECT org FROM orgs ORDER BY org").fetch_all(&mut *db).await.expect("orgs");
    rows.push(("orgs", format!("{} {}", orgs.len(), orgs.join(","))));
    let (n, retired, max): (i64, i64, i64) =
        sqlx::query_as("SELECT count(*), count(retired_at), coalesce(max(key_id), 0) FROM root_keys")
            .fetch_one(&mut *db)
            .await
            .expect("root_keys");
    rows.push(("root_keys", format!("{n} retired {retired} max {max}")));
    let (n, max): (i64, i64) = sqlx::query_as("SELECT count(*), coalesce(max(seq), 0) FROM revocations")
        .fetch_one(&mut *db)
        .await
        .expect("revocations");
    rows.push(("revocations", format!("{n} max seq {max}")));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens").fetch_one(&mut *db).await.expect("tokens");
    rows.push(("tokens", n.to_string()));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit WHERE outcome <> 'denied'")
        .fetch_one(&mut *db)
        .await
        .expect("audit");
    rows.push(("audit (not refusals)", n.to_string()));
    let boot = a.bootstrap();
    let mut c = a.client();
    let orgs = c.list_orgs(bearer(pb::ListOrgsRequest {}, boot)).await.expect("ListOrgs").into_inner().orgs;
    let mut keys = Vec::new();
    for o in &orgs {
        let list = c.list_keys(bearer(pb::ListKeysRequest { org: o.org.clone() }, boot)).await.expect("ListKeys");
        for k in list.into_inner().keys {
            keys.push(format!("{} {} retired={} current={}", k.key_id, k.org, k.retired_at_unix_ms, k.current));
        }
    }
    let orgs = orgs.iter().map(|o| format!("{} current={}", o.org, o.current_key_id)).collect();
    State { rows, orgs, keys }
}

/// The revocation stream's head, from the first heartbeat.
async fn stream_head(a: &Authority, verifier: &str) -> u64 {
    let req = pb::SubscribeRequest { from_seq: 0, epoch: String::new(), from_digest: Vec::new() };
    let mut stream = a.client().subscribe(bearer(req, verifier)).await.expect("Subscribe").into_inner();
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(Event::Heartbeat(hb)) = stream.message().await.expect("stream").expect("not ended").event {
                return hb.head_seq;
            }
        }
    })
    .await
    .expect("a heartbeat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authority_rpc_refuses_bad_input_exactly_and_writes_nothing() {
    let mut a = Authority::start().await;
    let boot = a.bootstrap().to_owned();
    let mut c = a.client();

    // Fixtures, all written before the baseline.
    a.create_org("acme").await;
    let beta_key = a.create_org("beta").await;
    let old_acme_tok = a.mint("acme", &[]).await.token;
    let acme_old = key_id_of(&old_acme_tok).0;
    c.rotate_key(bearer(pb::RotateKeyRequest { org: "acme".into() }, &boot)).await.unwrap();
    c.retire_key(bearer(pb::RetireKeyRequest { key_id: acme_old }, &boot)).await.unwrap();
    let verifier = a.system_token("verifier", &[]).await;
    let acme_op = a.system_token("operator", &["org = acme"]).await;
    let mint_only = a.system_token("operator", &["action in mint"]).await;
    let system_scoped = a.system_token("operator", &["org = system"]).await;
    let revoked_op = a.system_token("operator", &[]).await;
    let revoke_family = |f: String| pb::RevokeRequest { target: Some(Target::Family(f)), reason: String::new() };
    c.revoke(bearer(revoke_family(family_of(&revoked_op)), &boot)).await.unwrap();
    let acme_tok = a.mint("acme", &["action in read"]).await.token;
    let beta_tok = a.mint("beta", &[]).await.token;
    let revoked_acme = a.mint("acme", &[]).await.token;
    let by_holder = pb::RevokeRequest { target: Some(Target::Token(revoked_acme.clone())), reason: String::new() };
    c.revoke(Request::new(by_holder)).await.unwrap();
    let acme_key = key_id_of(&acme_tok).0;
    let system_key = key_id_of(&boot);
    let long_ago = "expires < 2001-01-01T00:00:00Z";
    let expired_op = attenuate(&boot, &[long_ago]);
    let future_op = attenuate(&boot, &["not-before > 2099-01-01T00:00:00Z"]);
    let junk_op = attenuate(&boot, &["frobnicate ~ yes"]);
    let expired_verifier = attenuate(&verifier, &[long_ago]);
    let expired_acme = attenuate(&acme_tok, &[long_ago]);
    let stranger_op = stranger(TallyId::new(system_key, [9; 16]).encode());
    let unknown_key_op = stranger(TallyId::new(KeyId(9999), [9; 16]).encode());
    let foreign_id_op = stranger(b"not a tally identifier".to_vec());

    let (op, anon) = (Auth::Bearer(boot.clone()), Auth::Anonymous);
    let as_verifier = Auth::Bearer(verifier.clone());
    // Every way of not being an operator, each refused with its exact code.
    let not_operators: Vec<(&str, Auth, Code)> = vec![
        ("anonymous", Auth::Anonymous, Code::Unauthenticated),
        ("basic auth", Auth::Header("Basic Zm9vOmJhcg==".into()), Code::Unauthenticated),
        ("`Bearer` without token", Auth::Header("Bearer".into()), Code::Unauthenticated),
        ("empty bearer", Auth::Header("Bearer ".into()), Code::Unauthenticated),
        ("garbage bearer", Auth::Bearer("tly_garbage".into()), Code::Unauthenticated),
        ("truncated bearer", Auth::Bearer(boot[..boot.len() - 8].into()), Code::Unauthenticated),
        ("forged bearer", Auth::Bearer(forge(&boot)), Code::Unauthenticated),
        ("expired operator", Auth::Bearer(expired_op.clone()), Code::Unauthenticated),
        ("not-yet-valid operator", Auth::Bearer(future_op.clone()), Code::Unauthenticated),
        ("revoked operator", Auth::Bearer(revoked_op.clone()), Code::Unauthenticated),
        ("operator under a stranger's key", Auth::Bearer(stranger_op.clone()), Code::Unauthenticated),
        ("operator under an unknown key id", Auth::Bearer(unknown_key_op.clone()), Code::Unauthenticated),
        ("foreign identifier", Auth::Bearer(foreign_id_op.clone()), Code::Unauthenticated),
        ("bearer with an unused discharge", Auth::Bearer(format!("{boot},{boot}")), Code::Unauthenticated),
        ("12 KiB bearer", Auth::Bearer(format!("tly_{}", "A".repeat(12 * 1024))), Code::Unauthenticated),
        // Over the HTTP/2 server's header list limit (16 KiB): hyper answers
        // HTTP 431 before any gRPC code runs, which clients see as UNKNOWN.
        ("20 KiB bearer", Auth::Bearer(format!("tly_{}", "A".repeat(20 * 1024))), Code::Unknown),
        ("verifier token", as_verifier.clone(), Code::PermissionDenied),
        ("org-scoped operator", Auth::Bearer(acme_op.clone()), Code::PermissionDenied),
        ("operator limited to mint", Auth::Bearer(mint_only.clone()), Code::PermissionDenied),
        ("`org = system` operator", Auth::Bearer(system_scoped.clone()), Code::PermissionDenied),
        ("an org's token", Auth::Bearer(acme_tok.clone()), Code::PermissionDenied),
        ("operator with an unknown caveat", Auth::Bearer(junk_op.clone()), Code::PermissionDenied),
    ];

    let mut rows = Vec::new();
    let e = Expect::Err;

    // CreateOrg.
    for (name, org, code) in [
        ("empty", String::new(), Code::InvalidArgument),
        ("uppercase", "ACME".into(), Code::InvalidArgument),
        ("65 characters", "a".repeat(65), Code::InvalidArgument),
        ("100 KB", "a".repeat(100_000), Code::InvalidArgument),
        ("over the message limit", "a".repeat(HUGE), Code::OutOfRange),
        ("space", "a b".into(), Code::InvalidArgument),
        ("non-ASCII", "acmé".into(), Code::InvalidArgument),
        ("NUL", "a\0b".into(), Code::InvalidArgument),
        ("path", "../etc".into(), Code::InvalidArgument),
        ("the system org", "system".into(), Code::AlreadyExists),
        ("existing", "acme".into(), Code::AlreadyExists),
    ] {
        rows.push(row(format!("CreateOrg: {name}"), &op, Call::CreateOrg(org), e(code)));
    }
    for (name, auth, code) in &not_operators {
        rows.push(row(format!("CreateOrg: {name}"), auth, Call::CreateOrg("fresh".into()), e(*code)));
    }
    let latin1 = b"Bearer \xe9\xff".to_vec();
    rows.push(row(
        "CreateOrg: non-ASCII authorization",
        &anon,
        Call::Raw { method: "CreateOrg", body: raw::frame("\n\x05fresh").unwrap(), authorization: Some(latin1) },
        e(Code::Unauthenticated),
    ));
    let op_header = Some(format!("Bearer {boot}").into_bytes());
    for (name, msg, code) in [
        ("org as a varint", "\x08\x01", Code::Internal),
        ("truncated message", "\n\x05ab", Code::Internal),
        ("field number 0", "\x00\x01", Code::Internal),
        ("unknown field only (an empty org)", "\x78\x01", Code::InvalidArgument),
    ] {
        let call = Call::Raw { method: "CreateOrg", body: raw::frame(msg).unwrap(), authorization: op_header.clone() };
        rows.push(row(format!("CreateOrg: {name}"), &anon, call, e(code)));
    }
    for (name, body, code) in [
        ("frame header cut short", "\0\0".to_owned(), Code::Internal),
        ("frame longer than its body", "\0\0\0\0\x09\n\x05fresh".to_owned(), Code::Internal),
        (
            "compressed flag without an encoding",
            format!("\x01{}", &raw::frame("\n\x05fresh").unwrap()[1..]),
            Code::Internal,
        ),
    ] {
        let call = Call::Raw { method: "CreateOrg", body, authorization: op_header.clone() };
        rows.push(row(format!("CreateOrg: {name}"), &anon, call, e(code)));
    }
    let call = Call::Raw { method: "Frobnicate", body: raw::frame("").unwrap(), authorization: op_header.clone() };
    rows.push(row("unknown method", &anon, call, e(Code::Unimplemented)));

    // ListOrgs.
    for (name, auth, code) in &not_operators {
        rows.push(row(format!("ListOrgs: {name}"), auth, Call::ListOrgs, e(*code)));
    }

    // Status: unscoped operators only.
    for (name, auth, code) in &not_operators {
        rows.push(row(format!("Status: {name}"), auth, Call::Status, e(*code)));
    }
    rows.push(row("Status: operator", &op, Call::Status, Expect::Ok("vouching=true")));

    // RotateKey.
    // Names are checked before any lookup: a malformed one is invalid, a well-formed unknown one not found.
    for (name, org, code) in [
        ("empty", String::new(), Code::InvalidArgument),
        ("unknown org", "nope".into(), Code::NotFound),
        ("uppercase", "ACME".into(), Code::InvalidArgument),
    ] {
        rows.push(row(format!("RotateKey: {name}"), &op, Call::RotateKey(org), e(code)));
    }
    for (name, auth, code) in &not_operators {
        rows.push(row(format!("RotateKey: {name}"), auth, Call::RotateKey("beta".into()), e(*code)));
    }

    // RetireKey.
    for (name, key, code) in [
        ("key 0", 0, Code::NotFound),
        ("u64::MAX", u64::MAX, Code::NotFound),
        ("i64::MAX + 1", 1 << 63, Code::NotFound),
        ("an org's current key", acme_key, Code::FailedPrecondition),
        ("the system key", system_key.0, Code::FailedPrecondition),
        ("already retired", acme_old, Code::FailedPrecondition),
    ] {
        rows.push(row(format!("RetireKey: {name}"), &op, Call::RetireKey(key), e(code)));
    }
    for (name, auth, code) in &not_operators {
        rows.push(row(format!("RetireKey: {name}"), auth, Call::RetireKey(beta_key), e(*code)));
    }
    let call =
        Call::Raw { method: "RetireKey", body: raw::frame("\n\x01x").unwrap(), authorization: op_header.clone() };
    rows.push(row("RetireKey: key id as bytes", &anon, call, e(Code::Internal)));

    // ListKeys.
    for (name, org, code) in [
        ("empty", String::new(), Code::InvalidArgument),
        ("unknown org", "nope".into(), Code::NotFound),
        ("uppercase", "ACME".into(), Code::InvalidArgument),
    ] {
        rows.push(row(format!("ListKeys: {name}"), &op, Call::ListKeys(org), e(code)));
    }
    for (name, auth, code) in &not_operators {
        rows.push(row(format!("ListKeys: {name}"), auth, Call::ListKeys("beta".into()), e(*code)));
    }

    // Mint.
    let mint = |org: &str, caveats: Vec<String>| pb::MintRequest {
        org: org.into(),
        caveats,
        ttl_seconds: 60,
        subject: String::new(),
        location: String::new(),
    };
    for (name, m, code) in [
        ("empty org", mint("", vec![]), Code::InvalidArgument),
        ("unknown org", mint("nope", vec![]), Code::NotFound),
        ("uppercase org", mint("ACME", vec![]), Code::InvalidArgument),
        ("100 KB org", mint(&"a".repeat(100_000), vec![]), Code::InvalidArgument),
        ("unknown caveat", mint("acme", vec!["frobnicate".into()]), Code::InvalidArgument),
        ("empty caveat", mint("acme", vec![String::new()]), Code::InvalidArgument),
        ("empty action set", mint("acme", vec!["action in".into()]), Code::InvalidArgument),
        ("bad time", mint("acme", vec!["expires < yesterday".into()]), Code::InvalidArgument),
        ("bad CIDR", mint("acme", vec!["client-ip in 10.0.0.0/33".into()]), Code::InvalidArgument),
        ("org caveat", mint("acme", vec!["org = beta".into()]), Code::InvalidArgument),
        ("caveat with a newline", mint("acme", vec!["action in read\nrole = operator".into()]), Code::InvalidArgument),
        ("33 caveats", mint("acme", vec!["action in read".into(); 33]), Code::InvalidArgument),
        ("5000 caveats", mint("acme", vec!["action in read".into(); 5000]), Code::InvalidArgument),
        ("over the message limit", mint("acme", vec!["action in read".into(); HUGE / 16]), Code::OutOfRange),
        ("ttl u64::MAX", pb::MintRequest { ttl_seconds: u64::MAX, ..mint("acme", vec![]) }, Code::InvalidArgument),
        (
            "ttl over the maximum",
            pb::MintRequest { ttl_seconds: 366 * 24 * 3600 + 1, ..mint("acme", vec![]) },
            Code::InvalidArgument,
        ),
        (
            "two-word subject",
            pb::MintRequest { subject: "alice bob".into(), ..mint("acme", vec![]) },
            Code::InvalidArgument,
        ),
    ] {
        rows.push(row(format!("Mint: {name}"), &op, Call::Mint(m), e(code)));
    }
    // (An operator limited to `action in mint` may mint: not a refusal here.)
    for (name, auth, code) in not_operators.iter().filter(|(n, ..)| *n != "operator limited to mint") {
        rows.push(row(format!("Mint: {name}"), auth, Call::Mint(mint("beta", vec![])), e(*code)));
    }
    rows.push(row(
        "Mint: org-scoped operator for system",
        &Auth::Bearer(acme_op.clone()),
        Call::Mint(mint("system", vec![])),
        e(Code::PermissionDenied),
    ));

    // Verify.
    for (name, bundle) in bad_bundles(&acme_tok) {
        rows.push(row(format!("Verify: {name}"), &as_verifier, Call::Verify(bundle), e(Code::InvalidArgument)));
    }
    let huge_bundle = format!("tly_{}", "A".repeat(HUGE));
    rows.push(row(
        "Verify: over the message limit",
        &as_verifier,
        Call::Verify(huge_bundle.clone()),
        e(Code::OutOfRange),
    ));
    for (name, bundle, reply) in [
        ("forged", forge(&acme_tok), "valid=false reason=Forged chain=0"),
        ("stranger's key", stranger_op.clone(), "valid=false reason=Forged chain=0"),
        ("unknown key id", unknown_key_op.clone(), "valid=false reason=UnknownKey chain=0"),
        ("foreign identifier", foreign_id_op.clone(), "valid=false reason=UnknownKey chain=0"),
        ("expired", expired_acme.clone(), "valid=false reason=Expired chain=0"),
        ("revoked", revoked_acme.clone(), "valid=false reason=Revoked chain=0"),
        ("retired key", old_acme_tok.clone(), "valid=false reason=RetiredKey chain=0"),
        ("unrelated discharge", format!("{acme_tok},{beta_tok}"), "valid=false reason=DischargeInvalid chain=0"),
    ] {
        rows.push(row(format!("Verify: {name}"), &as_verifier, Call::Verify(bundle), Expect::Ok(reply)));
    }
    for (name, auth, code) in [
        ("anonymous", anon.clone(), Code::Unauthenticated),
        ("anonymous, garbage bundle", anon.clone(), Code::Unauthenticated),
        ("expired verifier", Auth::Bearer(expired_verifier.clone()), Code::Unauthenticated),
        ("forged verifier", Auth::Bearer(forge(&verifier)), Code::Unauthenticated),
        ("an org's token", Auth::Bearer(acme_tok.clone()), Code::PermissionDenied),
        ("org-scoped operator", Auth::Bearer(acme_op.clone()), Code::PermissionDenied),
        ("operator limited to mint", Auth::Bearer(mint_only.clone()), Code::PermissionDenied),
    ] {
        let bundle = if name.contains("garbage") { "tly_!!".to_owned() } else { acme_tok.clone() };
        rows.push(row(format!("Verify: {name}"), &auth, Call::Verify(bundle), e(code)));
    }
    let call = Call::Raw { method: "Verify", body: raw::frame("\n").unwrap(), authorization: op_header.clone() };
    rows.push(row("Verify: length cut off", &anon, call, e(Code::Internal)));

    // Revoke.
    let revoke = |target: Target| pb::RevokeRequest { target: Some(target), reason: "bad input".into() };
    rows.push(row("Revoke: no target", &op, Call::Revoke(pb::RevokeRequest::default()), e(Code::InvalidArgument)));
    for (name, bundle) in bad_bundles(&acme_tok) {
        rows.push(row(
            format!("Revoke token: {name}"),
            &anon,
            Call::Revoke(revoke(Target::Token(bundle))),
            e(Code::InvalidArgument),
        ));
    }
    for (name, bundle, code) in [
        ("forged", forge(&acme_tok), Code::InvalidArgument),
        ("expired", expired_acme.clone(), Code::InvalidArgument),
        ("revoked already", revoked_acme.clone(), Code::InvalidArgument),
        ("stranger's key", stranger_op.clone(), Code::InvalidArgument),
        ("foreign identifier", foreign_id_op.clone(), Code::InvalidArgument),
        ("over the message limit", huge_bundle.clone(), Code::OutOfRange),
    ] {
        rows.push(row(format!("Revoke token: {name}"), &anon, Call::Revoke(revoke(Target::Token(bundle))), e(code)));
    }
    for (name, family, code) in [
        ("empty", String::new(), Code::InvalidArgument),
        ("not hex", "zz".into(), Code::InvalidArgument),
        ("31 hex characters", "a".repeat(31), Code::InvalidArgument),
        ("33 hex characters", "a".repeat(33), Code::InvalidArgument),
        ("32 non-hex characters", "g".repeat(32), Code::InvalidArgument),
        ("64 hex characters", "a".repeat(64), Code::InvalidArgument),
    ] {
        rows.push(row(format!("Revoke family: {name}"), &op, Call::Revoke(revoke(Target::Family(family))), e(code)));
    }
    for (name, auth, code) in &not_operators {
        let call = Call::Revoke(revoke(Target::Family(family_of(&beta_tok))));
        rows.push(row(format!("Revoke family: {name}"), auth, call, e(*code)));
    }
    for (name, key, code) in [("key 0", 0, Code::NotFound), ("u64::MAX", u64::MAX, Code::NotFound)] {
        rows.push(row(format!("Revoke key: {name}"), &op, Call::Revoke(revoke(Target::KeyId(key))), e(code)));
    }
    for (name, auth, code) in &not_operators {
        rows.push(row(format!("Revoke key: {name}"), auth, Call::Revoke(revoke(Target::KeyId(beta_key))), e(*code)));
    }
    for (name, org, code) in [
        ("empty", String::new(), Code::InvalidArgument),
        ("unknown", "nope".into(), Code::NotFound),
        ("uppercase", "ACME".into(), Code::InvalidArgument),
        ("the system org", "system".into(), Code::FailedPrecondition),
    ] {
        rows.push(row(format!("Revoke org: {name}"), &op, Call::Revoke(revoke(Target::Org(org))), e(code)));
    }
    for (name, auth, code) in &not_operators {
        rows.push(row(format!("Revoke org: {name}"), auth, Call::Revoke(revoke(Target::Org("beta".into()))), e(*code)));
    }
    for (name, len) in [("257-byte reason", 257), ("100 KB reason", 100_000)] {
        let r = pb::RevokeRequest { target: Some(Target::Family(family_of(&beta_tok))), reason: "r".repeat(len) };
        rows.push(row(format!("Revoke: {name}"), &op, Call::Revoke(r), e(Code::InvalidArgument)));
        let r = pb::RevokeRequest { target: Some(Target::Token(beta_tok.clone())), reason: "r".repeat(len) };
        rows.push(row(format!("Revoke token: {name}"), &anon, Call::Revoke(r), e(Code::InvalidArgument)));
    }
    let call = Call::Raw { method: "Revoke", body: raw::frame("\x10\x01").unwrap(), authorization: op_header.clone() };
    rows.push(row("Revoke: family as a varint", &anon, call, e(Code::Internal)));

    // Introspect.
    for (name, bundle) in bad_bundles(&acme_tok) {
        rows.push(row(format!("Introspect: {name}"), &op, Call::Introspect(bundle), e(Code::InvalidArgument)));
    }
    for (name, auth, bundle, expect) in [
        ("anonymous", anon.clone(), acme_tok.clone(), e(Code::Unauthenticated)),
        ("anonymous, garbage bundle", anon.clone(), "tly_!!".into(), e(Code::Unauthenticated)),
        ("garbage bearer", Auth::Bearer("tly_!!".into()), acme_tok.clone(), e(Code::Unauthenticated)),
        ("another org's operator", Auth::Bearer(acme_op.clone()), beta_tok.clone(), e(Code::PermissionDenied)),
        ("an org's token", Auth::Bearer(acme_tok.clone()), acme_tok.clone(), e(Code::PermissionDenied)),
        ("expired operator", Auth::Bearer(expired_op.clone()), acme_tok.clone(), e(Code::Unauthenticated)),
        ("expired token", op.clone(), expired_acme.clone(), Expect::Ok("active=false reason=Expired")),
        ("forged token", op.clone(), forge(&acme_tok), Expect::Ok("active=false reason=Forged")),
        ("over the message limit", op.clone(), huge_bundle.clone(), e(Code::OutOfRange)),
    ] {
        rows.push(row(format!("Introspect: {name}"), &auth, Call::Introspect(bundle), expect));
    }

    // Subscribe.
    for (name, auth, code) in [
        ("anonymous", anon.clone(), Code::Unauthenticated),
        ("garbage bearer", Auth::Bearer("tly_!!".into()), Code::Unauthenticated),
        ("expired verifier", Auth::Bearer(expired_verifier.clone()), Code::Unauthenticated),
        ("an org's token", Auth::Bearer(acme_tok.clone()), Code::PermissionDenied),
        ("org-scoped operator", Auth::Bearer(acme_op.clone()), Code::PermissionDenied),
        ("operator limited to mint", Auth::Bearer(mint_only.clone()), Code::PermissionDenied),
    ] {
        rows.push(row(format!("Subscribe: {name}"), &auth, Call::Subscribe(pb::SubscribeRequest::default()), e(code)));
    }
    let epoch = stream_epoch(&a, &verifier).await;
    let sub = |from_seq: u64, epoch: &str, from_digest: Vec<u8>| pb::SubscribeRequest {
        from_seq,
        epoch: epoch.into(),
        from_digest,
    };
    for (name, s) in [
        ("ahead of the log", sub(u64::MAX, &epoch, vec![1; 16])),
        ("garbage epoch", sub(1, "garbage", vec![1; 16])),
        ("100 KB epoch", sub(1, &"e".repeat(100_000), vec![])),
        ("100 KB digest", sub(1, &epoch, vec![0xff; 100_000])),
        ("wrong digest", sub(1, &epoch, vec![0; 16])),
    ] {
        rows.push(row(format!("Subscribe: {name}"), &as_verifier, Call::Subscribe(s), Expect::Ok("first=reset")));
    }
    let call = Call::Raw {
        method: "Subscribe",
        body: raw::frame("\n\x01x").unwrap(),
        authorization: Some(format!("Bearer {verifier}").into_bytes()),
    };
    rows.push(row("Subscribe: from_seq as bytes", &anon, call, e(Code::Internal)));

    // ListAudit.
    let audit =
        |org: &str, after_id: Option<u64>, limit: u32| pb::ListAuditRequest { org: org.into(), after_id, limit };
    for (name, q, code) in [
        ("uppercase org", audit("ACME", None, 10), Code::InvalidArgument),
        ("100 KB org", audit(&"a".repeat(100_000), None, 10), Code::InvalidArgument),
        ("limit 1001", audit("", None, 1001), Code::InvalidArgument),
        ("limit u32::MAX", audit("acme", None, u32::MAX), Code::InvalidArgument),
        ("after i64::MAX + 1", audit("", Some(1 << 63), 10), Code::InvalidArgument),
    ] {
        rows.push(row(format!("ListAudit: {name}"), &op, Call::ListAudit(q), e(code)));
    }
    for (name, q, reply) in [
        ("after i64::MAX", audit("", Some(i64::MAX as u64), 10), "entries=0"),
        ("unknown org", audit("nope", None, 0), "entries=0"),
        ("limit 1", audit("", None, 1), "entries=1"),
    ] {
        rows.push(row(format!("ListAudit: {name}"), &op, Call::ListAudit(q), Expect::Ok(reply)));
    }
    for (name, auth, code) in &not_operators {
        rows.push(row(format!("ListAudit: {name}"), auth, Call::ListAudit(audit("beta", None, 10)), e(*code)));
    }
    let call =
        Call::Raw { method: "ListAudit", body: raw::frame("\x10\x01\x10").unwrap(), authorization: op_header.clone() };
    rows.push(row("ListAudit: truncated after_id", &anon, call, e(Code::Internal)));

    // Run the table.
    let mut db = a.db_connect().await.unwrap();
    let channel = raw::channel(a.addr()).await.unwrap();
    let head_before = stream_head(&a, &verifier).await;
    let mut before = state(&a, &mut db).await;
    let mut failures = Vec::new();
    let total = rows.len();
    for Row { name, auth, call, expect } in rows {
        let got = tokio::time::timeout(DEADLINE, run(&a, &auth, call)).await;
        let got = got.unwrap_or_else(|_| Err(Status::deadline_exceeded("the call hung")));
        let ok = match (&got, expect) {
            (Err(s), Expect::Err(code)) => s.code() == code,
            (Ok(summary), Expect::Ok(text)) => summary.contains(text),
            _ => false,
        };
        if !ok {
            let got = got.map_err(|s| format!("{:?}: {}", s.code(), s.message()));
            failures.push(format!("{name}: expected {expect:?}, got {got:?}"));
        }
        if let Err(e) = raw::assert_alive(a.process(), &channel, SERVICE).await {
            panic!("after row {name:?}: {e:#}");
        }
        let after = state(&a, &mut db).await;
        if after != before {
            failures.push(format!("{name}: wrote something:\nbefore {before:?}\nafter  {after:?}"));
            before = after;
        }
    }
    assert!(failures.is_empty(), "{} of {total} rows failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(stream_head(&a, &verifier).await, head_before, "the stream head moved");
    let refused = a.stderr_lines().iter().filter(|l| l.contains("request refused")).count();
    assert!(refused >= 100, "refusals are logged ({refused})");
    println!("{total} rows passed");
    db.close().await.unwrap();
}

/// The authority's epoch, from a Subscribe that starts with no position.
async fn stream_epoch(a: &Authority, verifier: &str) -> String {
    let mut stream =
        a.client().subscribe(bearer(pb::SubscribeRequest::default(), verifier)).await.unwrap().into_inner();
    tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.message().await.unwrap().unwrap().event {
                Some(Event::Reset(r)) => return r.epoch,
                Some(Event::Heartbeat(h)) => return h.epoch,
                _ => {}
            }
        }
    })
    .await
    .expect("an epoch")
}
