//! `tally-echo`: the bench's transport ceiling (`tally-bench` runs it).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tally_lab::echo::run(tally_lab::echo::Args::parse())
}
