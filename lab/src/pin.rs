//! Where the bench's processes run: the CPU lock every benchmark run on this
//! machine takes, the CPUs this process may use, and moving a process (all
//! its threads) to one CPU with `taskset`.

use std::fs::{File, OpenOptions};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};

/// The lock every heavy measuring run on this machine takes (`flock(1)` on
/// the same file takes turns with it).
const CPU_LOCK: &str = "/tmp/tally-cpu.lock";

/// Which CPU the servers and which the load generator run on, when pinned.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Placement {
    /// Servers (authority, verifiers, echo) are moved here after they start.
    pub(crate) server: Option<usize>,
    /// The runner and the load generator run here.
    pub(crate) client: Option<usize>,
}

impl Placement {
    /// Two of the CPUs this process may use, when there are two and `taskset` runs.
    pub(crate) fn choose() -> Self {
        match allowed_cpus().as_slice() {
            [server, client, ..] if have("taskset") => Self { server: Some(*server), client: Some(*client) },
            _ => Self::default(),
        }
    }

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

    /// Moves this process to the client CPU (no-op when unpinned). Called
    /// before any other thread starts: the threads made later, and the
    /// processes started later (the load generator), inherit it.
    pub(crate) fn pin_self(&self) -> anyhow::Result<()> {
        match self.client {
            Some(cpu) => pin(std::process::id(), cpu),
            None => Ok(()),
        }
    }
}

/// Waits for [`CPU_LOCK`] and holds it until the returned file is dropped
/// (at the latest when the process exits).
pub(crate) fn take_cpu_lock(task: &str) -> anyhow::Result<File> {
    eprintln!("{task}: taking {CPU_LOCK} (waits while another benchmark runs)…");
    let file = File::open(CPU_LOCK)
        .or_else(|_| OpenOptions::new().write(true).create(true).truncate(false).open(CPU_LOCK))
        .with_context(|| format!("opening {CPU_LOCK}"))?;
    file.lock().with_context(|| format!("locking {CPU_LOCK}"))?;
    Ok(file)
}

/// The CPUs this process may run on (`Cpus_allowed_list` of its status).
fn allowed_cpus() -> Vec<usize> {
    let ranges = procfs::process::Process::myself().and_then(|p| p.status()).ok().and_then(|s| s.cpus_allowed_list);
    ranges.unwrap_or_default().into_iter().flat_map(|(lo, hi)| lo as usize..=hi as usize).collect()
}

/// Whether `tool` runs (is installed and on `PATH`).
fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// `taskset -a -p -c CPU PID`: every existing thread of `pid` to `cpu`
/// (threads made later inherit it from the thread that makes them).
fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    ensure!(status.success(), "taskset -a -p -c {cpu} {pid} failed: {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_may_run_somewhere() {
        assert!(!allowed_cpus().is_empty());
    }
}
