//! The online `tally` commands against a real authority and verifier,
//! started as processes on loopback: text and `--json` output, exit codes,
//! errors that say what to do and never show a token.

use crate::support;

use serde_json::Value;
use std::path::Path;
use support::{Out, closed_url, path, tally, tally_with, token_file};

use tally_tests::{Authority, Child, DEADLINE, Verifier, VerifierOptions};

/// `--authority URL --token-file FILE` for the operator.
fn op<'a>(authority: &'a str, file: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--authority", authority, "--token-file", file];
    all.extend_from_slice(args);
    all
}

#[tokio::test]
async fn orgs_keys_mint_introspect_revoke() {
    let authority = Authority::start().await;
    let url = authority.url();
    let dir = tempfile::tempdir().unwrap();
    let op_file = token_file(dir.path(), "operator.token", authority.bootstrap());
    let opf = path(&op_file);

    // org create / list, text and JSON.
    let out = tally(&op(&url, opf, &["org", "create", "acme"])).await.expect(0);
    assert!(out.stdout.starts_with("created org acme with key "), "{out:?}");
    let v = tally(&op(&url, opf, &["--json", "org", "create", "globex"])).await.expect(0).json();
    assert_eq!(v["org"], "globex");
    let globex_key = v["key_id"].as_u64().unwrap();
    let v = tally(&op(&url, opf, &["org", "list", "--json"])).await.expect(0).json();
    let orgs: Vec<&str> = v["orgs"].as_array().unwrap().iter().map(|o| o["org"].as_str().unwrap()).collect();
    assert!(orgs.contains(&"acme") && orgs.contains(&"globex"), "{v}");
    let globex = v["orgs"].as_array().unwrap().iter().find(|o| o["org"] == "globex").unwrap();
    assert_eq!(globex["current_key_id"].as_u64(), Some(globex_key));
    assert!(globex["created_at"].as_str().unwrap().ends_with('Z'), "{globex}");
    let text = tally(&op(&url, opf, &["org", "list"])).await.expect(0).stdout;
    assert!(text.starts_with("ORG") && text.contains("acme") && text.contains("globex"), "{text}");

    // A duplicate org is a usage error (2) with the server's reason.
    let out = tally(&op(&url, opf, &["org", "create", "acme"])).await.expect(2);
    assert!(out.stderr.contains("acme"), "{out:?}");

    // key rotate / list / retire.
    let v = tally(&op(&url, opf, &["key", "rotate", "globex", "--json"])).await.expect(0).json();
    let new_key = v["key_id"].as_u64().unwrap();
    assert_ne!(new_key, globex_key);
    let v = tally(&op(&url, opf, &["key", "list", "globex", "--json"])).await.expect(0).json();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    let current: Vec<u64> =
        keys.iter().filter(|k| k["current"] == true).map(|k| k["key_id"].as_u64().unwrap()).collect();
    assert_eq!(current, [new_key]);
    let v = tally(&op(&url, opf, &["key", "retire", &globex_key.to_string(), "--json"])).await.expect(0).json();
    assert_eq!(v["key_id"].as_u64(), Some(globex_key));
    assert!(v["seq"].as_u64().unwrap() > 0);
    let text = tally(&op(&url, opf, &["key", "list", "globex"])).await.expect(0).stdout;
    assert!(text.contains("retired") && text.contains("current"), "{text}");
    // The current key cannot be retired: the server says why, exit 2.
    tally(&op(&url, opf, &["key", "retire", &new_key.to_string()])).await.expect(2);

    // mint: text prints the token alone; JSON has the details.
    let token = tally(&op(&url, opf, &["mint", "--org", "acme", "--subject", "alice", "--caveat", "action in read"]))
        .await
        .expect(0)
        .stdout
        .trim()
        .to_owned();
    assert!(token.starts_with("tly_") && !token.contains('\n'), "{token}");
    let minted = tally(&op(&url, opf, &["mint", "--json", "--org", "acme", "--ttl", "1h"])).await.expect(0).json();
    let (token2, family2) = (minted["token"].as_str().unwrap().to_owned(), minted["family"].as_str().unwrap());
    assert_eq!(family2.len(), 32);
    assert!(minted["expires_at"].is_string(), "{minted}");
    // A malformed caveat is caught before anything is minted.
    let out = tally(&op(&url, opf, &["mint", "--org", "acme", "--caveat", "acton in read"])).await.expect(2);
    assert!(out.stderr.contains("invalid caveat"), "{out:?}");

    // introspect: active (exit 0), JSON and text; from stdin too.
    let v = tally(&op(&url, opf, &["introspect", "--json", &token])).await.expect(0).json();
    assert_eq!(v["active"], true);
    assert_eq!(v["org"], "acme");
    assert_eq!(v["subject"], "alice");
    assert!(v["caveats"].as_array().unwrap().iter().any(|c| c == "action in read"), "{v}");
    let family = v["family"].as_str().unwrap().to_owned();
    let text = tally_with(&op(&url, opf, &["introspect", "-"]), &[], &token).await.expect(0).stdout;
    assert!(text.contains("active") && text.contains("alice"), "{text}");

    // revoke family (JSON), then introspect says inactive with exit 1.
    let v = tally(&op(&url, opf, &["revoke", "family", &family, "--reason", "test", "--json"])).await.expect(0).json();
    assert_eq!(v["revoked"], "family");
    assert_eq!(v["target"].as_str(), Some(family.as_str()));
    let v = tally(&op(&url, opf, &["introspect", "--json", &token])).await.expect(1).json();
    assert_eq!(v["active"], false);
    assert_eq!(v["reason"], "revoked");
    let out = tally(&op(&url, opf, &["introspect", &token])).await.expect(1);
    assert!(out.stdout.contains("inactive (revoked)"), "{out:?}");

    // revoke token: the holder needs no operator token; stdin works; the token is never echoed.
    let out = tally_with(&["--authority", &url, "revoke", "token", "-", "--json"], &[], &token2).await.expect(0);
    assert!(!out.stdout.contains(&token2) && !out.stderr.contains(&token2), "{out:?}");
    assert_eq!(out.json()["revoked"], "token");
    tally(&op(&url, opf, &["introspect", &token2])).await.expect(1);

    // revoke key and org, in text.
    let out = tally(&op(&url, opf, &["revoke", "key", &new_key.to_string()])).await.expect(0);
    assert!(out.stdout.contains(&format!("every token under key {new_key}")), "{out:?}");
    let out = tally(&op(&url, opf, &["revoke", "org", "acme"])).await.expect(0);
    assert!(out.stdout.contains("every token of org acme"), "{out:?}");
}

