//! One authority (with metrics) and two regional verifiers ("eu", "us"), the
//! shape most end-to-end verifier tests need.

use std::net::SocketAddr;
use std::time::Duration;

use crate::authority::{Authority, AuthorityOptions};
use crate::poll::DEADLINE;
use crate::verifier::{Verifier, VerifierOptions, metric, scrape};

const METRICS: &str = "metrics on ";

/// The processes of a small deployment.
#[derive(Debug)]
pub struct Cluster {
    pub authority: Authority,
    pub eu: Verifier,
    pub us: Verifier,
    /// The verifiers' token.
    pub verifier_token: String,
    authority_metrics: SocketAddr,
}

impl Cluster {
    /// Starts everything and waits until both verifiers are synced.
    pub async fn start(fail_closed_after: Duration) -> Self {
        Self::start_with(fail_closed_after, &[]).await
    }

    /// As [`Cluster::start`], with extra verifier arguments.
    pub async fn start_with(fail_closed_after: Duration, verifier_args: &[&str]) -> Self {
        let options = AuthorityOptions {
            serve_args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
            ..AuthorityOptions::default()
        };
        let mut authority = Authority::start_with(options).await;
        let line = authority.process().wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await.unwrap();
        let authority_metrics = line[METRICS.len()..].trim().parse().unwrap();
        let verifier_token = authority.system_token("verifier", &[]).await;
        let options = |region: &str| VerifierOptions {
            region: region.into(),
            fail_closed_after,
            args: verifier_args.iter().map(|a| a.to_string()).collect(),
            ..VerifierOptions::default()
        };
        let eu = Verifier::start(&authority.url(), &verifier_token, options("eu")).await;
        let us = Verifier::start(&authority.url(), &verifier_token, options("us")).await;
        eu.wait_synced().await;
        us.wait_synced().await;
        Self { authority, eu, us, verifier_token, authority_metrics }
    }

    /// The authority's count of Verify calls served, from its metrics endpoint.
    pub async fn authority_verify_count(&self) -> u64 {
        let text = scrape(self.authority_metrics).await.expect("scraping authority metrics");
        metric(&text, "tally_authority_verify_total").expect("tally_authority_verify_total") as u64
    }
}
