//! The processes under test, started through the end-to-end harness
//! (`tally-tests`): one authority for the whole run, verifiers and the echo
//! server as scenarios need them, each moved to the server CPU once it
//! listens. Every process is killed when its guard drops, also on failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use prost::Message;
use tally_proto::v1 as pb;
use tally_tests::{
    Authority, AuthorityOptions, Child, DEADLINE, PgCluster, TestStore, Verifier, VerifierOptions, bearer, metric,
    scrape,
};
use tempfile::TempDir;

use super::perf;
use super::plan::Plan;
use crate::load::{self, Mode, Outcome, Spec, Workload};
use crate::pin::Placement;

/// The org every bench token belongs to.
pub(crate) const ORG: &str = "bench";
pub(crate) const CHECK: &str = "/tally.v1.Verifier/Check";
/// Quiet services: a log line per request would be measured too.
const RUST_LOG: &str = "warn";
/// As in production: heartbeats well inside the fail-closed threshold.
const HEARTBEAT: Duration = Duration::from_millis(200);
const FAIL_CLOSED_AFTER: Duration = Duration::from_secs(10);
/// Verify calls a lab verifier keeps in flight (default 128). An open-loop
/// run keeps sending through a scheduling stall of this shared machine;
/// with 128 the cold miss's fixed-rate run had 1-2 % of its checks shed
/// as `authority unavailable` (3118f0c's lab too), which the scenario
/// counts as a failure. What it measures is the authority path, not the
/// shedding (`verifier/tests/authority_shed.rs` covers that).
const MAX_AUTHORITY_CALLS: usize = 1024;
/// Concurrent Mint calls (over as many clones of a few connections) when making test tokens.
const MINT_CALLERS: usize = 64;
const MINT_CONNECTIONS: usize = 8;
/// The authority's `--registry-remembered`: the last this many mints are
/// always remembered, so a Revoke run of families minted just before it
/// reads no database (a full Revoke × 64 run prepares 240k).
pub(crate) const REGISTRY_REMEMBERED: usize = 250_000;

/// One authority, its operator and verifier tokens, and where things run.
#[derive(Debug)]
pub(crate) struct Lab {
    pub(crate) authority: Authority,
    /// The PostgreSQL cluster the authority's database is on (none: SQLite).
    /// After the authority: it is stopped once the authority is gone.
    postgres: Option<PgCluster>,
    authority_metrics: SocketAddr,
    pub(crate) verifier_token: String,
    pub(crate) placement: Placement,
    pub(crate) plan: Plan,
    /// Where `--perf` profiles go (none without `--perf`).
    perf: Option<PathBuf>,
    dir: TempDir,
    seed: std::cell::Cell<u64>,
    /// Minted families no scenario needs any more: what Revoke scenarios revoke
    /// (the authority refuses to revoke a family it never minted).
    spare: Mutex<Vec<String>>,
}

impl Lab {
    /// Starts the authority and makes the bench org: on SQLite, or on
    /// `postgres` (whose server is moved to the server CPU too).
    pub(crate) async fn start(
        placement: Placement,
        plan: Plan,
        perf: Option<PathBuf>,
        postgres: Option<PgCluster>,
    ) -> anyhow::Result<Self> {
        let store = match &postgres {
            Some(cluster) => {
                // Its backends are forked later, and inherit the affinity.
                placement.pin_server(cluster.pid()?)?;
                TestStore::Postgres(cluster.url())
            }
            None => TestStore::Sqlite,
        };
        let options = AuthorityOptions {
            store: Some(store),
            rust_log: RUST_LOG.into(),
            heartbeat: HEARTBEAT,
            serve_args: vec![
                "--metrics-listen".into(),
                "127.0.0.1:0".into(),
                "--registry-remembered".into(),
                REGISTRY_REMEMBERED.to_string(),
            ],
            ..AuthorityOptions::default()
        };
        let mut authority = Authority::start_with(options).await;
        let line = authority.process().wait_for_stdout(DEADLINE, |l| l.starts_with("metrics on ")).await?;
        let authority_metrics = line["metrics on ".len()..].trim().parse()?;
        placement.pin_server(authority.pid())?;
        authority.create_org(ORG).await;
        let verifier_token = authority.system_token("verifier", &[]).await;
        let dir = tempfile::tempdir()?;
        let spare = Mutex::default();
        Ok(Self {
            authority,
            postgres,
            authority_metrics,
            verifier_token,
            placement,
            plan,
            perf,
            dir,
            seed: 1.into(),
            spare,
        })
    }

