//! `xtask bench-run`: the measuring side, run from the release build by
//! `cargo xtask bench` (see `mod.rs`). Starts the lab, runs the scenarios in
//! order, writes `report.json` and the charts, prints the table, and fails
//! unless every scenario produced numbers.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use super::lab::Lab;
use super::pin::{self, Placement};
use super::plan::Plan;
use super::progress::Progress;
use super::report::{Meta, Report};
use super::{BenchArgs, charts, scenarios};

/// Steps the progress bar counts besides the rounds (the scenarios' `done` calls).
const STEPS: u64 = 14;
/// The fixed rate used when the echo baseline did not run (`--only`).
const DEFAULT_RATE: f64 = 5000.0;

/// `xtask bench-run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) bench: BenchArgs,
    /// CPU the servers are moved to.
    #[arg(long)]
    pub(crate) server_cpu: Option<usize>,
    /// CPU this process (and so the load generator) is pinned to.
    #[arg(long)]
    pub(crate) client_cpu: Option<usize>,
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<()> {
    // Two threads: the runner mostly waits (the load generator is its own process).
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(measure(args))
}

async fn measure(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let plan = Plan::new(args.bench.quick);
    let placement = Placement { server: args.server_cpu, client: args.client_cpu };
    let wanted = |group: &str| args.bench.only.is_empty() || args.bench.only.iter().any(|o| o == group);
    let mut report = Report { meta: meta(&plan, placement), ..Report::default() };
    let progress = Progress::new(STEPS + 2 * plan.rounds as u64);

    progress.step("starting the authority");
    let out = &args.bench.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let lab = Lab::start(placement, plan, args.bench.perf.then(|| out.clone())).await?;
    progress.done(&format!("authority listening on {}", lab.authority.addr()));
    let mut rate = DEFAULT_RATE;
    if wanted("checks") {
        rate = scenarios::checks::run(&lab, &progress, &mut report).await?;
    }
    if wanted("mix") {
        scenarios::mix::run(&lab, &progress, &mut report, rate).await?;
    }
    if wanted("memory") {
        scenarios::memory::run(&lab, &progress, &mut report).await?;
    }
    if wanted("propagation") {
        scenarios::propagation::run(&lab, &progress, &mut report).await?;
    }
    // Catch-up before the authority's own RPCs: it tops the log up to its
    // planned size and times exactly that, where Revoke × 64 alone appends
    // up to 240k revocations.
    if wanted("catchup") {
        scenarios::catchup::run(&lab, &progress, &mut report).await?;
    }
    if wanted("authority") {
        scenarios::authority::run(&lab, &progress, &mut report).await?;
    }
    drop(lab);
    progress.finish();

    report.meta.load_average_after = pin::load_average();
    report.meta.seconds = started.elapsed().as_secs_f64();
    report.judge();
    let json = out.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    let mut files: Vec<PathBuf> = vec![json];
    files.extend(charts::draw(&report, out)?);
    println!("{}", report.table());
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    println!("written: {}", files.join(", "));
    println!("took {:.0} s", report.meta.seconds);
    if args.bench.only.is_empty() {
        report.ensure_complete().context("the bench harness did not produce every number")?;
    }
    Ok(())
}

fn meta(plan: &Plan, placement: Placement) -> Meta {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |s| s.trim().to_owned());
    Meta {
        date,
        commit,
        cpu: pin::cpu_model(),
        cpus: std::fs::read_to_string("/proc/cpuinfo").map_or(0, |c| c.matches("processor\t:").count()),
        quick: plan.quick,
        pinned: placement.pinned(),
        server_cpu: placement.server,
        client_cpu: placement.client,
        load_average_before: pin::load_average(),
        ..Meta::default()
    }
}
