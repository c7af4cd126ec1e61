//! The offline `tally token …` commands, driven as a user would: the real
//! binary, real key files, exit codes and one-line errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tally-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn key(&self, name: &str, byte: u8) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, format!("{}\n", hex(&[byte; 32]))).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tally(args: &[&str]) -> Output {
    tally_stdin(args, "")
}

fn tally_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // A write error here means the command exited before reading stdin, which
    // is an allowed reaction to a bad argument.
    let _ = pipe.write_all(stdin.as_bytes());
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = tally(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn mint_attenuate_discharge_bundle_inspect_verify() {
    let dir = Dir::new("flow");
    let root = dir.key("root", 7);
    let tp = dir.key("tp", 9);
    let token = ok(&["token", "mint", "--root-key-file", path(&root), "--key-id", "3", "--caveat", "org = acme"]);
    assert!(token.starts_with("tly_"));
    let child = ok(&[
        "token",
        "attenuate",
        &token,
        "--caveat",
        "action in read",
        "--third-party",
        "https://idp",
        "--third-party-key-file",
        path(&tp),
        "--third-party-id",
        "cav-1",
    ]);
    let discharge =
        ok(&["token", "discharge", "--root-key-file", path(&tp), "--id", "cav-1", "--caveat", "subject = bob"]);
    let bundle = ok(&["token", "bundle", &child, &discharge]);

    let inspected: serde_json::Value = serde_json::from_str(&ok(&["token", "inspect", &child])).unwrap();
    assert_eq!(inspected["key_id"], 3);
    assert_eq!(inspected["caveats"], serde_json::json!(["org = acme", "action in read"]));
    assert_eq!(inspected["third_party_caveats"][0]["id"], "cav-1");
    assert_eq!(inspected["nonce"].as_str().unwrap().len(), 32);
    assert!(!ok(&["token", "inspect", &child]).contains("signature"));

    let verdict: serde_json::Value =
        serde_json::from_str(&ok(&["token", "verify", &bundle, "--root-key-file", path(&root), "--action", "read"]))
            .unwrap();
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["org"], "acme");
    assert_eq!(verdict["subject"], "bob");

    // The same bundle from stdin.
    let out = tally_stdin(&["token", "verify", "-", "--root-key-file", path(&root), "--action", "read"], &bundle);
    assert!(out.status.success());

    // Invalid verdicts exit 1 with a reason.
    for (args, reason) in [
        (vec!["token", "verify", &bundle, "--root-key-file", path(&root), "--action", "write"], "not satisfied"),
        (vec!["token", "verify", &child, "--root-key-file", path(&root), "--action", "read"], "no discharge"),
        (vec!["token", "verify", &bundle, "--root-key-file", path(&tp), "--action", "read"], "signature mismatch"),
        (
            vec!["token", "verify", &bundle, "--root-key-file", path(&root), "--action", "read", "--subject", "eve"],
            "subject",
        ),
    ] {
        let out = tally(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(reason), "{args:?}");
    }
}

#[test]
fn expiry_is_evaluated_at_the_given_instant() {
    let dir = Dir::new("expiry");
    let root = dir.key("root", 1);
    let token = ok(&[
        "token",
        "mint",
        "--root-key-file",
        path(&root),
        "--key-id",
        "1",
        "--caveat",
        "expires < 2030-01-01T00:00:00Z",
    ]);
    let verify_at = |at: &str| tally(&["token", "verify", &token, "--root-key-file", path(&root), "--at", at]);
    assert_eq!(verify_at("2029-12-31T23:59:00Z").status.code(), Some(0));
    let late = verify_at("2030-01-01T00:00:05Z");
    assert_eq!(late.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&late.stderr).contains("expired"));
}

/// Every kind of bad input: exit 1 or 2, one line on stderr, no panic.
#[test]
fn bad_input_is_a_one_line_error() {
    let dir = Dir::new("bad");
    let root = dir.key("root", 1);
    std::fs::write(dir.0.join("short"), "abcd").unwrap();
    let token = ok(&["token", "mint", "--root-key-file", path(&root), "--key-id", "1", "--caveat", "service = web"]);
    let body = token.strip_prefix("tly_").unwrap();
    let truncated = format!("tly_{}", &body[..body.len() / 2]);
    let oversized = format!("tly_{}", "A".repeat(1 << 20));
    // Thousands of caveats, validly encoded: rejected by the caveat-count limit.
    let many = {
        let caveats: Vec<String> = (0..1000).map(|i| format!("subject = s{i}")).collect();
        let mut args = vec!["token", "attenuate", "-"];
        for c in &caveats {
            args.extend(["--caveat", c]);
        }
        let out = tally_stdin(&args, &token);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let short_key = dir.0.join("short");
    let missing_key = dir.0.join("nope");
    let trailing = format!("{token},");
    let empty_part = format!("{token},,{token}");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("garbage", vec!["token", "verify", "not a token at all", "--root-key-file", path(&root)]),
        ("binary garbage", vec!["token", "verify", "AAECAwQFBgc", "--root-key-file", path(&root)]),
        ("truncated", vec!["token", "verify", &truncated, "--root-key-file", path(&root)]),
        ("oversized", vec!["token", "verify", "-", "--root-key-file", path(&root)]),
        ("too many caveats", vec!["token", "verify", &many, "--root-key-file", path(&root)]),
        ("invalid base64", vec!["token", "inspect", "tly_@@@@"]),
        ("empty bundle part", vec!["token", "verify", &empty_part, "--root-key-file", path(&root)]),
        ("trailing comma", vec!["token", "inspect", &trailing]),
        ("empty token", vec!["token", "inspect", ""]),
        ("bad key file", vec!["token", "verify", &token, "--root-key-file", path(&short_key)]),
        ("missing key file", vec!["token", "verify", &token, "--root-key-file", path(&missing_key)]),
        ("bad caveat", vec!["token", "attenuate", &token, "--caveat", "colour = red"]),
        ("bad instant", vec!["token", "verify", &token, "--root-key-file", path(&root), "--at", "tomorrow"]),
        ("bundle given to attenuate", vec!["token", "attenuate", &empty_part]),
        ("unknown flag", vec!["token", "mint", "--nope"]),
    ];
    for (name, args) in cases {
        // Over 128 KiB does not fit in one argument on Linux: the oversized token comes on stdin.
        let out = if name == "oversized" { tally_stdin(&args, &oversized) } else { tally(&args) };
        let code = out.status.code();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(code, Some(1 | 2)), "{name}: exit {code:?}, stderr {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        if name != "unknown flag" {
            // clap's usage errors are multi-line by design; ours are one line.
            assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
        }
        assert!(out.stdout.is_empty(), "{name}: printed to stdout");
    }
}
