//! mTLS between verifiers and the authority, with real processes and a
//! throwaway PKI (`tally_tests::certs`): a verifier with a genuine client
//! certificate syncs and answers; one without a certificate, or with one
//! from another CA, is refused at the handshake and fails closed; a raw
//! Subscribe needs both the certificate and the bearer token; a verifier
//! refuses an authority whose certificate its `--authority-ca` did not sign;
//! and the Check port serves TLS when asked.

use std::time::Duration;

use tally_proto::v1::authority_client::AuthorityClient;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::{CheckRequest, Reason, RevokeRequest, Source, SubscribeRequest};
use tally_tests::{
    Authority, AuthorityOptions, CertFiles, DEADLINE, UpstreamTls, Verifier, VerifierOptions, bearer, certs,
    eventually, metric, scrape,
};
use tonic::Code;
use tonic::transport::Channel;

/// Handshake refusals the authority must log before a refused verifier is
/// judged: each is one of the verifier's attempts, so by then it has tried
/// (and been refused) repeatedly.
const REFUSALS_SEEN: usize = 3;
const REFUSED: &str = "TLS handshake refused";

struct Deployment {
    certs: CertFiles,
    authority: Authority,
    verifier_token: String,
    _dir: tempfile::TempDir,
}

/// An authority serving mTLS (and metrics) with a fresh PKI, and an org.
async fn deployment() -> Deployment {
    deployment_logging("info").await
}

async fn deployment_logging(rust_log: &str) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs::generate(dir.path(), &[]).unwrap();
    let options = AuthorityOptions {
        tls: Some(certs.clone()),
        serve_args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
        rust_log: rust_log.into(),
        ..AuthorityOptions::default()
    };
    let authority = Authority::start_with(options).await;
    authority.create_org("acme").await;
    let verifier_token = authority.system_token("verifier", &[]).await;
    Deployment { certs, authority, verifier_token, _dir: dir }
}

impl Deployment {
    async fn verifier(&self, tls: UpstreamTls) -> Verifier {
        let options = VerifierOptions { authority_tls: Some(tls), ..VerifierOptions::default() };
        Verifier::start(&self.authority.url(), &self.verifier_token, options).await
    }

    fn refusals(&self) -> usize {
        self.authority.stderr_lines().iter().filter(|l| l.contains(REFUSED)).count()
    }

    async fn authority_metric(&mut self, name: &str) -> f64 {
        const METRICS: &str = "metrics on ";
        let line = self.authority.process().wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await.unwrap();
        let text = scrape(line[METRICS.len()..].trim().parse().unwrap()).await.unwrap();
        metric(&text, name).unwrap_or_else(|| panic!("no {name} in {text}"))
    }
}

/// A tonic channel to the authority that trusts `ca` and presents `client`.
async fn channel(url: &str, ca: &std::path::Path, client: Option<(&std::path::Path, &std::path::Path)>) -> Channel {
    let config = tally_proto::tls::client_config(ca, client).unwrap();
    Channel::from_shared(url.to_owned()).unwrap().tls_config(config).unwrap().connect_lazy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_with_a_genuine_client_certificate_syncs_checks_and_hears_revocations() {
    // At debug level, to show that no private key reaches any log.
    let d = deployment_logging("debug").await;
    assert!(d.authority.url().starts_with("https://"), "{}", d.authority.url());
    let options = VerifierOptions {
        authority_tls: Some(UpstreamTls::genuine(&d.certs)),
        rust_log: "debug".into(),
        ..VerifierOptions::default()
    };
    let v = Verifier::start(&d.authority.url(), &d.verifier_token, options).await;
    v.wait_synced().await;

    let token = d.authority.mint("acme", &[]).await;
    let first = v.check(&token.token, "read").await;
    assert!(first.allowed, "{first:?}");
    assert_eq!(first.source(), Source::Authority, "a cold miss goes to the authority over mTLS");
    assert_eq!(v.check(&token.token, "read").await.source(), Source::Cache);

    // The stream (its own connection, also mTLS) carries revocations.
    let req = RevokeRequest { target: Some(Target::Family(token.family.clone())), reason: String::new() };
    let seq = d.authority.client().revoke(bearer(req, d.authority.bootstrap())).await.unwrap().into_inner().seq;
    v.wait_applied(seq).await;
    let after = v.check(&token.token, "read").await;
    assert!(!after.allowed, "{after:?}");
    assert_eq!(after.reason(), Reason::Revoked);
    assert_eq!(d.refusals(), 0, "no handshake was refused: {:?}", d.authority.stderr_lines());

    let mut output = d.authority.log_lines();
    output.extend(v.stderr_lines());
    for key in [&d.certs.authority_key, &d.certs.verifier_key, &d.certs.operator_key] {
        let pem = std::fs::read_to_string(key).unwrap();
        for piece in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!output.iter().any(|l| l.contains(piece)), "a line of {} is in the logs", key.display());
        }
    }
}

