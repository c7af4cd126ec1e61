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
const CLI_ENV: [&str; 7] = [
    "TALLY_AUTHORITY_URL",
    "TALLY_TOKEN_FILE",
    "TALLY_VERIFIER_URL",
    "TALLY_AUTHORITY_CA",
    "TALLY_TLS_CLIENT_CERT",
    "TALLY_TLS_CLIENT_KEY",
    "TALLY_VERIFIER_CA",
];

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

/// Path of this crate's example `name`, built first (once per test process),
/// into the directory the test runs from.
pub fn example(name: &str) -> PathBuf {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let dir = tally_tests::profile_dir();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(&cargo);
    cmd.current_dir(tally_tests::workspace_root()).args([
        "build",
        "--profile",
        &profile,
        "-p",
        "tally-client",
        "--example",
        name,
    ]);
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    let out = cmd.output().expect("running cargo build");
    assert!(out.status.success(), "building example {name} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "built example {name} but {} does not exist", path.display());
    built.insert(name.to_owned(), path.clone());
    path
}

/// Starts example `name` with `args` plus `--listen 127.0.0.1:0`; returns it
/// (killed on drop) and the address it reports.
pub async fn start_example(name: &str, args: &[&str]) -> (tally_tests::Child, std::net::SocketAddr) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--listen", "127.0.0.1:0"]);
    let child = tally_tests::Child::spawn(&example(name), all, &[("RUST_LOG", "info")]).expect("spawning example");
    let line = child.wait_for_stdout(tally_tests::DEADLINE, |l| l.starts_with("listening on ")).await.unwrap();
    let addr = line["listening on ".len()..].trim().parse().expect("example prints its address");
    (child, addr)
}

/// A plain HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, bearer: Option<&str>) -> HttpResponse {
    use tokio::io::AsyncReadExt;
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await?;
        let mut raw = String::new();
        conn.read_to_string(&mut raw).await?;
        std::io::Result::Ok(raw)
    };
    let raw = tokio::time::timeout(COMMAND_DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {COMMAND_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse { status, headers, body: body.to_owned() }
}
