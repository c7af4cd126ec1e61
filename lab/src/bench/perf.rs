//! `--perf`: a `perf record` of the servers during each saturation run, and
//! its flat profile (`perf report`, self time by symbol) as text beside it,
//! so a scenario below its target comes with what dominates its CPU time.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, ensure};

/// Sampling frequency (Hz): enough samples in a few seconds, little overhead.
const FREQUENCY: &str = "1999";
/// Symbols below this share of samples are left out of the text report.
const PERCENT_LIMIT: &str = "0.5";

/// A running `perf record`.
#[derive(Debug)]
pub(crate) struct Recording {
    child: tokio::process::Child,
    data: PathBuf,
}

/// Starts recording `pids` into `DIR/perf-LABEL.data`.
pub(crate) fn start(dir: &Path, label: &str, pids: &[u32]) -> anyhow::Result<Recording> {
    let data = dir.join(format!("perf-{label}.data"));
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let child = tokio::process::Command::new("perf")
        .args(["record", "--quiet", "-F", FREQUENCY, "-p", &pids.join(","), "-o"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("running perf record")?;
    Ok(Recording { child, data })
}

impl Recording {
    /// Stops recording (SIGINT, so perf writes its file) and writes the flat
    /// profile next to the data; returns the text file.
    pub(crate) async fn finish(mut self) -> anyhow::Result<PathBuf> {
        let pid = self.child.id().context("perf record exited early")?;
        let status = tokio::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().await?;
        ensure!(status.success(), "kill -INT {pid} failed");
        self.child.wait().await?;
        let report = tokio::process::Command::new("perf")
            .args(["report", "--stdio", "--no-children", "--sort", "comm,dso,symbol", "--percent-limit", PERCENT_LIMIT])
            .arg("-i")
            .arg(&self.data)
            .stderr(Stdio::null())
            .output()
            .await
            .context("running perf report")?;
        let text = self.data.with_extension("txt");
        std::fs::write(&text, &report.stdout)?;
        Ok(text)
    }
}
