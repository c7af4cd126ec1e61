//! Where processes run and what they cost: the CPUs this process may use,
//! moving a process (all its threads) to one CPU with `taskset`, and CPU time
//! and resident memory of a process read from `/proc`.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};

/// Which CPU the servers and which the load generator run on, when pinned.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Placement {
    /// Servers (authority, verifiers, echo) are moved here after they start.
    pub(crate) server: Option<usize>,
    /// The runner and the load generator run here.
    pub(crate) client: Option<usize>,
}

impl Placement {
    /// Whether servers and client run on different, fixed CPUs.
    pub(crate) fn pinned(&self) -> bool {
        self.server.is_some() && self.client.is_some()
    }

    /// Moves every thread of `pid` to the server CPU (no-op when unpinned).
    pub(crate) fn pin_server(&self, pid: u32) -> anyhow::Result<()> {
        match self.server {
            Some(cpu) => pin(pid, cpu),
            None => Ok(()),
        }
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list` in `/proc/self/status`).
pub(crate) fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) else {
        return Vec::new();
    };
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.parse::<usize>(), hi.parse::<usize>()) {
            cpus.extend(lo..=hi);
        }
    }
    cpus
}

/// Whether `tool` runs (is installed and on `PATH`).
pub(crate) fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// `taskset -a -p -c CPU PID`: every existing thread of `pid` to `cpu`
/// (threads made later inherit it from the thread that makes them).
pub(crate) fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    ensure!(status.success(), "taskset -a -p -c {cpu} {pid} failed: {status}");
    Ok(())
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, 100 almost everywhere).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().ok();
        out.and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(100.0)
    })
}

/// User + system CPU seconds `pid` used so far (`None` once it is gone).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_at(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// CPU seconds of this process so far.
pub(crate) fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds_at(Path::new("/proc/self/stat"))
}

fn cpu_seconds_at(stat: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Resident set size of `pid` in bytes (`VmRSS`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` prints them.
pub(crate) fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The CPU model, from `/proc/cpuinfo`.
pub(crate) fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into())
}
