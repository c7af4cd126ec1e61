//! Bad TLS configuration stops the authority and the verifier at startup
//! with one clear line that names the file at fault: a missing file, a file
//! that is not PEM, a key that does not belong to its certificate, a URL
//! scheme that does not match. Never a panic, and never key material in the
//! output.

use std::path::Path;

use tally_tests::{AUTHORITY, CertFiles, Child, DEADLINE, TEST_KEK_HEX, VERIFIER, binary_in, certs};
use tally_token::{KeyId, Macaroon, RootKey, TallyId};

struct Files {
    certs: CertFiles,
    kek: String,
    token: String,
    garbage: String,
    _dir: tempfile::TempDir,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs::generate(&dir.path().join("pki"), &[]).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let kek = write("kek.hex", TEST_KEK_HEX);
    // A `role = verifier` token (under a key only this test knows): the
    // verifier refuses any other credential before it reads its TLS files.
    let mut m = Macaroon::mint(&RootKey::from_bytes([1; 32]), TallyId::new(KeyId(1), [2; 16]).encode(), None);
    m.add_first_party("role = verifier");
    let token = write("verifier.token", &m.to_text());
    let garbage = write("garbage.pem", "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n");
    Files { certs, kek, token, garbage, _dir: dir }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Runs a binary that must refuse to start; returns its exit code and stderr.
async fn refused(bin: &Path, args: Vec<String>, keys: &[&Path]) -> (i32, String) {
    let mut child = Child::spawn(bin, args, &[("RUST_LOG", "debug")]).unwrap();
    let status = child.wait(DEADLINE).await.unwrap();
    let mut output = child.stderr().snapshot();
    output.extend(child.stdout().snapshot());
    let output = output.join("\n");
    assert!(!status.success(), "it started: {output}");
    assert!(!output.contains("panicked"), "{output}");
    assert!(!output.contains("listening on"), "{output}");
    // No line of any private key's PEM body appears.
    for key in keys {
        let pem = std::fs::read_to_string(key).unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!output.contains(line), "key material of {} in the output", key.display());
        }
    }
    (status.code().unwrap_or(-1), output)
}

fn authority_serve(f: &Files, tls: &[&str]) -> Vec<String> {
    // The database need not exist: TLS is checked before it is opened.
    let mut args: Vec<String> =
        ["serve", "--db", "/nonexistent/authority.db", "--kek-file", &f.kek, "--listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
    args.extend(tls.iter().map(|a| a.to_string()));
    args
}

#[tokio::test]
async fn the_authority_names_the_file_at_fault() {
    let f = files();
    let c = &f.certs;
    let bin = binary_in(AUTHORITY.package, AUTHORITY.name);
    let keys = [c.authority_key.as_path(), c.verifier_key.as_path()];
    let missing = s(&c.dir.join("missing.pem"));
    let (cert, key, ca) = (s(&c.authority_cert), s(&c.authority_key), s(&c.ca));
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // What is wrong, and what the one line must say.
        (vec!["--tls-cert", &missing, "--tls-key", &key], vec!["cannot read certificate", &missing]),
        (vec!["--tls-cert", &cert, "--tls-key", &missing], vec!["cannot read private key", &missing]),
        (vec!["--tls-cert", &cert, "--tls-key", &f.garbage], vec!["private key", &f.garbage, "not usable PEM"]),
        (vec!["--tls-cert", &f.garbage, "--tls-key", &key], vec!["certificate", &f.garbage, "not usable PEM"]),
        (vec!["--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", &missing], vec!["client CA", &missing]),
        (vec!["--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", &key], vec!["client CA", &key]),
    ];
    for (tls, expect) in cases {
        let (code, out) = refused(&bin, authority_serve(&f, &tls), &keys).await;
        assert_eq!(code, 1, "{tls:?}: {out}");
        for word in expect {
            assert!(out.contains(word), "{tls:?}: {word:?} not in {out}");
        }
    }

    // A key that belongs to another certificate names both files.
    let other_key = s(&c.verifier_key);
    let (code, out) = refused(&bin, authority_serve(&f, &["--tls-cert", &cert, "--tls-key", &other_key]), &keys).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&cert) && out.contains(&other_key), "{out}");
    assert!(out.contains("does not belong to the certificate"), "{out}");
    assert!(out.contains("--tls-cert"), "the flags are named: {out}");

    // Half a pair is a usage error.
    let (code, out) = refused(&bin, authority_serve(&f, &["--tls-cert", &cert]), &keys).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--tls-key"), "{out}");
    let (code, out) = refused(&bin, authority_serve(&f, &["--tls-client-ca", &ca]), &keys).await;
    assert_eq!(code, 2, "{out}");
}

#[tokio::test]
async fn the_verifier_names_the_file_at_fault() {
    let f = files();
    let c = &f.certs;
    let bin = binary_in(VERIFIER.package, VERIFIER.name);
    let keys = [c.verifier_key.as_path(), c.check_key.as_path(), c.authority_key.as_path()];
    let missing = s(&c.dir.join("missing.pem"));
    let (ca, cert) = (s(&c.ca), s(&c.verifier_cert));
    let (wrong_key, check_cert) = (s(&c.authority_key), s(&c.check_cert));
    let serve = |url: &str, extra: &[&str]| {
        let mut args: Vec<String> = ["serve", "--authority", url, "--token-file", &f.token, "--listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let https = "https://127.0.0.1:1";
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (serve(https, &["--authority-ca", &missing]), vec!["cannot read CA certificate", &missing]),
        (serve(https, &["--authority-ca", &f.garbage]), vec![&f.garbage]),
        (
            serve(https, &["--authority-ca", &ca, "--tls-client-cert", &cert, "--tls-client-key", &missing]),
            vec!["cannot read client key", &missing],
        ),
        (
            serve(https, &["--authority-ca", &ca, "--tls-client-cert", &cert, "--tls-client-key", &wrong_key]),
            vec![&cert, &wrong_key, "does not belong"],
        ),
        (serve(https, &[]), vec!["needs --authority-ca"]),
        (serve("http://127.0.0.1:1", &["--authority-ca", &ca]), vec!["needs an https://"]),
        (
            serve(https, &["--authority-ca", &ca, "--tls-cert", &check_cert, "--tls-key", &missing]),
            vec!["Check-port TLS", &missing],
        ),
    ];
    for (args, expect) in cases {
        let (code, out) = refused(&bin, args.clone(), &keys).await;
        assert_eq!(code, 1, "{args:?}: {out}");
        for word in expect {
            assert!(out.contains(word), "{args:?}: {word:?} not in {out}");
        }
    }
    // A client certificate without its key is a usage error.
    let (code, out) = refused(&bin, serve(https, &["--authority-ca", &ca, "--tls-client-cert", &cert]), &keys).await;
    assert_eq!(code, 2, "{out}");
}