#[tokio::test]
async fn errors_say_what_to_do_and_use_the_documented_exit_codes() {
    let authority = Authority::start().await;
    let url = authority.url();
    authority.create_org("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let op_file = token_file(dir.path(), "operator.token", authority.bootstrap());

    // Environment fallbacks for the authority and the token file.
    let envs = [("TALLY_AUTHORITY_URL", url.as_str()), ("TALLY_TOKEN_FILE", path(&op_file))];
    let v = tally_with(&["org", "list", "--json"], &envs, "").await.expect(0).json();
    assert!(v["orgs"].as_array().unwrap().iter().any(|o| o["org"] == "acme"), "{v}");

    // No token file: usage (2), and the message names the flag and the variable.
    let out = tally(&["--authority", &url, "org", "list"]).await.expect(2);
    assert!(out.stderr.contains("--token-file") && out.stderr.contains("TALLY_TOKEN_FILE"), "{out:?}");
    let out = tally(&["--authority", &url, "--token-file", "/nonexistent/op.token", "org", "list"]).await.expect(2);
    assert!(out.stderr.contains("/nonexistent/op.token"), "{out:?}");

    // A token the authority does not accept: 1, the file named, the token not shown.
    let forged = tally_tests_forge(authority.bootstrap());
    let bad_file = token_file(dir.path(), "bad.token", &forged);
    let out = tally(&op(&url, path(&bad_file), &["org", "list"])).await.expect(1);
    assert!(out.stderr.contains("bad.token"), "{out:?}");
    assert!(!out.stderr.contains(&forged) && !out.stderr.contains(authority.bootstrap()), "{out:?}");

    // A valid token without the right: permission denied, 1.
    let scoped = authority.system_token("operator", &["org = acme"]).await;
    let scoped_file = token_file(dir.path(), "scoped.token", &scoped);
    let out = tally(&op(&url, path(&scoped_file), &["org", "create", "initech"])).await.expect(1);
    assert!(out.stderr.contains("permission denied"), "{out:?}");
    assert!(!out.stderr.contains(&scoped), "{out:?}");

    // Nothing listening: unavailable, 3, with the URL and how to change it.
    let closed = closed_url();
    let out = tally(&op(&closed, path(&op_file), &["org", "list"])).await.expect(3);
    assert!(out.stderr.contains(&closed) && out.stderr.contains("TALLY_AUTHORITY_URL"), "{out:?}");
    let out = tally(&["--verifier", &closed, "check", "tly_AAAA", "--action", "read"]).await.expect(3);
    assert!(out.stderr.contains("TALLY_VERIFIER_URL"), "{out:?}");
    assert!(!out.stderr.contains("tly_AAAA"), "{out:?}");

    // Bad arguments are clap's usage errors (2).
    tally(&["key", "retire", "not-a-number"]).await.expect(2);
    tally(&["--authority", "http://[::1", "--token-file", path(&op_file), "org", "list"]).await.expect(2);
}

/// The bootstrap token with its last signature character changed: well-formed, not genuine.
fn tally_tests_forge(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() - 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn check_and_status_against_a_verifier() {
    let authority = Authority::start().await;
    let url = authority.url();
    authority.create_org("acme").await;
    let mut verifier =
        Verifier::start(&url, &authority.system_token("verifier", &[]).await, VerifierOptions::default()).await;
    verifier.wait_synced().await;
    let vurl = format!("http://{}", verifier.addr());
    let dir = tempfile::tempdir().unwrap();
    let op_file = token_file(dir.path(), "operator.token", authority.bootstrap());
    let token = authority.mint("acme", &["action in read", "subject = alice"]).await.token;

    // status: serving (0), JSON and text.
    let v = tally(&["--verifier", &vurl, "status", "--json"]).await.expect(0).json();
    assert_eq!(v["serving"], true);
    assert_eq!(v["region"], "eu");
    let text = tally(&["--verifier", &vurl, "status"]).await.expect(0).stdout;
    assert!(text.contains("region") && text.contains("eu"), "{text}");
    assert_eq!(v["authority"], url.as_str(), "the authority it follows");

    // status of the authority itself (an operator's token): its replica id, database and head.
    let opf = path(&op_file);
    let s = tally(&["--authority", &url, "--token-file", opf, "status", "--of", "authority", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!((s["serving"].clone(), s["vouching"].clone()), (Value::Bool(true), Value::Bool(true)));
    assert_eq!(s["database"], authority.db().arg(), "{s}");
    assert!(s["replica"].as_str().is_some_and(|r| !r.is_empty()), "{s}");
    assert!(s["epoch"].as_str().is_some_and(|e| e.len() == 32), "{s}");

    // allowed (0): from the authority first, then from the cache.
    let v = tally(&["--verifier", &vurl, "check", &token, "--action", "read", "--json"]).await.expect(0).json();
    assert_eq!((v["allowed"].clone(), v["reason"].clone()), (Value::Bool(true), Value::from("ok")));
    assert_eq!(v["org"], "acme");
    assert_eq!(v["subject"], "alice");
    assert_eq!(v["source"], "authority");
    let out = tally_with(&["check", "-", "--action", "read"], &[("TALLY_VERIFIER_URL", vurl.as_str())], &token)
        .await
        .expect(0);
    assert!(out.stdout.contains("allowed for org acme, subject alice (from cache)"), "{out:?}");

    // denied (1): the failed caveat in JSON and on stderr.
    let out = tally(&["--verifier", &vurl, "check", &token, "--action", "write", "--json"]).await.expect(1);
    let v = out.json();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["reason"], "caveat_failed");
    assert_eq!(v["failed_caveat"], "action in read");
    let out = tally(&["--verifier", &vurl, "check", &token, "--action", "write"]).await.expect(1);
    assert!(out.stderr.contains("denied: caveat_failed: `action in read` does not hold"), "{out:?}");
    assert!(!out.stderr.contains(&token), "{out:?}");

    // After a CLI revocation reaches the verifier, check denies: revoked.
    let v = tally(&op(&url, path(&op_file), &["revoke", "token", &token, "--json"])).await.expect(0).json();
    verifier.wait_applied(v["seq"].as_u64().unwrap()).await;
    let v = tally(&["--verifier", &vurl, "check", &token, "--action", "read", "--json"]).await.expect(1).json();
    assert_eq!(v["reason"], "revoked");

    // Garbage is a usage error (2), not a denial.
    tally(&["--verifier", &vurl, "check", "not a token", "--action", "read"]).await.expect(2);

    // The verifier gone: 3.
    verifier.kill_9();
    let out: Out = tally(&["--verifier", &vurl, "status"]).await.expect(3);
    assert!(out.stderr.contains("cannot reach the verifier"), "{out:?}");
}

#[tokio::test]
async fn watch_follows_the_revocation_stream() {
    let authority = Authority::start().await;
    let url = authority.url();
    authority.create_org("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let op_file = token_file(dir.path(), "operator.token", authority.bootstrap());
    let opf = path(&op_file);
    let first = authority.mint("acme", &[]).await;
    let seq1 = tally(&op(&url, opf, &["revoke", "family", &first.family, "--json"])).await.expect(0).json()["seq"]
        .as_u64()
        .unwrap();

    // A follower in JSON: the replay first, then live events as they happen.
    let tally_bin = Path::new(env!("CARGO_BIN_EXE_tally"));
    let follower = Child::spawn(tally_bin, op(&url, opf, &["watch", "--json", "--heartbeats"]), &[]).unwrap();
    let line = follower.wait_for_stdout(DEADLINE, |l| l.contains(r#""event":"revocation""#)).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((v["seq"].as_u64(), v["kind"].as_str()), (Some(seq1), Some("family")));
    assert_eq!(v["family"].as_str(), Some(first.family.as_str()));
    follower.wait_for_stdout(DEADLINE, |l| l.contains(r#""event":"heartbeat""#)).await.unwrap();

    // A holder's revocation of an attenuated token is a branch of the family
    // (of the token as minted, the family itself); a key revocation names the key.
    let second = authority.mint("acme", &["action in read"]).await;
    let mut attenuated = tally_token::Macaroon::from_text(&second.token, &Default::default()).unwrap();
    attenuated.add_first_party("resource = docs/*");
    tally(&["--authority", &url, "revoke", "token", &attenuated.to_text()]).await.expect(0);
    let line = follower.wait_for_stdout(DEADLINE, |l| l.contains(r#""kind":"branch""#)).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["family"].as_str(), Some(second.family.as_str()));
    assert_eq!(v["branch"].as_str().map(str::len), Some(32));
    tally(&op(&url, opf, &["revoke", "key", &second.key_id.to_string()])).await.expect(0);
    let line = follower.wait_for_stdout(DEADLINE, |l| l.contains(r#""kind":"key""#)).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["key_id"].as_u64(), Some(second.key_id));
    // Every line is JSON, and no token or signature shows up.
    for line in follower.stdout().snapshot() {
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(!line.contains(&second.token) && !line.contains("tly_"), "{line}");
    }
    drop(follower);

    // Text, from a position, stopping after a count: exit 0 with one line per revocation.
    let out = tally(&op(&url, opf, &["watch", "--after", &seq1.to_string(), "--count", "2"])).await.expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(lines[0].starts_with(&format!("seq {}  revoked branch ", seq1 + 1)), "{out:?}");
    assert!(lines[1].contains(&format!("retired key {}", second.key_id)), "{out:?}");

    // A verifier token may follow the stream too; without a token the authority refuses (1).
    let vfile = token_file(dir.path(), "verifier.token", &authority.system_token("verifier", &[]).await);
    tally(&op(&url, path(&vfile), &["watch", "--count", "1"])).await.expect(0);
    let anon = token_file(dir.path(), "holder.token", &authority.mint("acme", &[]).await.token);
    tally(&op(&url, path(&anon), &["watch", "--count", "1"])).await.expect(1);

    // The authority going away ends the follower with 3 and how to resume.
    let follower = Child::spawn(tally_bin, op(&url, opf, &["watch"]), &[]).unwrap();
    follower.wait_for_stdout(DEADLINE, |l| l.contains("retired key")).await.unwrap();
    let mut authority = authority;
    authority.stop().await.unwrap();
    let mut follower = follower;
    let status = follower.wait(DEADLINE).await.unwrap();
    assert_eq!(status.code(), Some(3), "{:?}", follower.stderr().snapshot());
    let err = follower.stderr().snapshot().join("\n");
    assert!(err.contains("tally watch --after"), "{err}");
}

#[tokio::test]
async fn audit_tail_shows_who_did_what_and_follows() {
    let authority = Authority::start().await;
    let url = authority.url();
    let dir = tempfile::tempdir().unwrap();
    let op_file = token_file(dir.path(), "operator.token", authority.bootstrap());
    let opf = path(&op_file);
    tally(&op(&url, opf, &["org", "create", "acme"])).await.expect(0);
    tally(&op(&url, opf, &["org", "create", "beta"])).await.expect(0);
    let minted = tally(&op(&url, opf, &["mint", "--json", "--org", "acme"])).await.expect(0).json();
    let (token, family) = (minted["token"].as_str().unwrap(), minted["family"].as_str().unwrap());
    tally(&op(&url, opf, &["revoke", "family", family, "--reason", "lost laptop"])).await.expect(0);
    tally(&op(&url, opf, &["mint", "--org", "beta"])).await.expect(0);

    // The newest three, oldest first, as JSON Lines.
    let out = tally(&op(&url, opf, &["audit", "tail", "-n", "3", "--json"])).await.expect(0);
    let entries: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["mint", "revoke", "mint"], "{out:?}");
    let ids: Vec<u64> = entries.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(entries[1]["target"].as_str(), Some(family));
    assert_eq!(entries[1]["detail"].as_str(), Some("lost laptop"));
    assert_eq!(entries[1]["org"].as_str(), Some("acme"));
    assert!(entries.iter().all(|e| e["outcome"] == "ok" && e["actor"].as_str().unwrap().starts_with("operator:")));
    assert!(entries[2]["at"].as_str().unwrap().ends_with('Z'), "{out:?}");

    // One org's entries: its creation, the mint and the revocation.
    let out = tally(&op(&url, opf, &["audit", "tail", "--org", "acme", "--json"])).await.expect(0);
    let acme: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = acme.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["org.create", "mint", "revoke"], "{out:?}");
    // Text: one line per entry; never the token.
    let text = tally(&op(&url, opf, &["audit", "tail", "--org", "acme"])).await.expect(0).stdout;
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().nth(2).unwrap().contains("ok  revoke  operator:"), "{text}");
    assert!(!text.contains(token) && !out.stdout.contains(token) && !text.contains("tly_"), "{text}");

    // `--after` prints everything after an entry.
    let after = acme[0]["id"].as_u64().unwrap();
    let out = tally(&op(&url, opf, &["audit", "tail", "--after", &after.to_string(), "--json"])).await.expect(0);
    let ids: Vec<u64> =
        out.stdout.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.first(), Some(&(after + 1)), "{out:?}");
    assert!(ids.contains(&entries[2]["id"].as_u64().unwrap()), "{out:?}");

    // An org-scoped operator reads its own org only; the refusal is audited.
    let scoped = token_file(dir.path(), "acme-op.token", &authority.system_token("operator", &["org = acme"]).await);
    let sf = path(&scoped);
    let mine = tally(&op(&url, sf, &["audit", "tail", "--org", "acme", "--json"])).await.expect(0);
    assert_eq!(mine.stdout.lines().count(), 3, "{mine:?}");
    let out = tally(&op(&url, sf, &["audit", "tail", "--org", "beta"])).await.expect(1);
    assert!(out.stderr.contains("permission denied"), "{out:?}");
    tally(&op(&url, sf, &["audit", "tail"])).await.expect(1);
    let denied = tally_tests::try_eventually(DEADLINE, || async {
        let out = tally(&op(&url, opf, &["audit", "tail", "--org", "beta", "-n", "1", "--json"])).await.expect(0);
        let v: Value = serde_json::from_str(out.stdout.trim()).map_err(|e| e.to_string())?;
        if v["outcome"] == "denied" { Ok(v) } else { Err(format!("newest beta entry is {v}")) }
    })
    .await
    .unwrap();
    assert_eq!(denied["action"], "audit.read");
    // Bad arguments are usage errors (2).
    tally(&op(&url, opf, &["audit", "tail", "-n", "0"])).await.expect(2);
    tally(&op(&url, opf, &["audit", "tail", "--org", "Not An Org"])).await.expect(2);

    // `--follow` prints new entries as they are written.
    let tally_bin = Path::new(env!("CARGO_BIN_EXE_tally"));
    let args = op(&url, opf, &["audit", "tail", "-f", "-n", "1", "--json", "--poll-interval", "100ms"]);
    let follower = Child::spawn(tally_bin, args, &[]).unwrap();
    follower.wait_for_stdout(DEADLINE, |l| l.contains(r#""action""#)).await.unwrap();
    tally(&op(&url, opf, &["key", "rotate", "beta"])).await.expect(0);
    let line = follower.wait_for_stdout(DEADLINE, |l| l.contains(r#""action":"key.rotate""#)).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["org"], "beta");
}
