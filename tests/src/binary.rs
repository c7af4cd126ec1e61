//! Locating the workspace's binaries, built fresh once per test process.
//!
//! End-to-end tests must never run a stale or missing binary: `cargo test -p
//! tally-tests` does not build other packages' binaries, so the first call to
//! [`binary`] for a name runs `cargo build -p PACKAGE --bin NAME` (with the
//! test binary's own profile) and later calls reuse the result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A binary of the workspace and the package that builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bin {
    /// Cargo package (`-p`).
    pub package: &'static str,
    /// Binary target name (`--bin`).
    pub name: &'static str,
}

/// When set, binaries are taken from this directory as they are, without
/// building: for callers that built them already (`cargo xtask bench` runs
/// release binaries it built itself).
pub const BIN_DIR_ENV: &str = "TALLY_BIN_DIR";

/// The authority binary.
pub const AUTHORITY: Bin = Bin { package: "tally-authority", name: "tally-authority" };

/// Results of the builds done so far in this process, by (package, name).
/// The lock is held while building, so concurrent tests wait for one build.
static BUILT: Mutex<BTreeMap<(String, String), Result<PathBuf, String>>> = Mutex::new(BTreeMap::new());

/// Path of the binary `name` from the package of the same name, built first.
/// Panics when it cannot be built.
pub fn binary(name: &str) -> PathBuf {
    binary_in(name, name)
}

/// Path of the binary `name` of `package`, built first (once per process).
/// Panics with cargo's output when the build fails.
pub fn binary_in(package: &str, name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let path = Path::new(&dir).join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        assert!(path.is_file(), "{BIN_DIR_ENV} is set but {} does not exist", path.display());
        return path;
    }
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let result = built.entry((package.to_owned(), name.to_owned())).or_insert_with(|| build(package, name));
    match result {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// The directory holding the binaries of the profile this test was built
/// with: `target/debug` for `target/debug/deps/test-…`, or
/// `$CARGO_TARGET_DIR/debug` when the test executable is not in a `deps` dir.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    if let Some(deps) = exe.parent().filter(|d| d.file_name().is_some_and(|n| n == "deps"))
        && let Some(dir) = deps.parent()
    {
        return dir.to_owned();
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug")
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_owned()
}

/// Variables cargo sets for the crate being run, not for cargo itself.
const INHERITED_FROM_CARGO: [&str; 7] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];
const INHERITED_PREFIXES: [&str; 3] = ["CARGO_PKG_", "CARGO_BIN_", "CARGO_CFG_"];

/// `cargo` (the one running this process, when cargo started it) in the
/// environment of a plain build. Cargo sets the variables above for the test
/// (or xtask) process itself; passed on, they would differ from a plain
/// build's environment, and a build script that reruns when one changes
/// (ring's watches CARGO_PKG_NAME and CARGO_MANIFEST_DIR) would rebuild it
/// and everything above it, each time a build runs from elsewhere.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if INHERITED_FROM_CARGO.contains(&key) || INHERITED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn build(package: &str, name: &str) -> Result<PathBuf, String> {
    let dir = profile_dir();
    // The directory name is the profile's, except for `dev` which builds into `debug`.
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let mut cmd = cargo();
    cmd.current_dir(workspace_root()).args(["build", "--profile", &profile, "-p", package, "--bin", name]);
    // Build into the directory the test runs from, wherever cargo would otherwise put it.
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    let output = cmd.output().map_err(|e| format!("cannot run cargo to build {name}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo build -p {package} --bin {name}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        return Err(format!("built {name} but {} does not exist", path.display()));
    }
    Ok(path)
}
