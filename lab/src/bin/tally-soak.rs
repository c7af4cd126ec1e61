//! `tally-soak`: the soak (`cargo xtask soak` runs it).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tally_lab::soak::run(tally_lab::soak::Args::parse())
}
