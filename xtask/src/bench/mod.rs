//! `cargo xtask bench [--quick] [--out DIR]`: Tally measured against the
//! transport ceiling, side by side, with real processes on loopback.
//!
//! This (debug) command builds the release binaries, then runs the measuring
//! side, `xtask bench-run` from `target/release`, under `flock` on
//! [`CPU_LOCK`] (benchmark runs of everyone on the machine take turns) and
//! `taskset` (the runner and its load generator on one CPU; every server it
//! starts is moved to another). The load generator (`xtask bench-load`) and
//! the echo server (`xtask bench-echo`) are hidden subcommands of the same
//! binary. The scenarios are in `scenarios/`; `report.rs` says what is
//! reported and judged.

mod charts;
mod echo;
mod lab;
mod load;
mod perf;
pub(crate) mod pin;
mod plan;
mod progress;
mod report;
mod runner;
mod scenarios;
pub(crate) mod zipf;

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

pub(crate) use echo::{EchoArgs, run as echo};
pub(crate) use load::{LoadArgs, run as load};
pub(crate) use runner::{RunArgs, run as measure};

/// The lock every heavy measuring run on this machine takes.
const CPU_LOCK: &str = "/tmp/tally-cpu.lock";

/// `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Every scenario briefly (under 2 minutes): proves the harness works, asserts no speed.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Where `report.json` and the SVG charts go.
    #[arg(long, default_value = "target/bench")]
    pub(crate) out: PathBuf,
    /// Record the servers with `perf` during each saturation run (flat profiles into the out dir).
    #[arg(long)]
    pub(crate) perf: bool,
    /// Only these groups (comma-separated: checks, mix, memory, propagation, authority, catchup).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
}

/// Builds, then runs the measuring side pinned and under the CPU lock.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let release = crate::release::build("bench")?;

    let cpus = pin::allowed_cpus();
    let placement = match cpus.as_slice() {
        [server, client, ..] if pin::have("taskset") => Some((*server, *client)),
        _ => None,
    };
    let mut cmd = Vec::<std::ffi::OsString>::new();
    if pin::have("flock") {
        cmd.extend(["flock".into(), CPU_LOCK.into()]);
        eprintln!("bench: taking {CPU_LOCK} (waits while another benchmark runs)…");
    } else {
        eprintln!("bench: no flock: not waiting for other benchmark runs");
    }
    if let Some((_, client)) = placement {
        cmd.extend(["taskset".into(), "-c".into(), client.to_string().into()]);
    }
    cmd.push(release.join("xtask").into());
    cmd.push("bench-run".into());
    if args.quick {
        cmd.push("--quick".into());
    }
    cmd.extend(["--out".into(), root.join(&args.out).into()]);
    if args.perf {
        cmd.push("--perf".into());
    }
    if !args.only.is_empty() {
        cmd.extend(["--only".into(), args.only.join(",").into()]);
    }
    if let Some((server, client)) = placement {
        cmd.extend(["--server-cpu".into(), server.to_string().into()]);
        cmd.extend(["--client-cpu".into(), client.to_string().into()]);
    }
    let status = Command::new(&cmd[0])
        .args(&cmd[1..])
        .current_dir(&root)
        .env(tally_tests::BIN_DIR_ENV, &release)
        .status()
        .context("running the bench")?;
    if !status.success() {
        // The measuring side said why; pass its exit code on.
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
