//! The processes under soak, started through the end-to-end harness: one
//! authority with metrics, verifier "eu" dialling it directly and verifier
//! "us" dialling it through the fault proxy, which lives in this process.
//! The harness's guards kill every process when [`Deployment`] drops: at the
//! end, on error, and when an interrupt drops the whole run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tally_tests::{Authority, AuthorityOptions, DEADLINE, Proxy, Verifier, VerifierOptions, scrape};

/// The authority's heartbeat interval (as in the fault tests).
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(200);
/// The verifiers' fail-closed threshold (as in the fault tests).
pub(crate) const FAIL_CLOSED_AFTER: Duration = Duration::from_secs(2);
/// The org every soak token belongs to.
pub(crate) const ORG: &str = "soak";
const METRICS: &str = "metrics on ";
/// Stderr lines shown when a process exits unexpectedly.
const TAIL: usize = 20;

/// A process being sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Authority,
    Eu,
    Us,
}

/// The running deployment.
#[derive(Debug)]
pub(crate) struct Deployment {
    pub(crate) authority: Authority,
    authority_metrics: SocketAddr,
    /// 1 for the first `serve` process, +1 per restart.
    pub(crate) incarnation: u32,
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) eu: Verifier,
    eu_metrics: SocketAddr,
    pub(crate) us: Verifier,
    us_metrics: SocketAddr,
}

impl Deployment {
    /// Starts everything on 127.0.0.1:0 and waits until both verifiers are synced.
    pub(crate) async fn start(rust_log: &str) -> anyhow::Result<Self> {
        let options = AuthorityOptions {
            rust_log: rust_log.into(),
            heartbeat: HEARTBEAT,
            serve_args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
            ..AuthorityOptions::default()
        };
        let mut authority = Authority::start_with(options).await;
        let authority_metrics = metrics_addr(&mut authority).await?;
        authority.create_org(ORG).await;
        let verifier_token = authority.system_token("verifier", &[]).await;
        let proxy = Arc::new(Proxy::start(authority.addr()).await);
        let options = |region: &str| VerifierOptions {
            region: region.into(),
            fail_closed_after: FAIL_CLOSED_AFTER,
            rust_log: rust_log.into(),
            args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
            ..VerifierOptions::default()
        };
        let eu = Verifier::start(&authority.url(), &verifier_token, options("eu")).await;
        let us = Verifier::start(&proxy.url(), &verifier_token, options("us")).await;
        let eu_metrics = eu.metrics_addr().await?;
        let us_metrics = us.metrics_addr().await?;
        eu.wait_synced().await;
        us.wait_synced().await;
        Ok(Self { authority, authority_metrics, incarnation: 1, proxy, eu, eu_metrics, us, us_metrics })
    }

    /// SIGKILL, `down` of silence, then `serve` again on the same database and port.
    pub(crate) async fn restart_authority(&mut self, down: Duration) -> anyhow::Result<()> {
        self.authority.kill_9();
        tokio::time::sleep(down).await;
        self.authority.try_restart().await.context("restarting the authority")?;
        self.authority_metrics = metrics_addr(&mut self.authority).await?;
        self.incarnation += 1;
        Ok(())
    }

    /// Pid of each process.
    pub(crate) fn pid(&mut self, role: Role) -> u32 {
        match role {
            Role::Authority => self.authority.pid(),
            Role::Eu => self.eu.process().pid(),
            Role::Us => self.us.process().pid(),
        }
    }

    /// `GET /metrics` of a process (`None` when it does not answer).
    pub(crate) async fn metrics(&self, role: Role) -> Option<String> {
        let addr = match role {
            Role::Authority => self.authority_metrics,
            Role::Eu => self.eu_metrics,
            Role::Us => self.us_metrics,
        };
        tokio::time::timeout(Duration::from_secs(2), scrape(addr)).await.ok()?.ok()
    }

    /// Fails when a process exited (the authority is never down outside a restart).
    pub(crate) fn ensure_running(&mut self) -> anyhow::Result<()> {
        for (name, child) in [
            ("authority", self.authority.process()),
            ("verifier eu", self.eu.process()),
            ("verifier us", self.us.process()),
        ] {
            if let Some(status) = child.try_status() {
                let lines = child.stderr().snapshot();
                let tail = lines[lines.len().saturating_sub(TAIL)..].join("\n");
                bail!("{name} (pid {}) exited ({status}); last stderr lines:\n{tail}", child.pid());
            }
        }
        Ok(())
    }

    /// Every line any process wrote that says "panicked" (all incarnations).
    pub(crate) fn panics(&self) -> Vec<String> {
        let sources =
            [("authority", self.authority.log_lines()), ("eu", self.eu.stderr_lines()), ("us", self.us.stderr_lines())];
        let mut found = Vec::new();
        for (name, lines) in sources {
            found.extend(lines.iter().filter(|l| l.contains("panicked")).map(|l| format!("{name}: {l}")));
        }
        found
    }
}

/// Where the current authority process serves metrics (it prints it after "listening on").
async fn metrics_addr(authority: &mut Authority) -> anyhow::Result<SocketAddr> {
    let line = authority.process().wait_for_stdout(DEADLINE, |l| l.starts_with(METRICS)).await?;
    line[METRICS.len()..].trim().parse().with_context(|| format!("parsing {line:?}"))
}
