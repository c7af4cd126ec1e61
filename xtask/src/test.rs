//! `cargo xtask test`: the README's test command. Makes the Python venv the
//! pymacaroons interop test needs (once, under `target/`), checks the golden
//! vectors, ARCHITECTURE.md's code map and the import cycles, then runs the
//! whole workspace's tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The pymacaroons release the interop test is pinned to.
const PYMACAROONS: &str = "pymacaroons==0.13.0";

#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

pub(crate) fn run(args: TestArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let python = python_venv(&root)?;
    crate::golden::run(true).context("golden vectors are stale: run `cargo xtask golden` and commit")?;
    crate::codemap::run()?;
    crate::cycles::check()?;
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["test", "--workspace"])
        .args(&args.cargo_args)
        .env("TALLY_PYTHON", &python)
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("tests failed");
    }
    Ok(())
}

/// `target/py-venv` with pymacaroons, created on first use. Returns its python.
fn python_venv(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = root.join("target/py-venv");
    let python = venv.join("bin/python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import pymacaroons, sys; sys.exit(pymacaroons.__version__ != '0.13.0')"])
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return Ok(python);
    }
    eprintln!("xtask: creating {} with {PYMACAROONS}", venv.display());
    run_checked(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run_checked(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        PYMACAROONS,
    ]))?;
    Ok(python)
}

fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
