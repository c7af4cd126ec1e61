//! `cargo xtask`: the one home of Tally's automation (see `.cargo/config.toml`).

mod demo;
mod golden;
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
        Command::Golden { check } => golden::run(check),
        Command::Demo => demo::run(),
    }
}