    /// The processes that serve the authority's RPCs: the authority, and on
    /// PostgreSQL its server with every backend (the postmaster's children).
    pub(crate) fn server_pids(&self) -> Vec<u32> {
        let mut pids = vec![self.authority.pid()];
        if let Some(postmaster) = self.postgres.as_ref().and_then(|c| c.pid().ok()) {
            pids.push(postmaster);
            let children = procfs::process::all_processes().into_iter().flatten().flatten().filter_map(|p| {
                let stat = p.stat().ok()?;
                (stat.ppid == postmaster as i32).then_some(stat.pid as u32)
            });
            pids.extend(children);
        }
        pids
    }

    /// The operator (bootstrap) token.
    pub(crate) fn operator(&self) -> &str {
        self.authority.bootstrap()
    }

    /// A scratch directory for token files and load specs.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a verifier, pins it, and (if `synced`) waits until it follows the stream.
    pub(crate) async fn verifier(&self, region: &str, synced: bool) -> anyhow::Result<Verifier> {
        let options = VerifierOptions {
            region: region.into(),
            fail_closed_after: FAIL_CLOSED_AFTER,
            rust_log: RUST_LOG.into(),
            args: vec!["--max-authority-calls".into(), MAX_AUTHORITY_CALLS.to_string()],
            ..VerifierOptions::default()
        };
        let mut v = Verifier::start(&self.authority.url(), &self.verifier_token, options).await;
        self.placement.pin_server(v.process().pid())?;
        if synced {
            v.wait_synced().await;
        }
        Ok(v)
    }

    /// Starts the echo server answering `response` to every Check.
    pub(crate) async fn echo(&self, response: &pb::CheckResponse) -> anyhow::Result<(Child, SocketAddr)> {
        let args = ["--response-hex".to_owned(), hex::encode(response.encode_to_vec())];
        let child = Child::spawn(&crate::own_binary("tally-echo"), args, &[])?;
        let line = child.wait_for_stdout(DEADLINE, |l| l.starts_with("listening on ")).await?;
        let addr = line["listening on ".len()..].trim().parse().with_context(|| format!("parsing {line:?}"))?;
        self.placement.pin_server(child.pid())?;
        Ok((child, addr))
    }

