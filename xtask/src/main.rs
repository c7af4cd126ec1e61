//! `cargo xtask`: the one home of Tally's automation (see `.cargo/config.toml`).

mod bench;
mod certs;
mod cycles;
mod demo;
mod fuzz;
mod golden;
mod release;
mod soak;
mod test;

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
    Demo,
    /// Measure Tally against the transport ceiling: Check, propagation, catch-up, authority, memory.
    Bench(bench::BenchArgs),
    /// The measuring side of `bench` (run from the release build by `bench`).
    #[command(hide = true)]
    BenchRun(bench::RunArgs),
    /// The bench's load generator.
    #[command(hide = true)]
    BenchLoad(bench::LoadArgs),
    /// The bench's echo server.
    #[command(hide = true)]
    BenchEcho(bench::EchoArgs),
    /// Import cycles between the top-level modules of the authority and the verifier (or the named crates).
    Cycles(cycles::CyclesArgs),
    /// Write a throwaway CA and certificates for running with mTLS (README "mTLS").
    Certs(certs::CertsArgs),
    /// Run every fuzz target (or one) for N seconds each, one after another, and summarise.
    Fuzz(fuzz::FuzzArgs),
    /// Mixed load with faults for N minutes; memory and file descriptors sampled, growth judged.
    Soak(soak::SoakArgs),
    /// The running side of `soak` (run from the release build by `soak`).
    #[command(hide = true)]
    SoakRun(soak::SoakArgs),
    /// Regenerate the token golden vectors under `token/golden/` (or `--check` them).
    Golden {
        /// Compare instead of writing; fail when the committed vectors differ.
        #[arg(long)]
        check: bool,
    },
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Test(args) => test::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Cycles(args) => cycles::run(args),
        Command::Golden { check } => golden::run(check),
        Command::Demo => demo::run(),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchRun(args) => bench::measure(args),
        Command::BenchLoad(args) => bench::load(args),
        Command::BenchEcho(args) => bench::echo(args),
        Command::Soak(args) => soak::run(args),
        Command::SoakRun(args) => soak::soak_run(args),
    }
}
