//! What processes cost and what the host is, read from `/proc` (procfs):
//! CPU time, resident memory and open descriptors of a process, the load
//! average, the CPU model and count.

use procfs::process::Process;
use procfs::{CpuInfo, Current, LoadAverage};

fn process(pid: u32) -> Option<Process> {
    Process::new(i32::try_from(pid).ok()?).ok()
}

fn cpu_seconds_of(p: &Process) -> Option<f64> {
    let stat = p.stat().ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// User + system CPU seconds `pid` used so far (`None` once it is gone).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of(&process(pid)?)
}

/// CPU seconds of this process so far.
pub(crate) fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds_of(&Process::myself().ok()?)
}

/// Resident set size of `pid` in bytes (`VmRSS`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    Some(process(pid)?.status().ok()?.vmrss? * 1024)
}

/// Open file descriptors of `pid`.
pub(crate) fn fd_count(pid: u32) -> Option<u64> {
    Some(process(pid)?.fd_count().ok()? as u64)
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` prints them.
pub(crate) fn load_average() -> String {
    LoadAverage::current().map_or_else(|_| String::new(), |l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen))
}

/// The CPU model and the number of CPUs.
pub(crate) fn cpu() -> (String, usize) {
    let Ok(info) = CpuInfo::current() else { return ("unknown CPU".into(), 0) };
    let model = info.model_name(0).map_or_else(|| "unknown CPU".into(), |m| m.trim().to_owned());
    (model, info.num_cores())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_host() {
        let me = std::process::id();
        assert!(own_cpu_seconds().is_some_and(|s| s >= 0.0));
        assert!(cpu_seconds(me).is_some());
        assert!(rss_bytes(me).is_some_and(|b| b > 1 << 20), "{:?}", rss_bytes(me));
        // stdin, stdout, stderr at least.
        assert!(fd_count(me).is_some_and(|n| n >= 3));
        assert_eq!(load_average().split(' ').count(), 3, "{:?}", load_average());
        assert!(cpu().1 >= 1);
        assert!(cpu_seconds(u32::MAX).is_none() && rss_bytes(u32::MAX).is_none());
    }
}