/// A verifier the authority refuses at the handshake: never ready, and a
/// fresh token is denied as the authority being unavailable.
async fn refused_verifier(mut d: Deployment, tls: UpstreamTls) {
    let v = d.verifier(tls).await;
    eventually(DEADLINE, || async {
        let n = d.refusals();
        if n >= REFUSALS_SEEN { Ok(()) } else { Err(format!("{n} refusals logged so far")) }
    })
    .await;
    let status = v.status().await;
    assert!(!status.synced, "a refused verifier never syncs: {status:?}");
    assert_eq!(status.applied_seq, 0, "{status:?}");

    let fresh = d.authority.mint("acme", &[]).await;
    let answer = v.check(&fresh.token, "read").await;
    assert!(!answer.allowed, "{answer:?}");
    assert_eq!(answer.reason(), Reason::AuthorityUnavailable, "{answer:?}");
    assert!(d.authority_metric("tally_authority_tls_handshakes_refused_total").await >= REFUSALS_SEEN as f64);
    assert_eq!(d.authority_metric("tally_authority_verify_total").await, 0.0, "no Verify got through");
    assert_eq!(d.authority_metric("tally_authority_subscribers").await, 0.0, "no stream got through");
    let logs = d.authority.stderr_lines().join("\n");
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_without_a_client_certificate_is_refused() {
    let d = deployment().await;
    let tls = UpstreamTls::without_client_cert(&d.certs);
    refused_verifier(d, tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_with_a_certificate_from_another_ca_is_refused() {
    let d = deployment().await;
    let tls = UpstreamTls::rogue_client_cert(&d.certs);
    refused_verifier(d, tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_subscribe_needs_a_client_certificate_then_a_bearer_token() {
    let mut d = deployment().await;
    let url = d.authority.url();
    let req = || SubscribeRequest::default();

    // No client certificate: refused by TLS, before any gRPC. With TLS 1.3
    // the client learns it when the connection fails under its request, so
    // the status is the client's own transport error (its code depends on
    // when the alert arrives), never an answer of the API.
    let mut anonymous = AuthorityClient::new(channel(&url, &d.certs.ca, None).await);
    let err = anonymous.subscribe(bearer(req(), &d.verifier_token)).await.unwrap_err();
    let transport = std::error::Error::source(&err).is_some_and(|e| e.is::<tonic::transport::Error>());
    assert!(transport, "a transport error, not a status from the authority: {err:?}");
    eventually(DEADLINE, || async {
        let logs = d.authority.stderr_lines();
        if logs.iter().any(|l| l.contains(REFUSED) && l.contains("peer sent no certificates")) {
            Ok(())
        } else {
            Err(format!("no refusal logged: {logs:?}"))
        }
    })
    .await;
    assert_eq!(d.authority_metric("tally_authority_subscribers").await, 0.0);

    // A genuine certificate without a bearer token: the API refuses.
    let identity = (d.certs.verifier_cert.as_path(), d.certs.verifier_key.as_path());
    let mut authenticated = AuthorityClient::new(channel(&url, &d.certs.ca, Some(identity)).await);
    let err = authenticated.subscribe(req()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Both: the stream opens and starts with a heartbeat.
    let mut stream = authenticated.subscribe(bearer(req(), &d.verifier_token)).await.unwrap().into_inner();
    let first = tokio::time::timeout(DEADLINE, stream.message()).await.unwrap().unwrap();
    assert!(first.is_some(), "the stream delivered nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_refuses_an_authority_its_ca_did_not_sign() {
    let mut d = deployment().await;
    // Its client certificate is genuine, but it trusts only the rogue CA,
    // which did not sign the authority's certificate.
    let tls = UpstreamTls {
        ca: d.certs.rogue_ca.clone(),
        client: Some((d.certs.verifier_cert.clone(), d.certs.verifier_key.clone())),
    };
    let mut v = d.verifier(tls).await;
    let line = v.process().stderr().wait_for(DEADLINE, |l| l.contains("cannot subscribe")).await.unwrap();
    assert!(line.contains("certificate"), "the log says why: {line}");
    let status = v.status().await;
    assert!(!status.synced, "{status:?}");
    let fresh = d.authority.mint("acme", &[]).await;
    let answer = v.check(&fresh.token, "read").await;
    assert_eq!(answer.reason(), Reason::AuthorityUnavailable, "{answer:?}");
    assert_eq!(d.authority_metric("tally_authority_verify_total").await, 0.0, "no Verify got through");
    assert_eq!(d.authority_metric("tally_authority_subscribers").await, 0.0, "no stream got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_port_serves_tls() {
    let d = deployment().await;
    let options = VerifierOptions {
        authority_tls: Some(UpstreamTls::genuine(&d.certs)),
        check_tls: Some(d.certs.clone()),
        ..VerifierOptions::default()
    };
    let mut v = Verifier::start(&d.authority.url(), &d.verifier_token, options).await;
    v.wait_synced().await;
    let token = d.authority.mint("acme", &[]).await;
    assert!(v.check(&token.token, "read").await.allowed);

    // Plain HTTP/2 to a TLS port gets no answer (how the failure shows, a
    // closed connection or a protocol error, depends on timing).
    let plain = Channel::from_shared(format!("http://{}", v.addr())).unwrap().connect_lazy();
    let mut plain = tally_proto::v1::verifier_client::VerifierClient::new(plain);
    let req = CheckRequest { bundle: token.token.clone(), action: "read".into(), ..Default::default() };
    let answer = tokio::time::timeout(Duration::from_secs(10), plain.check(req)).await.unwrap();
    assert!(answer.is_err(), "{answer:?}");
    v.process().stderr().wait_for(DEADLINE, |l| l.contains(REFUSED)).await.unwrap();
}
