//! Tally's own credentials where they do not belong. A verifier started on an
//! operator token (or on one attenuated with `role = verifier`, which never
//! holds: two roles) refuses to start with one line naming the file and the
//! role, never the token; a genuine verifier token starts and syncs. An
//! authority whose KEK file group or others may read warns at start, naming
//! the file and its mode, never the KEK; one whose file is its owner's alone
//! says nothing.

use tally_proto::v1 as pb;
use tally_tests::{Authority, AuthorityOptions, TEST_KEK_HEX, Verifier, VerifierOptions, bearer};
use tally_token::{Limits, Macaroon};

/// A secret leaks when any piece of it this long appears.
const MIN_LEAK: usize = 16;
/// What the authority's warning says.
const TOO_OPEN: &str = "are too open";

/// The first line of `lines` that holds a `MIN_LEAK`-character piece of `secret`.
fn leak<'l>(lines: &'l [String], secret: &str) -> Option<&'l String> {
    let pieces: Vec<&str> = (0..=secret.len().saturating_sub(MIN_LEAK)).map(|i| &secret[i..i + MIN_LEAK]).collect();
    lines.iter().find(|l| pieces.iter().any(|p| l.contains(p)))
}

/// Starts a verifier on `token`, expects it to refuse; returns its one line.
async fn refused(a: &Authority, token: &str) -> String {
    let (status, child) = Verifier::start_refused(&a.url(), token, VerifierOptions::default()).await;
    assert!(!status.success(), "{status}");
    let (stdout, stderr) = (child.stdout().snapshot(), child.stderr().snapshot());
    assert!(stdout.is_empty(), "nothing on stdout: {stdout:?}");
    let said: Vec<&String> = stderr.iter().filter(|l| !l.trim().is_empty()).collect();
    let [line] = said.as_slice() else { panic!("one line on stderr, not {stderr:#?}") };
    assert!(line.contains("verifier.token"), "names the file: {line}");
    assert_eq!(leak(&stderr, token), None, "the token is never quoted");
    (*line).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_refuses_an_operator_token() {
    let a = Authority::start().await;
    let line = refused(&a, a.bootstrap()).await;
    assert!(line.contains("role `operator`"), "names the role: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_refuses_an_operator_token_attenuated_to_verifier() {
    let a = Authority::start().await;
    let mut m = Macaroon::from_text(a.bootstrap(), &Limits::default()).expect("the bootstrap token parses");
    m.add_first_party("role = verifier");
    let attenuated = m.to_text();
    // The authority agrees: two roles never hold, so it is nobody's credential.
    let req = pb::SubscribeRequest { from_seq: 0, epoch: String::new(), from_digest: Vec::new() };
    let status = a.client().subscribe(bearer(req, &attenuated)).await.expect_err("refused by the authority");
    assert!(
        matches!(status.code(), tonic::Code::PermissionDenied | tonic::Code::Unauthenticated),
        "{:?}",
        status.code()
    );

    let line = refused(&a, &attenuated).await;
    assert!(line.contains("roles `operator` and `verifier`"), "names both roles: {line}");
    assert_eq!(leak(std::slice::from_ref(&line), a.bootstrap()), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_starts_and_syncs_on_a_verifier_token() {
    let a = Authority::start().await;
    let token = a.system_token("verifier", &[]).await;
    let v = Verifier::start(&a.url(), &token, VerifierOptions::default()).await;
    v.wait_synced().await;
    let log = v.stderr_lines();
    assert_eq!(leak(&log, &token), None);
    assert!(!log.iter().any(|l| l.contains("token file")), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_warns_about_a_kek_file_others_may_read() {
    let a = Authority::start_with(AuthorityOptions { kek_mode: 0o644, ..AuthorityOptions::default() }).await;
    let warned = |lines: &[String]| {
        lines.iter().filter(|l| l.contains("WARN") && l.contains(TOO_OPEN)).cloned().collect::<Vec<_>>()
    };
    let serve = warned(&a.stderr_lines());
    let [line] = serve.as_slice() else { panic!("one warning from serve, not {serve:#?}") };
    assert!(line.contains("permissions 0644") && line.contains("kek.hex"), "names the file and its mode: {line}");
    assert_eq!(warned(&a.log_lines()).len(), 2, "init warns too: {:#?}", a.log_lines());
    assert_eq!(leak(&a.log_lines(), TEST_KEK_HEX), None, "never the KEK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_says_nothing_of_a_kek_file_only_its_owner_may_read() {
    let a = Authority::start_with(AuthorityOptions { kek_mode: 0o600, ..AuthorityOptions::default() }).await;
    a.create_org("acme").await;
    let log = a.log_lines();
    assert!(!log.iter().any(|l| l.contains(TOO_OPEN) || l.contains("KEK file")), "{log:#?}");
}
