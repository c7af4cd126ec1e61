//! Secrets stay secret with the real binary: after a session of many RPCs
//! (successful and refused) at debug/trace log level, no root key (nor its
//! derived form) is in the database file's raw bytes, and no root key, derived
//! key, the KEK, a token or a chain signature is in any line the processes
//! logged.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use sqlx::Connection;
use sqlx::Row;
use tally_authority::Kek;
use tally_proto::v1 as pb;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::subscribe_event::Event;
use tally_tests::{Authority, AuthorityOptions, DEADLINE, bearer};
use tally_token::{KeyId, Limits, Macaroon, TEXT_PREFIX};
use tonic::{Code, Request};

/// Debug everywhere, trace for Tally's own crates.
const RUST_LOG: &str = "debug,tally_authority=trace,tally_token=trace";
/// A log run of base64/hex characters at least this long that is part of a secret is a leak.
const MIN_LEAK_RUN: usize = 16;

/// Every textual form under which a secret could show up in a log.
#[derive(Debug, Default)]
struct Needles {
    /// (what, text)
    text: Vec<(String, String)>,
    /// (what, bytes) looked for in the database file.
    raw: Vec<(String, Vec<u8>)>,
}

impl Needles {
    /// Raw bytes (database only) and the usual text encodings (both).
    fn bytes(&mut self, what: &str, bytes: &[u8], in_db: bool) {
        let hex = hex::encode(bytes);
        let forms = [
            hex.clone(),
            hex.to_uppercase(),
            STANDARD.encode(bytes),
            STANDARD_NO_PAD.encode(bytes),
            URL_SAFE.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
            // `{:?}` of a byte array or Vec.
            format!("{bytes:?}"),
        ];
        if in_db {
            self.raw.push((what.into(), bytes.to_vec()));
            self.raw.push((format!("{what} (hex)"), hex.into_bytes()));
        }
        for form in forms {
            self.text.push((what.into(), form));
        }
    }

    /// A token's text, its body without the prefix, and the body in standard base64.
    fn token(&mut self, what: &str, text: &str, in_db: bool) {
        let body = text.strip_prefix(TEXT_PREFIX).unwrap_or(text);
        self.text.push((what.into(), text.into()));
        self.text.push((format!("{what} (body)"), body.into()));
        if let Ok(v2) = URL_SAFE_NO_PAD.decode(body) {
            self.text.push((format!("{what} (standard base64)"), STANDARD_NO_PAD.encode(&v2)));
            if in_db {
                self.raw.push((format!("{what} (V2 bytes)"), v2));
            }
        }
        if in_db {
            self.raw.push((what.into(), text.as_bytes().to_vec()));
        }
    }

    /// Which needles occur in `lines`: whole needles anywhere, and any run of
    /// base64/hex characters of at least `MIN_LEAK_RUN` that is part of one.
    fn in_log(&self, lines: &[String]) -> Vec<String> {
        let mut found = Vec::new();
        for line in lines {
            for (what, needle) in &self.text {
                if line.contains(needle.as_str()) {
                    found.push(format!("{what} in log line {line:?}"));
                }
            }
            for run in line.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=_-".contains(c))) {
                if run.len() < MIN_LEAK_RUN {
                    continue;
                }
                for (what, needle) in &self.text {
                    if needle.contains(run) {
                        found.push(format!("part of {what} ({run}) in log line {line:?}"));
                    }
                }
            }
        }
        found
    }

    /// Which raw needles occur in `file`.
    fn in_bytes(&self, name: &str, file: &[u8]) -> Vec<String> {
        self.raw.iter().filter(|(_, n)| contains(file, n)).map(|(what, _)| format!("{what} in {name}")).collect()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else { return true };
    // Only windows starting with the right byte get compared in full.
    hay.iter().enumerate().any(|(i, &b)| b == first && hay[i..].starts_with(needle))
}

fn revoke(target: Target) -> pb::RevokeRequest {
    pb::RevokeRequest { target: Some(target), reason: "secrets test".into() }
}

