//! Shared by the end-to-end tests of this crate: running the `tally` binary
//! as a user would, and small helpers around the `tally-tests` harness.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// How long one CLI command may take.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(20);

/// Environment the CLI reads; cleared so a developer's shell cannot leak in.
const CLI_ENV: [&str; 3] = ["TALLY_AUTHORITY_URL", "TALLY_TOKEN_FILE", "TALLY_VERIFIER_URL"];

/// A finished `tally` run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:?}");
        self
    }
}

/// Runs `tally ARGS` with `envs`, feeding `stdin`, killed at the deadline.
pub async fn tally_with(args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tally"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for k in CLI_ENV {
        cmd.env_remove(k);
    }
    cmd.envs(envs.iter().copied());
    let mut child = cmd.spawn().expect("spawning tally");
    let mut pipe = child.stdin.take().expect("piped stdin");
    // The command may exit without reading stdin: a write error is fine.
    let _ = pipe.write_all(stdin.as_bytes()).await;
    drop(pipe);
    let out = tokio::time::timeout(COMMAND_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("tally {args:?} did not finish within {COMMAND_DEADLINE:?}"))
        .expect("waiting for tally");
    Out {
        code: out.status.code().expect("tally exited by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub async fn tally(args: &[&str]) -> Out {
    tally_with(args, &[], "").await
}

/// A file holding `token`, in `dir`.
pub fn token_file(dir: &Path, name: &str, token: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).expect("writing a token file");
    path
}

/// A loopback URL nothing listens on (a port bound, then released).
pub fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a probe port");
    let addr = listener.local_addr().expect("probe address");
    drop(listener);
    format!("http://{addr}")
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}
