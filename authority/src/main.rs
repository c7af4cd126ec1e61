//! `tally-authority`: `init` a database, or `serve` it (the library's `run`).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc gives freed pages back to the OS shortly after a burst; glibc's
/// malloc kept each burst's high-water mark (see docs/performance.md, Soak).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = tally_authority::Args::parse();
    tally_service::run_main("tally-authority", || tally_authority::run(args))
}
