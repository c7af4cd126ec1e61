//! A child process guard: output captured line by line, waits on lines with a
//! deadline, and the process always killed when the guard drops (also when
//! the test panics).

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::watch;

use crate::poll::POLL_INTERVAL;

/// Lines shown from each stream when a test panics with a child alive.
const TAIL_ON_PANIC: usize = 40;
/// Set to echo every captured line to the test's stderr as it arrives.
pub const ECHO_ENV: &str = "TALLY_TEST_ECHO";

/// The lines one pipe produced so far, shared with the thread reading it.
#[derive(Clone)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    /// Bumped on every line and at end of file: wakes async waiters.
    changed: watch::Sender<(usize, bool)>,
}

impl fmt::Debug for Lines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, eof) = *self.changed.borrow();
        f.debug_struct("Lines").field("count", &n).field("eof", &eof).finish()
    }
}

impl Lines {
    fn new() -> Self {
        Self { lines: Arc::default(), changed: watch::Sender::new((0, false)) }
    }

    /// Starts a thread that reads `pipe` to its end into these lines.
    fn read_from(&self, pipe: impl Read + Send + 'static, label: String) {
        let this = self.clone();
        let echo = std::env::var_os(ECHO_ENV).is_some();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            // Lines are read as bytes: a non-UTF-8 line must not end the capture.
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
                buf.clear();
                if echo {
                    eprintln!("[{label}] {line}");
                }
                let n = {
                    let mut lines = this.lines.lock().unwrap_or_else(|p| p.into_inner());
                    lines.push(line);
                    lines.len()
                };
                this.changed.send_replace((n, false));
            }
            this.changed.send_modify(|s| s.1 = true);
        });
    }

    /// A copy of the lines so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the pipe reached its end (the process closed it or exited).
    pub fn closed(&self) -> bool {
        self.changed.borrow().1
    }

    /// Waits until a line satisfies `pred` and returns it. Fails at `deadline`
    /// or when the pipe ends first.
    pub async fn wait_for(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let mut rx = self.changed.subscribe();
        let mut seen = 0;
        let give_up = tokio::time::Instant::now() + deadline;
        loop {
            let eof = rx.borrow_and_update().1;
            {
                let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(line) = lines[seen..].iter().find(|l| pred(l)) {
                    return Ok(line.clone());
                }
                seen = lines.len();
            }
            if eof {
                bail!("the stream ended without the expected line");
            }
            match tokio::time::timeout_at(give_up, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the reader thread is gone"),
                Err(_) => bail!("no matching line within {deadline:?}"),
            }
        }
    }
}

/// A spawned process. Dropping it kills the process (SIGKILL) and reaps it.
pub struct Child {
    name: String,
    process: std::process::Child,
    stdout: Lines,
    stderr: Lines,
    status: Option<ExitStatus>,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("status", &self.status)
            .finish()
    }
}

impl Child {
    /// Spawns `program` with `args` and `envs`, stdin closed and stdout/stderr captured.
    pub fn spawn<I, S>(program: &Path, args: I, envs: &[(&str, &str)]) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let name = program.file_name().map_or_else(|| "child".into(), |n| n.to_string_lossy().into_owned());
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Plain log lines: colour codes would sit between the words tests look for.
        cmd.env("NO_COLOR", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut process = cmd.spawn().with_context(|| format!("spawning {}", program.display()))?;
        let (stdout, stderr) = (Lines::new(), Lines::new());
        let pid = process.id();
        stdout.read_from(process.stdout.take().expect("piped stdout"), format!("{name} {pid} out"));
        stderr.read_from(process.stderr.take().expect("piped stderr"), format!("{name} {pid} err"));
        Ok(Self { name, process, stdout, stderr, status: None })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Captured standard output.
    pub fn stdout(&self) -> &Lines {
        &self.stdout
    }

    /// Captured standard error.
    pub fn stderr(&self) -> &Lines {
        &self.stderr
    }

    /// Waits for a stdout line matching `pred`; the error carries stderr's tail.
    pub async fn wait_for_stdout(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let r = self.stdout.wait_for(deadline, pred).await;
        r.with_context(|| format!("{} (stdout): stderr so far:\n{}", self.name, self.stderr.snapshot().join("\n")))
    }

    /// Waits for a stderr line matching `pred`.
    pub async fn wait_for_stderr(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        self.stderr.wait_for(deadline, pred).await.with_context(|| format!("{} (stderr)", self.name))
    }

    /// Exit status if the process has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.process.try_wait().ok().flatten();
        }
        self.status
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reaps the process.
    pub fn kill_9(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        let _ = self.process.kill();
        let status = self.process.wait().expect("waiting for a killed child");
        self.status = Some(status);
        status
    }

    /// SIGTERM (through `kill -TERM PID`), without waiting.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        if self.try_status().is_some() {
            bail!("{} already exited", self.name);
        }
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.pid());
        }
        Ok(())
    }

    /// Waits for the process to exit, polling, until `deadline`; also waits
    /// for its pipes to be read to the end so every line is captured.
    pub async fn wait(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status()
                && self.stdout.closed()
                && self.stderr.closed()
            {
                return Ok(status);
            }
            if start.elapsed() > deadline {
                bail!("{} (pid {}) did not exit within {deadline:?}", self.name, self.pid());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        self.terminate()?;
        self.wait(deadline).await
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_9();
        if std::thread::panicking() {
            for (label, lines) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                let lines = lines.snapshot();
                let tail = &lines[lines.len().saturating_sub(TAIL_ON_PANIC)..];
                eprintln!("--- {} (pid {}) {label}, last {} lines:", self.name, self.pid(), tail.len());
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}