/// Signature hex/base64 from a Verify response's chain (the minted token's
/// signature and the longer ones: the authority hands out no shorter prefix).
fn collect_signatures(v: &pb::VerifyResponse, needles: &mut Needles, count: &mut usize) {
    for (k, sig) in v.chain.iter().enumerate() {
        let k = k + v.chain_from as usize;
        needles.bytes(&format!("chain signature {k} of {}", hex::encode(&v.family)), sig, true);
        *count += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_keys_never_in_the_database_file_or_the_logs() {
    let options = AuthorityOptions { rust_log: RUST_LOG.into(), ..AuthorityOptions::default() };
    let mut a = Authority::start_with(options).await;
    let mut c = a.client();
    let boot = a.bootstrap().to_owned();
    let mut needles = Needles::default();
    let mut minted_tokens = Vec::new();
    let mut signatures = 0;
    needles.bytes("KEK", &hex::decode(a.kek_hex()).unwrap(), true);
    needles.token("bootstrap token", &boot, true);

    // Orgs, keys, rotation.
    let first_acme_key = a.create_org("acme").await;
    a.create_org("beta").await;
    c.list_orgs(bearer(pb::ListOrgsRequest {}, &boot)).await.unwrap();
    let rotated = c.rotate_key(bearer(pb::RotateKeyRequest { org: "acme".into() }, &boot)).await.unwrap();
    let rotated = rotated.into_inner().key_id;

    // Mints of every shape, and Tally's own API tokens.
    let mut minted = Vec::new();
    for (org, caveats, subject) in [
        ("acme", vec![], ""),
        ("acme", vec!["action in read,write".to_owned()], "alice"),
        ("acme", vec!["resource = apps/web/*".to_owned(), "service = api".to_owned()], "bob"),
        ("beta", vec!["client-ip in 10.0.0.0/8".to_owned()], ""),
        ("beta", vec![], "carol"),
    ] {
        let req = pb::MintRequest {
            org: org.into(),
            caveats,
            subject: subject.into(),
            location: "https://tally.example".into(),
            ttl_seconds: 600,
        };
        minted.push(c.mint(bearer(req, &boot)).await.unwrap().into_inner());
    }
    let verifier = a.system_token("verifier", &[]).await;
    let acme_operator = a.system_token("operator", &["org = acme"]).await;
    let doomed_operator = a.system_token("operator", &["action in mint"]).await;
    for t in [&verifier, &acme_operator, &doomed_operator] {
        minted_tokens.push(t.clone());
    }
    minted_tokens.extend(minted.iter().map(|m| m.token.clone()));

    // A descendant: the holder attenuates, the authority verifies the longer chain.
    let mut child = Macaroon::from_text(&minted[0].token, &Limits::default()).unwrap();
    child.add_first_party("action in read");
    let child = child.to_text();
    minted_tokens.push(child.clone());

    // Verify and introspect everything (as the verifier, and as operators).
    for t in &minted_tokens {
        let v = c.verify(bearer(pb::VerifyRequest { bundle: t.clone() }, &verifier)).await.unwrap().into_inner();
        // An org-scoped operator token is for Tally's API only: Verify checks
        // its `org` caveat against the system key's org and refuses it.
        assert!(v.valid || *t == acme_operator, "{v:?}");
        collect_signatures(&v, &mut needles, &mut signatures);
        c.introspect(bearer(pb::IntrospectRequest { bundle: t.clone() }, &verifier)).await.unwrap();
    }
    let v = c.verify(bearer(pb::VerifyRequest { bundle: boot.clone() }, &verifier)).await.unwrap().into_inner();
    collect_signatures(&v, &mut needles, &mut signatures);
    c.introspect(bearer(pb::IntrospectRequest { bundle: minted[1].token.clone() }, &acme_operator)).await.unwrap();

    // Revocations of every kind.
    let mut seq = 0;
    seq = seq.max(c.revoke(Request::new(revoke(Target::Token(child.clone())))).await.unwrap().into_inner().seq);
    let family = revoke(Target::Family(minted[2].family.clone()));
    seq = seq.max(c.revoke(bearer(family, &acme_operator)).await.unwrap().into_inner().seq);
    seq = seq.max(c.revoke(bearer(revoke(Target::KeyId(minted[3].key_id)), &boot)).await.unwrap().into_inner().seq);
    seq = seq.max(c.revoke(bearer(revoke(Target::Org("beta".into())), &boot)).await.unwrap().into_inner().seq);
    let doomed = Macaroon::from_text(&doomed_operator, &Limits::default()).unwrap();
    let doomed_family = tally_token::TallyId::decode(doomed.identifier()).unwrap().family.to_hex();
    seq =
        seq.max(c.revoke(bearer(revoke(Target::Family(doomed_family.clone())), &boot)).await.unwrap().into_inner().seq);
    // The rotation made acme's first key retirable.
    assert_ne!(rotated, first_acme_key);
    c.retire_key(bearer(pb::RetireKeyRequest { key_id: first_acme_key }, &boot)).await.unwrap();
    let after = a.mint("acme", &["action in read"]).await;
    minted_tokens.push(after.token.clone());
    let v = a.verify(&after.token).await;
    collect_signatures(&v, &mut needles, &mut signatures);

    // The stream, to its head.
    let req = pb::SubscribeRequest { from_seq: 0, epoch: String::new(), from_digest: Vec::new() };
    let mut stream = c.subscribe(bearer(req, &verifier)).await.unwrap().into_inner();
    let head = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(Event::Heartbeat(hb)) = stream.message().await.unwrap().unwrap().event {
                return hb.head_seq;
            }
        }
    })
    .await
    .expect("a heartbeat");
    assert!(head >= seq, "head {head}, last acknowledged {seq}");
    drop(stream);

    // Refused calls, each logged and audited.
    // Well-formed, but with one signature bit flipped: a forgery, not garbage.
    let tampered = {
        let m = Macaroon::from_text(&boot, &Limits::default()).unwrap();
        let mut sig = *m.signature().as_bytes();
        sig[31] ^= 1;
        let sig = tally_token::Signature::from_bytes(sig);
        Macaroon::from_parts(m.location().map(str::to_owned), m.identifier().to_vec(), m.caveats().to_vec(), sig)
            .to_text()
    };
    let refusals: Vec<(Request<pb::MintRequest>, Code)> = vec![
        (Request::new(pb::MintRequest { org: "acme".into(), ..Default::default() }), Code::Unauthenticated),
        (bearer(pb::MintRequest { org: "acme".into(), ..Default::default() }, "tly_garbage"), Code::Unauthenticated),
        (bearer(pb::MintRequest { org: "acme".into(), ..Default::default() }, &tampered), Code::Unauthenticated),
        (
            bearer(pb::MintRequest { org: "acme".into(), ..Default::default() }, &minted[0].token),
            Code::PermissionDenied,
        ),
        (bearer(pb::MintRequest { org: "acme".into(), ..Default::default() }, &verifier), Code::PermissionDenied),
        (bearer(pb::MintRequest { org: "beta".into(), ..Default::default() }, &acme_operator), Code::PermissionDenied),
        (bearer(pb::MintRequest { org: "acme".into(), ..Default::default() }, &doomed_operator), Code::Unauthenticated),
    ];
    for (req, code) in refusals {
        assert_eq!(c.mint(req).await.unwrap_err().code(), code);
    }
    let err = c.verify(bearer(pb::VerifyRequest { bundle: "tly_!!!".into() }, &verifier)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let forged = c.verify(bearer(pb::VerifyRequest { bundle: tampered.clone() }, &verifier)).await.unwrap();
    assert!(!forged.into_inner().valid);
    let err = c.revoke(Request::new(revoke(Target::Token(tampered.clone())))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c.subscribe(bearer(pb::SubscribeRequest::default(), &minted[1].token)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Keys that should exist, per the API.
    let mut key_ids = Vec::new();
    for org in ["acme", "beta"] {
        let keys = c.list_keys(bearer(pb::ListKeysRequest { org: org.into() }, &boot)).await.unwrap();
        key_ids.extend(keys.into_inner().keys.iter().map(|k| k.key_id));
    }

    // Stop gracefully (SIGTERM) so the database is closed as in production.
    let status = a.stop().await.expect("graceful stop");
    assert!(status.success(), "{status}");

    for t in &minted_tokens {
        needles.token("minted token", t, true);
    }
    // Presented but not minted: must not be logged either.
    needles.token("tampered bearer", &tampered, false);

    // The raw files (SQLite), before anything else opens the database; or
    // everything the PostgreSQL database holds, as pg_dump writes it out
    // (bytea in hex: the raw needles have their hex form too).
    let mut files = Vec::new();
    if a.db().is_postgres() {
        let dump = std::process::Command::new("pg_dump").args(["--no-owner", "-d", a.db().arg()]).output().unwrap();
        assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
        files.push(("pg_dump of the database".to_owned(), dump.stdout));
    } else {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = a.db_path().with_file_name(format!("authority.db{suffix}"));
            if let Ok(bytes) = std::fs::read(&path) {
                files.push((path.display().to_string(), bytes));
            }
        }
    }
    assert!(files[0].1.len() > 4096, "read the database");

    // The root keys, opened with the KEK from their sealed rows.
    let kek = Kek::from_hex(a.kek_hex()).unwrap();
    let mut conn = a.db_connect().await.unwrap();
    let rows = sqlx::query("SELECT key_id, org, sealed FROM root_keys").fetch_all(&mut conn).await.unwrap();
    let mut opened = Vec::new();
    let mut sealed_found = 0;
    for row in &rows {
        let (key_id, org, sealed): (i64, String, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
        let key = kek.open(KeyId(key_id as u64), &org, &sealed).expect("every key opens with the KEK");
        needles.bytes(&format!("root key {key_id} ({org})"), key.as_bytes(), true);
        needles.bytes(&format!("derived key {key_id} ({org})"), key.derive().as_bytes(), true);
        opened.push(key_id as u64);
        // The search itself works: the sealed form is in the files.
        let sealed_hex = hex::encode(&sealed);
        sealed_found +=
            usize::from(files.iter().any(|(_, f)| contains(f, &sealed) || contains(f, sealed_hex.as_bytes())));
    }
    conn.close().await.unwrap();

    // The test has teeth: keys were opened, tokens minted, signatures collected, the log captured.
    assert!(key_ids.iter().all(|k| opened.contains(k)), "keys {key_ids:?} listed, rows {opened:?}");
    assert!(opened.len() >= 6, "system, acme ×3+, beta ×2+: {opened:?}");
    assert_eq!(sealed_found, opened.len(), "every sealed key found in the raw bytes");
    // One signature per user token verified, two for the descendant; none for API tokens.
    assert!(minted_tokens.len() >= 9 && signatures >= minted.len() + 3, "{signatures} signatures");
    let log = a.log_lines();
    assert!(log.iter().any(|l| l.contains("DEBUG") || l.contains("TRACE")), "debug logging is on");
    assert!(log.iter().any(|l| l.contains("request refused")), "refusals were logged");
    assert!(log.iter().any(|l| l.contains(&doomed_family)), "the log names tokens by family");

    let mut leaks = needles.in_log(&log);
    for (name, bytes) in &files {
        leaks.extend(needles.in_bytes(name, bytes));
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));
    println!(
        "checked {} log lines and {} bytes of database files against {} text and {} raw needles ({} keys)",
        log.len(),
        files.iter().map(|(_, b)| b.len()).sum::<usize>(),
        needles.text.len(),
        needles.raw.len(),
        opened.len()
    );
}

/// The leak search itself: it finds planted secrets in every form it claims to.
#[test]
fn the_search_finds_planted_secrets() {
    let key: Vec<u8> = (1..=32).collect();
    let token = "tly_AgISAQEbRz09tcXxHEglJh3XrhGkAAIeZXhwaXJlcyA8IDIwMjctMTEtMjVUMTY6MDE6MTFa";
    let mut needles = Needles::default();
    needles.bytes("key", &key, true);
    needles.token("token", token, true);
    let hex = hex::encode(&key);
    for line in [
        format!("key={hex}"),
        format!("key={}", hex.to_uppercase()),
        format!("key=\"{}\"", STANDARD.encode(&key)),
        format!("key={key:?}"),
        format!("prefix of the key: {}", &hex[..20]),
        format!("bearer {token}"),
        format!("body {}", &token[4..]),
        format!("a truncated token {}…", &token[..30]),
    ] {
        assert!(!needles.in_log(std::slice::from_ref(&line)).is_empty(), "not found in {line:?}");
    }
    let clean = "INFO request refused action=\"mint\" actor=8a095e0f427a0c56917c6555400a3242 detail=\"invalid\"";
    assert_eq!(needles.in_log(&[clean.to_owned()]), Vec::<String>::new());
    let mut file = vec![0u8; 5000];
    file.extend_from_slice(&key);
    file.extend_from_slice(&[0; 100]);
    assert_eq!(needles.in_bytes("file", &file).len(), 1);
    assert!(needles.in_bytes("file", &file[..5010]).is_empty());
}
