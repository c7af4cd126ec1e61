//! `cargo xtask test`: the README's test command. Makes the Python venv the
//! pymacaroons interop test needs (once, under `target/`), checks the golden
//! vectors, ARCHITECTURE.md's code map and the import cycles, runs the whole
//! workspace's tests (the authority on SQLite), then the authority's tests
//! and the end-to-end tests again with the authority on PostgreSQL: on
//! `TALLY_TEST_POSTGRES_URL` when set, else on a throwaway cluster of the
//! installed PostgreSQL. Without one it says so and stops after SQLite,
//! unless `--require-postgres` (`TALLY_REQUIRE_POSTGRES=1`, as CI sets it)
//! makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use tally_tests::PgCluster;
use tally_tests::postgres::{POSTGRES_LOG_ENV, POSTGRES_URL_ENV, STORE_ENV};

/// The pymacaroons release the interop test is pinned to.
const PYMACAROONS: &str = "pymacaroons==0.13.0";

#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// Fail when the PostgreSQL suite cannot run (no PostgreSQL installed
    /// and no TALLY_TEST_POSTGRES_URL), instead of running SQLite's alone.
    #[arg(long, env = "TALLY_REQUIRE_POSTGRES", value_parser = clap::builder::BoolishValueParser::new())]
    require_postgres: bool,
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
    // The PostgreSQL server's own faults are tested in the PostgreSQL pass only.
    let status = tally_tests::cargo()
        .current_dir(&root)
        .args(["test", "--workspace"])
        .args(with_libtest_args(&args.cargo_args, &["--skip", "postgres_durability", "--skip", "replicas"]))
        .env("TALLY_PYTHON", &python)
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("tests failed");
    }
    match postgres_suite(&root, &python, &args.cargo_args)? {
        Some(n) => eprintln!("xtask: {n} tests ran against PostgreSQL (and passed)"),
        None if args.require_postgres => {
            bail!("the PostgreSQL suite did not run: install PostgreSQL or set {POSTGRES_URL_ENV}")
        }
        None => {}
    }
    Ok(())
}

/// Runs the authority's integration tests and the end-to-end tests with
/// every harness database on PostgreSQL; returns how many tests made one
/// (each database a test creates logs the test's name), or `None` when
/// there is no PostgreSQL to run them on.
fn postgres_suite(root: &Path, python: &Path, cargo_args: &[String]) -> anyhow::Result<Option<usize>> {
    let (url, _cluster) = match std::env::var(POSTGRES_URL_ENV) {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            if tally_tests::postgres::server_bin_dir().is_none() {
                eprintln!(
                    "xtask: no PostgreSQL installed (initdb not found) and no {POSTGRES_URL_ENV}: \
                     the suite ran on SQLite only"
                );
                return Ok(None);
            }
            let cluster = PgCluster::start().context("starting a throwaway PostgreSQL cluster")?;
            eprintln!("xtask: throwaway PostgreSQL cluster on 127.0.0.1:{}", cluster.port());
            (cluster.url(), Some(cluster))
        }
    };
    let log = root.join("target/postgres-tests.log");
    let _ = std::fs::remove_file(&log);
    // The test executables the SQLite pass built (`--workspace`): the same
    // features, so nothing is compiled again.
    let (cargo_flags, libtest_args) = split_at_dashes(cargo_args);
    for (package, exe, dir) in test_executables(root, &cargo_flags, POSTGRES_SUITES)? {
        eprintln!("xtask: {package}'s `it` tests on PostgreSQL");
        let status = Command::new(&exe)
            .current_dir(&dir)
            .args(&libtest_args)
            .env("CARGO", env!("CARGO"))
            .env("CARGO_MANIFEST_DIR", &dir)
            .env("TALLY_PYTHON", python)
            .env(STORE_ENV, "postgres")
            .env(POSTGRES_URL_ENV, &url)
            .env(POSTGRES_LOG_ENV, &log)
            .status()
            .with_context(|| format!("running {}", exe.display()))?;
        if !status.success() {
            bail!("{package}'s tests failed on PostgreSQL");
        }
    }
    let names = std::fs::read_to_string(&log).unwrap_or_default();
    let tests: std::collections::BTreeSet<&str> = names.lines().collect();
    Ok(Some(tests.len()))
}

/// `cargo test` arguments with `extra` added to the test binaries' own
/// arguments (after the `--` the caller may have given already).
/// The packages whose `it` tests run on PostgreSQL too.
const POSTGRES_SUITES: &[&str] = &["tally-authority", "tally-tests"];

/// The `it` test executables of `packages`, as `cargo test --workspace`
/// builds them (already built: this only asks cargo where they are), with
/// each package's directory: (package, executable, directory).
fn test_executables(
    root: &Path,
    cargo_flags: &[String],
    packages: &[&str],
) -> anyhow::Result<Vec<(String, PathBuf, PathBuf)>> {
    let out = tally_tests::cargo()
        .current_dir(root)
        .args(["test", "--workspace", "--no-run", "--message-format=json-render-diagnostics"])
        .args(cargo_flags)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed");
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let target = &msg["target"];
        let is_it = target["name"] == "it" && target["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"));
        let (Some(exe), Some(manifest)) = (msg["executable"].as_str(), msg["manifest_path"].as_str()) else { continue };
        let package = msg["package_id"].as_str().and_then(|id| id.rsplit('#').next()).unwrap_or_default();
        let name = package.split('@').next().unwrap_or_default();
        if is_it && packages.contains(&name) {
            let dir = Path::new(manifest).parent().context("a manifest's directory")?;
            found.push((name.to_owned(), PathBuf::from(exe), dir.to_owned()));
        }
    }
    if found.len() != packages.len() {
        bail!("expected the `it` tests of {packages:?}, cargo built {found:?}");
    }
    Ok(found)
}

/// `cargo_args` split at `--`: cargo's flags before it, libtest's after.
fn split_at_dashes(cargo_args: &[String]) -> (Vec<String>, Vec<String>) {
    match cargo_args.iter().position(|a| a == "--") {
        Some(i) => (cargo_args[..i].to_vec(), cargo_args[i + 1..].to_vec()),
        None => (cargo_args.to_vec(), Vec::new()),
    }
}

fn with_libtest_args(cargo_args: &[String], extra: &[&str]) -> Vec<String> {
    let mut all = cargo_args.to_vec();
    if !all.iter().any(|a| a == "--") {
        all.push("--".into());
    }
    all.extend(extra.iter().map(|e| e.to_string()));
    all
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
