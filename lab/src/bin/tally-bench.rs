//! `tally-bench`: the bench's measuring side (`cargo xtask bench` runs it).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tally_lab::bench::run(tally_lab::bench::Args::parse())
}
