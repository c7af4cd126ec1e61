//! `tally-bench` (run by `cargo xtask bench [--quick] [--out DIR]`): Tally
//! measured against the transport ceiling, side by side, with real
//! processes on loopback.
//!
//! It takes the CPU lock (benchmark runs of everyone on the machine take
//! turns), pins itself, and so the load generator it starts, to one CPU and
//! moves every server it starts to another. Starts the lab, runs the
//! scenarios (`scenarios/`) in order, writes `report.json` and the charts,
//! prints the table (`report.rs` says what is reported and judged), and
//! fails unless every scenario produced numbers. The load generator
//! (`tally-load`) and the echo server (`tally-echo`) are binaries of their
//! own.

mod charts;
mod lab;
mod perf;
mod plan;
mod progress;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use self::lab::Lab;
use self::plan::Plan;
use self::progress::Progress;
use self::report::{Meta, Report};
use crate::pin::{self, Placement};
use crate::usage;

/// Steps the progress bar counts besides the rounds (the scenarios' `done` calls).
const STEPS: u64 = 14;
/// The fixed rate used when the echo baseline did not run (`--only`).
const DEFAULT_RATE: f64 = 5000.0;

/// `tally-bench`'s flags (and `cargo xtask bench`'s).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "tally-bench", about = "Tally measured against the transport ceiling, on loopback")]
pub struct Args {
    /// Every scenario briefly (under 2 minutes): proves the harness works, asserts no speed.
    #[arg(long)]
    quick: bool,
    /// Where `report.json` and the SVG charts go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Record the servers with `perf` during each saturation run (flat profiles into the out dir).
    #[arg(long)]
    perf: bool,
    /// Only these groups (comma-separated: checks, mix, memory, propagation, authority, catchup).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// `postgres`: the authority's RPCs also on PostgreSQL (a throwaway
    /// cluster of the installed PostgreSQL, `synchronous_commit = on`),
    /// beside the same runs on SQLite. Every other scenario stays on SQLite.
    #[arg(long, value_enum, default_value_t = Store::Sqlite)]
    store: Store,
}

/// The authority's store for `--store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// Takes the CPU lock, pins this process, and measures.
pub fn run(args: Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "tally-bench: a debug build (TALLY_LAB_PROFILE=dev): a run of the harness, its figures are not measurements"
        );
    }
    let _lock = pin::take_cpu_lock("bench")?;
    let placement = Placement::choose();
    placement.pin_self()?;
    // Two threads: the runner mostly waits (the load generator is its own process).
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(measure(args, placement))
}

async fn measure(args: Args, placement: Placement) -> anyhow::Result<()> {
    let started = Instant::now();
    let plan = Plan::new(args.quick);
    let wanted = |group: &str| args.only.is_empty() || args.only.iter().any(|o| o == group);
    let mut report = Report { meta: meta(&plan, placement), ..Report::default() };
    let pg_steps = if args.store == Store::Postgres { 7 } else { 0 };
    let progress = Progress::new(STEPS + pg_steps + 2 * plan.rounds as u64);

    progress.step("starting the authority");
    let out = &std::path::absolute(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let perf = args.perf.then(|| out.clone());
    let lab = Lab::start(placement, plan.clone(), perf.clone(), None).await?;
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
        scenarios::authority::run(&lab, &progress, &mut report, report::SQLITE).await?;
    }
    drop(lab);
    if wanted("authority") && args.store == Store::Postgres {
        progress.step("starting a PostgreSQL cluster and an authority on it");
        let cluster = tally_tests::PgCluster::start().context("starting PostgreSQL for --store postgres")?;
        let lab = Lab::start(placement, plan, perf, Some(cluster)).await?;
        progress.done(&format!("authority on PostgreSQL listening on {}", lab.authority.addr()));
        scenarios::authority::run(&lab, &progress, &mut report, report::POSTGRES).await?;
    }
    progress.finish();

    report.meta.load_average_after = usage::load_average();
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
    if args.only.is_empty() {
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
    let (cpu, cpus) = usage::cpu();
    Meta {
        date,
        commit,
        cpu,
        cpus,
        quick: plan.quick,
        pinned: placement.pinned(),
        server_cpu: placement.server,
        client_cpu: placement.client,
        load_average_before: usage::load_average(),
        ..Meta::default()
    }
}
