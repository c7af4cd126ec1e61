//! Tally's bench and soak lab: real processes on loopback, measured and
//! judged. `cargo xtask bench|soak` builds it in release and runs its
//! binaries (`src/bin/`), each a thin `main` over a module here:
//!
//! * `tally-bench` ([`bench`]): Tally against the transport ceiling, with a
//!   table, `report.json` and SVG charts;
//! * `tally-load` ([`load`]): the bench's one-thread h2 load generator, a
//!   process of its own so it can be pinned and its CPU time counted apart;
//! * `tally-echo` ([`echo`]): the transport ceiling, a bare tonic server;
//! * `tally-soak` ([`soak`]): mixed load with faults for N minutes, memory
//!   and descriptors sampled, growth judged.
//!
//! The servers under test are started through the end-to-end harness
//! (`tally-tests`), which finds them in `TALLY_BIN_DIR` (set by xtask), and
//! so are the lab's own load generator and echo server.

pub mod bench;
pub mod echo;
pub mod load;
mod pin;
pub mod soak;
mod usage;

/// A binary of this crate, found as the harness finds the servers.
fn own_binary(name: &str) -> std::path::PathBuf {
    tally_tests::binary_in("tally-lab", name)
}
