//! The `tally` CLI against an authority that requires client certificates
//! and a verifier whose Check port serves TLS: the CA and client
//! certificate flags (and their variables), and the errors when they are
//! missing or do not fit the URL.

use crate::support;

use support::{path, tally, tally_with, token_file};
use tally_tests::{Authority, AuthorityOptions, UpstreamTls, Verifier, VerifierOptions, certs};

#[tokio::test]
async fn commands_over_mtls_and_a_tls_check_port() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs::generate(&dir.path().join("pki"), &[]).unwrap();
    let authority =
        Authority::start_with(AuthorityOptions { tls: Some(c.clone()), ..AuthorityOptions::default() }).await;
    authority.create_org("acme").await;
    let options = VerifierOptions {
        authority_tls: Some(UpstreamTls::genuine(&c)),
        check_tls: Some(c.clone()),
        ..VerifierOptions::default()
    };
    let verifier = Verifier::start(&authority.url(), &authority.system_token("verifier", &[]).await, options).await;
    verifier.wait_synced().await;
    let op_file = token_file(dir.path(), "operator.token", authority.bootstrap());
    let (url, vurl) = (authority.url(), format!("https://{}", verifier.addr()));
    let (ca, cert, key) = (path(&c.ca), path(&c.operator_cert), path(&c.operator_key));
    let tls = ["--authority-ca", ca, "--tls-client-cert", cert, "--tls-client-key", key];

    // Flags, then the same through the environment.
    let mut args = vec!["--authority", &url, "--token-file", path(&op_file)];
    args.extend(tls);
    args.extend(["org", "list", "--json"]);
    let v = tally(&args).await.expect(0).json();
    assert!(v["orgs"].as_array().unwrap().iter().any(|o| o["org"] == "acme"), "{v}");
    let env = [
        ("TALLY_AUTHORITY_URL", url.as_str()),
        ("TALLY_TOKEN_FILE", path(&op_file)),
        ("TALLY_AUTHORITY_CA", ca),
        ("TALLY_TLS_CLIENT_CERT", cert),
        ("TALLY_TLS_CLIENT_KEY", key),
    ];
    let token = tally_with(&["mint", "--org", "acme"], &env, "").await.expect(0).stdout.trim().to_owned();
    assert!(token.starts_with("tly_"), "{token}");

    // The verifier's Check port over TLS.
    let out = tally(&["--verifier", &vurl, "--verifier-ca", ca, "check", &token, "--action", "read"]).await.expect(0);
    assert!(out.stdout.contains("allowed"), "{out:?}");
    tally(&["--verifier", &vurl, "--verifier-ca", ca, "status"]).await.expect(0);

    // No client certificate: the authority refuses the connection (3).
    let out = tally(&["--authority", &url, "--token-file", path(&op_file), "--authority-ca", ca, "org", "list"])
        .await
        .expect(3);
    assert!(out.stderr.contains("--tls-client-cert"), "the message says what to fix: {out:?}");

    // Usage errors (2) that name what to fix.
    let out = tally(&["--authority", &url, "--token-file", path(&op_file), "org", "list"]).await.expect(2);
    assert!(out.stderr.contains("--authority-ca"), "{out:?}");
    let plain = url.replacen("https://", "http://", 1);
    let out = tally(&["--authority", &plain, "--token-file", path(&op_file), "--authority-ca", ca, "org", "list"])
        .await
        .expect(2);
    assert!(out.stderr.contains("needs an https://"), "{out:?}");
    let out = tally(&[
        "--authority",
        &url,
        "--token-file",
        path(&op_file),
        "--authority-ca",
        ca,
        "--tls-client-cert",
        cert,
        "org",
        "list",
    ])
    .await
    .expect(2);
    assert!(out.stderr.contains("--tls-client-key"), "{out:?}");
    let missing = dir.path().join("missing.pem");
    let out = tally(&["--verifier", &vurl, "--verifier-ca", path(&missing), "status"]).await.expect(2);
    assert!(out.stderr.contains(path(&missing)), "{out:?}");
    assert!(!out.stderr.contains(&token), "{out:?}");
}
