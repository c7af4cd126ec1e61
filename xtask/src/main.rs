//! `cargo xtask`: the one home of Tally's automation (see `.cargo/config.toml`).
//! The bench and the soak are the lab's (`lab/`, `tally-lab`); `bench` and
//! `soak` build it and run it.

mod certs;
mod codemap;
mod cycles;
mod demo;
mod demo_replicas;
mod fuzz;
mod golden;
mod lab;
mod test;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Tally's development tasks")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole test suite (sets up the Python venv the interop test needs).
    Test(test::TestArgs),
    /// Run Tally end to end on loopback: authority, two verifiers, mint, check, revoke, fail closed.
    Demo(demo::DemoArgs),
    /// Measure Tally against the transport ceiling: Check, propagation, catch-up, authority, memory.
    ///
    /// Builds the lab in release, then runs `tally-bench` with these flags:
    /// [--quick] [--only GROUP,…] [--out DIR] [--perf] [--store postgres] (`--help` lists them, after the build).
    #[command(disable_help_flag = true)]
    Bench(LabArgs),
    /// Check that ARCHITECTURE.md's code map names every source file, and no file that is gone.
    Codemap,
    /// Import cycles between the top-level modules of the authority and the verifier (or the named crates).
    Cycles(cycles::CyclesArgs),
    /// Write a throwaway CA and certificates for running with mTLS (docs/operations.md).
    Certs(certs::CertsArgs),
    /// Run every fuzz target (or one) for N seconds each, one after another, and summarise.
    Fuzz(fuzz::FuzzArgs),
    /// Mixed load with faults for N minutes; memory and file descriptors sampled, growth judged.
    ///
    /// Builds the lab in release, then runs `tally-soak` with these flags: [--minutes N]
    /// [--sample-every S] [--tolerance P] [--out CSV] [--rate R] [--fault-every S] [--rust-log F]
    /// (`--help` lists them, after the build).
    #[command(disable_help_flag = true)]
    Soak(LabArgs),
    /// Regenerate the token golden vectors under `token/golden/` (or `--check` them).
    Golden {
        /// Compare instead of writing; fail when the committed vectors differ.
        #[arg(long)]
        check: bool,
    },
}

/// The flags of a lab binary, passed on as they are.
#[derive(Debug, clap::Args)]
struct LabArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Test(args) => test::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Codemap => codemap::run(),
        Command::Cycles(args) => cycles::run(args),
        Command::Golden { check } => golden::run(check),
        Command::Demo(args) => demo::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Bench(lab) => lab::run(lab::Task::Bench, lab.args),
        Command::Soak(lab) => lab::run(lab::Task::Soak, lab.args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bench` and `soak` pass every flag on to the lab binary, `--help` too.
    #[test]
    fn lab_flags_pass_through() {
        let parse = |line: &[&str]| match Args::try_parse_from(line).map(|a| a.command) {
            Ok(Command::Bench(lab) | Command::Soak(lab)) => lab.args,
            other => panic!("{line:?}: {other:?}"),
        };
        let flags = ["--quick", "--only", "checks,mix", "--out", "x", "--perf", "--help"];
        let line: Vec<&str> = ["cargo xtask", "bench"].into_iter().chain(flags).collect();
        assert_eq!(parse(&line), flags.map(OsString::from));
        assert_eq!(
            parse(&["cargo xtask", "soak", "--minutes", "0.5", "-h"]),
            ["--minutes", "0.5", "-h"].map(OsString::from)
        );
        assert!(parse(&["cargo xtask", "soak"]).is_empty());
    }
}