    /// Mints `n` tokens of the bench org with `caveats`, many calls at a time.
    pub(crate) async fn mint(&self, n: usize, caveats: &[&str]) -> anyhow::Result<Vec<pb::MintResponse>> {
        let mut clients = Vec::with_capacity(MINT_CONNECTIONS);
        for _ in 0..MINT_CONNECTIONS {
            let channel = tonic::transport::Endpoint::new(self.authority.url())?.connect().await?;
            clients.push(pb::authority_client::AuthorityClient::new(channel));
        }
        let caveats: Vec<String> = caveats.iter().map(|c| c.to_string()).collect();
        let mut tasks = Vec::with_capacity(MINT_CALLERS);
        for caller in 0..MINT_CALLERS.min(n.max(1)) {
            let count = n / MINT_CALLERS + usize::from(caller < n % MINT_CALLERS);
            let mut client = clients[caller % MINT_CONNECTIONS].clone();
            let (caveats, operator) = (caveats.clone(), self.operator().to_owned());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(count);
                for _ in 0..count {
                    let req = pb::MintRequest { org: ORG.into(), caveats: caveats.clone(), ..Default::default() };
                    out.push(client.mint(bearer(req, &operator)).await?.into_inner());
                }
                Ok::<_, tonic::Status>(out)
            }));
        }
        let mut all = Vec::with_capacity(n);
        for task in tasks {
            all.extend(task.await?.context("Mint")?);
        }
        Ok(all)
    }

    /// Hands minted families over for later revocation.
    pub(crate) fn spare<'a>(&self, families: impl IntoIterator<Item = &'a str>) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        spare.extend(families.into_iter().map(str::to_owned));
    }

    /// `n` minted, unrevoked families: spare ones first, freshly minted ones for the rest.
    pub(crate) async fn families(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let mut out = {
            let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            let keep = spare.len().saturating_sub(n);
            spare.split_off(keep)
        };
        if out.len() < n {
            let minted = self.mint(n - out.len(), &[]).await?;
            out.extend(minted.into_iter().map(|m| m.family));
        }
        Ok(out)
    }

    /// Writes lines to a scratch file.
    pub(crate) fn lines_file(&self, name: &str, lines: &[String]) -> anyhow::Result<PathBuf> {
        let path = self.dir().join(name);
        std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>())?;
        Ok(path)
    }

    /// Writes tokens one per line to a scratch file.
    pub(crate) fn token_file(&self, name: &str, tokens: &[pb::MintResponse]) -> anyhow::Result<PathBuf> {
        let path = self.dir().join(name);
        let text: String = tokens.iter().map(|t| format!("{}\n", t.token)).collect();
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// The authority's revocation log head.
    pub(crate) async fn head_seq(&self) -> anyhow::Result<u64> {
        let text = scrape(self.authority_metrics).await?;
        Ok(metric(&text, "tally_authority_log_head_seq").context("tally_authority_log_head_seq")? as u64)
    }

    /// The authority's write counters so far.
    pub(crate) async fn writes(&self) -> anyhow::Result<Writes> {
        let text = scrape(self.authority_metrics).await?;
        let get = |name: &str| metric(&text, name).with_context(|| name.to_owned());
        Ok(Writes {
            commits: get("tally_authority_commits_total")?,
            changes: get("tally_authority_committed_changes_total")?,
            registry_reads: get("tally_authority_registry_reads_total")?,
            commit_seconds: get("tally_authority_commit_duration_seconds_sum")?,
            at: std::time::Instant::now(),
        })
    }

    /// Revokes a family; returns its seq.
    pub(crate) async fn revoke_family(&self, family: &str) -> anyhow::Result<u64> {
        let target = Some(pb::revoke_request::Target::Family(family.to_owned()));
        let req = pb::RevokeRequest { target, reason: "bench".into() };
        Ok(self.authority.client().revoke(bearer(req, self.operator())).await?.into_inner().seq)
    }

    /// A spec against `target` with the plan's connections, a fresh seed, and no watched process.
    pub(crate) fn spec(&self, target: SocketAddr, method: &str, mode: Mode, workload: Workload) -> Spec {
        let seed = self.seed.get();
        self.seed.set(seed + 1);
        Spec {
            target,
            method: method.into(),
            bearer: None,
            connections: self.plan.connections,
            mode,
            workload,
            watch_pids: Vec::new(),
            seed,
        }
    }

    /// Closed loop at the plan's concurrency for warm-up + saturate.
    pub(crate) fn saturating(&self) -> Mode {
        self.saturating_with(self.plan.concurrency)
    }

    /// Closed loop with `concurrency` requests in flight for warm-up + saturate.
    pub(crate) fn saturating_with(&self, concurrency: usize) -> Mode {
        Mode::Closed {
            concurrency,
            warmup_ms: self.plan.warmup.as_millis() as u64,
            duration_ms: self.plan.saturate.as_millis() as u64,
            limit: None,
        }
    }

    /// Open loop at `rate` for warm-up + moderate.
    pub(crate) fn at_rate(&self, rate: f64) -> Mode {
        Mode::Open {
            rate,
            warmup_ms: self.plan.warmup.as_millis() as u64,
            duration_ms: self.plan.moderate.as_millis() as u64,
        }
    }

    /// Runs a spec in the load generator.
    pub(crate) async fn load(&self, spec: &Spec) -> anyhow::Result<Outcome> {
        load::launch(self.dir(), spec).await
    }

    /// Runs a saturation spec, with `--perf` recording its watched processes
    /// into `perf-LABEL.{data,txt}`.
    pub(crate) async fn saturate(&self, label: &str, spec: &Spec) -> anyhow::Result<Outcome> {
        let Some(dir) = self.perf.as_ref().filter(|_| !spec.watch_pids.is_empty()) else {
            return self.load(spec).await;
        };
        let recording = perf::start(dir, label, &spec.watch_pids)?;
        let outcome = self.load(spec).await;
        let profile = recording.finish().await?;
        eprintln!("bench: profile of {label}: {}", profile.display());
        outcome
    }
}

/// The authority's write counters (`Lab::writes`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writes {
    /// Group commits.
    pub(crate) commits: f64,
    /// Changes those commits carried.
    pub(crate) changes: f64,
    /// Revoke-by-family look-ups that read the database.
    pub(crate) registry_reads: f64,
    /// Time spent in group commits (BEGIN to the end of COMMIT), seconds.
    pub(crate) commit_seconds: f64,
    /// When the counters were read.
    pub(crate) at: std::time::Instant,
}

impl Writes {
    /// Mean changes per commit since `before`; `None` when nothing was committed.
    pub(crate) fn changes_per_commit(&self, before: &Writes) -> Option<f64> {
        let commits = self.commits - before.commits;
        (commits > 0.0).then(|| (self.changes - before.changes) / commits)
    }

    /// Mean time per group commit since `before`, and the share of the wall
    /// time between the two readings the writer spent committing.
    pub(crate) fn commit_time(&self, before: &Writes) -> Option<CommitTime> {
        let commits = self.commits - before.commits;
        let spent = self.commit_seconds - before.commit_seconds;
        let wall = self.at.duration_since(before.at).as_secs_f64();
        (commits > 0.0 && wall > 0.0).then(|| CommitTime { mean_us: spent / commits * 1e6, busy_share: spent / wall })
    }
}

/// How long the authority's group commits took over a run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct CommitTime {
    /// Mean per commit, BEGIN to the end of COMMIT (µs).
    pub(crate) mean_us: f64,
    /// Share of the time between the readings (the load generator's start-up,
    /// warm-up and run) the writer spent committing.
    pub(crate) busy_share: f64,
}
