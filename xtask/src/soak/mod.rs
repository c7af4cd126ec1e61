//! `cargo xtask soak --minutes N`: N minutes of mixed load with scripted
//! faults against real processes on loopback, sampling every process's
//! resident memory and open file descriptors; fails when either grows past
//! a tolerance once warmed up, when an answer is wrong, when a revoked
//! family is allowed past revoke-ack + bound, or when anything panics.
//!
//! As `bench` does, this (debug) command builds the release binaries, then
//! becomes (exec, so Ctrl-C reaches one process) the release `xtask
//! soak-run`, which owns every process it starts and kills them all when it
//! ends, fails or is interrupted:
//!
//! * `deployment.rs`: one authority, verifier "eu" dialling it directly and
//!   verifier "us" dialling it through the fault proxy (`tally_tests::Proxy`);
//! * `pool.rs`: the bounded token population;
//! * `load.rs` (mints, revocations, key rotations) and `checks.rs` (Checks
//!   at a fixed rate, each answer judged);
//! * `faults.rs`: the fault schedule; `safety.rs`: "no allow after
//!   revoke-ack + bound", checked online;
//! * `sample.rs`: `/proc` and `/metrics` samples, printed and written as CSV;
//!   `summary.rs`: the judgement; `run.rs`: the whole run.

mod checks;
mod deployment;
mod faults;
mod load;
mod pool;
mod run;
mod safety;
mod sample;
mod summary;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

pub(crate) use run::run as soak_run;

/// `cargo xtask soak` (and, with the same flags, the hidden `xtask soak-run`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the load runs, in minutes (fractions allowed), after setup.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) minutes: f64,
    /// Seconds between two samples of every process.
    #[arg(long, default_value_t = 10)]
    pub(crate) sample_every: u64,
    /// Largest growth (percent) of a judged RSS or fd count over its baseline.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) tolerance: f64,
    /// CSV file for the samples (default: target/soak/soak-DATE.csv).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Checks offered per second (open loop, over both verifiers).
    #[arg(long, default_value_t = 400)]
    pub(crate) rate: u32,
    /// Seconds between two faults.
    #[arg(long, default_value_t = 30)]
    pub(crate) fault_every: u64,
    /// `RUST_LOG` of the servers (their output is kept in memory and scanned for panics).
    #[arg(long, default_value = "error")]
    pub(crate) rust_log: String,
}

impl SoakArgs {
    /// The flags again, for the release `soak-run`; `--out` made absolute.
    fn to_args(&self) -> Vec<OsString> {
        let root = crate::workspace_root();
        let out = self.out.clone().unwrap_or_else(default_out);
        let mut args: Vec<OsString> = vec!["soak-run".into()];
        for (flag, value) in [
            ("--minutes", self.minutes.to_string()),
            ("--sample-every", self.sample_every.to_string()),
            ("--tolerance", self.tolerance.to_string()),
            ("--rate", self.rate.to_string()),
            ("--fault-every", self.fault_every.to_string()),
            ("--rust-log", self.rust_log.clone()),
        ] {
            args.extend([flag.into(), value.into()]);
        }
        args.extend(["--out".into(), root.join(out).into()]);
        args
    }
}

/// `target/soak/soak-YYYYMMDD-HHMMSS.csv` (UTC).
fn default_out() -> PathBuf {
    let stamp = time::format_description::parse("[year][month][day]-[hour][minute][second]")
        .ok()
        .and_then(|f| time::OffsetDateTime::now_utc().format(&f).ok())
        .unwrap_or_else(|| "run".into());
    PathBuf::from("target").join("soak").join(format!("soak-{stamp}.csv"))
}

/// Builds, then replaces this process with the release `xtask soak-run`.
pub(crate) fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.minutes > 0.0 && args.sample_every > 0 && args.fault_every > 0, "durations must be positive");
    let release = crate::release::build("soak")?;
    let error = Command::new(release.join("xtask"))
        .args(args.to_args())
        .current_dir(crate::workspace_root())
        .env(tally_tests::BIN_DIR_ENV, &release)
        .exec();
    Err(anyhow::anyhow!("running the release xtask soak-run: {error}"))
}
