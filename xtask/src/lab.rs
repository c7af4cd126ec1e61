//! `cargo xtask bench|soak`: builds the lab (`tally-lab`) and the servers it
//! starts in release, then becomes (exec, so Ctrl-C and the exit code are
//! the lab's own) the lab binary with the flags as given. The harness finds
//! the servers in `target/release` through `tally_tests::BIN_DIR_ENV`;
//! relative paths (`--out`) are taken from the workspace root.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};

/// The lab's binaries, as `cargo xtask bench|soak` name them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Task {
    Bench,
    Soak,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Bench => "bench",
            Task::Soak => "soak",
        }
    }

    /// The binary of `tally-lab` that does the task.
    fn binary(self) -> &'static str {
        match self {
            Task::Bench => "tally-bench",
            Task::Soak => "tally-soak",
        }
    }
}

/// Builds, then replaces this process with the lab's binary for `task`.
pub(crate) fn run(task: Task, args: Vec<OsString>) -> anyhow::Result<()> {
    let release = build(task)?;
    let error = Command::new(release.join(task.binary()))
        .args(args)
        .current_dir(crate::workspace_root())
        .env(tally_tests::BIN_DIR_ENV, &release)
        .exec();
    Err(anyhow::anyhow!("running {}: {error}", task.binary()))
}

/// `TALLY_LAB_PROFILE`: `dev` builds the lab in the dev profile instead
/// (CI's smoke run of the harness, reusing what the tests built; its figures
/// are not measurements, and `tally-bench` says so).
const PROFILE_ENV: &str = "TALLY_LAB_PROFILE";

/// Builds the authority, the verifier and every lab binary in release mode
/// (or dev, see [`PROFILE_ENV`]); returns the directory holding them.
fn build(task: Task) -> anyhow::Result<PathBuf> {
    let root = crate::workspace_root();
    let dev = match std::env::var(PROFILE_ENV).as_deref() {
        Ok("dev") => true,
        Ok("release") | Err(_) => false,
        Ok(other) => anyhow::bail!("{PROFILE_ENV}={other:?}: dev or release"),
    };
    let (profile, dir) = if dev { ("dev", "debug") } else { ("release", "release") };
    eprintln!("{}: building {profile} binaries…", task.name());
    let status = tally_tests::cargo()
        .current_dir(&root)
        .args(["build", "--profile", profile, "--quiet"])
        .args(["-p", "tally-authority", "-p", "tally-verifier", "-p", "tally-lab", "--bins"])
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build --profile {profile} failed: {status}");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(root.join(target).join(dir))
}
