//! `cargo xtask soak --minutes N`: N minutes of mixed load with scripted
//! faults against real processes on loopback, sampling every process's
//! resident memory and open file descriptors; fails when either grows past
//! a tolerance once warmed up, when an answer is wrong, when a revoked
//! family is allowed past revoke-ack + bound, or when anything panics.
//!
//! `cargo xtask soak` builds the release binaries, then becomes (exec, so
//! Ctrl-C reaches one process) `tally-soak`, which owns every process it
//! starts and kills them all when it ends, fails or is interrupted:
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

use std::path::PathBuf;

pub use run::run;

/// `tally-soak`'s flags (and `cargo xtask soak`'s).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "tally-soak",
    about = "Mixed load with faults for N minutes; memory and file descriptors sampled, growth judged"
)]
pub struct Args {
    /// How long the load runs, in minutes (fractions allowed), after setup.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Seconds between two samples of every process.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// Largest growth (percent) of a judged RSS or fd count over its baseline.
    #[arg(long, default_value_t = 10.0)]
    tolerance: f64,
    /// CSV file for the samples (default: target/soak/soak-DATE.csv).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Checks offered per second (open loop, over both verifiers).
    #[arg(long, default_value_t = 400)]
    rate: u32,
    /// Seconds between two faults.
    #[arg(long, default_value_t = 30)]
    fault_every: u64,
    /// `RUST_LOG` of the servers (their output is kept in memory and scanned for panics).
    #[arg(long, default_value = "error")]
    rust_log: String,
}

/// `target/soak/soak-YYYYMMDD-HHMMSS.csv` (UTC).
fn default_out() -> PathBuf {
    let stamp = time::format_description::parse("[year][month][day]-[hour][minute][second]")
        .ok()
        .and_then(|f| time::OffsetDateTime::now_utc().format(&f).ok())
        .unwrap_or_else(|| "run".into());
    PathBuf::from("target").join("soak").join(format!("soak-{stamp}.csv"))
}
