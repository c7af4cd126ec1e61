//! `tally-load --spec FILE`: the bench's load generator (`tally-bench` runs it).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tally_lab::load::run(tally_lab::load::Args::parse())
}
