//! The release binaries that `bench` and `soak` run: built with cargo, then
//! taken from `target/release` (the harness finds the servers there through
//! `tally_tests::BIN_DIR_ENV`, and the measuring side is the release `xtask`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};

/// Builds the authority, the verifier and xtask itself in release mode;
/// returns the directory holding them. `task` names the caller in the log.
pub(crate) fn build(task: &str) -> anyhow::Result<PathBuf> {
    let root = crate::workspace_root();
    eprintln!("{task}: building release binaries…");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet"])
        .args(["-p", "tally-authority", "-p", "tally-verifier", "-p", "xtask"])
        .args(["--bin", "tally-authority", "--bin", "tally-verifier", "--bin", "xtask"])
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build --release failed: {status}");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(root.join(target).join("release"))
}
