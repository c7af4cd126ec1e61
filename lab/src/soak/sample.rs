//! Samples: each process's resident memory (`VmRSS` in `/proc/PID/status`)
//! and open file descriptors (entries of `/proc/PID/fd`), the verifiers'
//! cache and deny-list sizes and the authority's subscribers from
//! `/metrics`, the size of the authority's database (its page caches grow
//! with it), and the load's own counters; one table line and one CSV row
//! each.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use tally_tests::metric;

use super::deployment::{Deployment, Role};
use super::load::Load;
use crate::usage::{fd_count, rss_bytes};

/// Memory and descriptors of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Proc {
    pub(crate) rss_kib: u64,
    pub(crate) fds: u64,
}

impl Proc {
    /// `None` once the process is gone.
    pub(crate) fn read(pid: u32) -> Option<Self> {
        Some(Self { rss_kib: rss_bytes(pid)? / 1024, fds: fd_count(pid)? })
    }
}

/// One sample of everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Since the load started.
    pub(crate) t: Duration,
    /// No fault under way, nor one that ended less than `faults::SETTLE` ago.
    pub(crate) calm: bool,
    pub(crate) incarnation: u32,
    pub(crate) authority_pid: u32,
    pub(crate) authority: Option<Proc>,
    pub(crate) eu: Option<Proc>,
    pub(crate) us: Option<Proc>,
    /// This process: the load generator and the proxy.
    pub(crate) runner: Option<Proc>,
    pub(crate) eu_cache: Option<u64>,
    pub(crate) eu_revoked: Option<u64>,
    pub(crate) us_cache: Option<u64>,
    pub(crate) us_revoked: Option<u64>,
    pub(crate) subscribers: Option<u64>,
    /// The database file in KiB (its write-ahead log, recycled, stays about 4 MiB).
    pub(crate) db_kib: Option<u64>,
    /// Checks answered per second since the previous sample.
    pub(crate) checks_per_s: f64,
    /// Latest the check dispatcher woke up since the previous sample.
    pub(crate) late_ms: u64,
    pub(crate) checks: u64,
    pub(crate) mints: u64,
    pub(crate) revocations: u64,
    pub(crate) faults: u64,
    pub(crate) restarts: u64,
}

/// Takes samples; remembers the previous one for rates.
#[derive(Debug)]
pub(crate) struct Sampler {
    started: Instant,
    last: Option<(Instant, u64)>,
}

impl Sampler {
    pub(crate) fn new(started: Instant) -> Self {
        Self { started, last: None }
    }

    pub(crate) async fn take(
        &mut self,
        d: &mut Deployment,
        load: &Load,
        calm: bool,
        faults: u64,
        restarts: u64,
    ) -> Sample {
        let now = Instant::now();
        // /proc first: a scrape opens a connection of its own for a moment.
        let authority_pid = d.pid(Role::Authority);
        let (authority, eu, us) = (Proc::read(authority_pid), Proc::read(d.pid(Role::Eu)), Proc::read(d.pid(Role::Us)));
        let runner = Proc::read(std::process::id());
        let gauge = |text: &Option<String>, name: &str| text.as_deref().and_then(|t| metric(t, name)).map(|v| v as u64);
        let (eu_text, us_text) = (d.metrics(Role::Eu).await, d.metrics(Role::Us).await);
        let auth_text = d.metrics(Role::Authority).await;
        let db_kib = std::fs::metadata(d.authority.db_path()).map(|m| m.len() / 1024).ok();
        let checks = load.checks.done.load(Ordering::Relaxed);
        let checks_per_s = match self.last {
            Some((at, done)) => (checks - done) as f64 / (now - at).as_secs_f64().max(1e-3),
            None => 0.0,
        };
        self.last = Some((now, checks));
        Sample {
            t: now - self.started,
            calm,
            incarnation: d.incarnation,
            authority_pid,
            authority,
            eu,
            us,
            runner,
            eu_cache: gauge(&eu_text, "tally_verifier_cache_entries"),
            eu_revoked: gauge(&eu_text, "tally_verifier_revoked_ids"),
            us_cache: gauge(&us_text, "tally_verifier_cache_entries"),
            us_revoked: gauge(&us_text, "tally_verifier_revoked_ids"),
            subscribers: gauge(&auth_text, "tally_authority_subscribers"),
            db_kib,
            checks_per_s,
            late_ms: load.checks.worst_late_ms.swap(0, Ordering::Relaxed),
            checks,
            mints: load.ops.mints.load(Ordering::Relaxed),
            revocations: load.ops.revocations.load(Ordering::Relaxed),
            faults,
            restarts,
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn mib(p: Option<Proc>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{:.1}", p.rss_kib as f64 / 1024.0))
}

fn fds(p: Option<Proc>) -> String {
    p.map_or_else(|| "-".into(), |p| p.fds.to_string())
}

/// A sample as a row of the CSV: the header is these names, in this order;
/// `None` is an empty field.
#[derive(Debug, Serialize)]
pub(crate) struct CsvRow {
    elapsed_s: String,
    calm: u8,
    authority_incarnation: u32,
    authority_pid: u32,
    authority_rss_kib: Option<u64>,
    authority_fds: Option<u64>,
    authority_subscribers: Option<u64>,
    authority_db_kib: Option<u64>,
    eu_rss_kib: Option<u64>,
    eu_fds: Option<u64>,
    eu_cache_entries: Option<u64>,
    eu_revoked_ids: Option<u64>,
    us_rss_kib: Option<u64>,
    us_fds: Option<u64>,
    us_cache_entries: Option<u64>,
    us_revoked_ids: Option<u64>,
    runner_rss_kib: Option<u64>,
    runner_fds: Option<u64>,
    checks_per_s: String,
    dispatch_late_ms: u64,
    checks: u64,
    mints: u64,
    revocations: u64,
    faults: u64,
    restarts: u64,
}

impl Sample {
    pub(crate) fn csv_row(&self) -> CsvRow {
        let rss = |p: Option<Proc>| p.map(|p| p.rss_kib);
        let fd = |p: Option<Proc>| p.map(|p| p.fds);
        CsvRow {
            elapsed_s: format!("{:.1}", self.t.as_secs_f64()),
            calm: u8::from(self.calm),
            authority_incarnation: self.incarnation,
            authority_pid: self.authority_pid,
            authority_rss_kib: rss(self.authority),
            authority_fds: fd(self.authority),
            authority_subscribers: self.subscribers,
            authority_db_kib: self.db_kib,
            eu_rss_kib: rss(self.eu),
            eu_fds: fd(self.eu),
            eu_cache_entries: self.eu_cache,
            eu_revoked_ids: self.eu_revoked,
            us_rss_kib: rss(self.us),
            us_fds: fd(self.us),
            us_cache_entries: self.us_cache,
            us_revoked_ids: self.us_revoked,
            runner_rss_kib: rss(self.runner),
            runner_fds: fd(self.runner),
            checks_per_s: format!("{:.0}", self.checks_per_s),
            dispatch_late_ms: self.late_ms,
            checks: self.checks,
            mints: self.mints,
            revocations: self.revocations,
            faults: self.faults,
            restarts: self.restarts,
        }
    }

    /// Column heads of [`Sample::table_row`] (RSS in MiB, inc = the authority's incarnation).
    pub(crate) fn table_header() -> String {
        format!(
            "{:>6} {:>5} | {:>3} {:>6} {:>4} {:>6} | {:>6} {:>4} {:>6} | {:>6} {:>4} {:>6} | {:>6} {:>4} | {:>8} {:>6}",
            "t s",
            "calm",
            "inc",
            "auth",
            "fd",
            "db KiB",
            "eu",
            "fd",
            "cache",
            "us",
            "fd",
            "cache",
            "runner",
            "fd",
            "checks/s",
            "faults"
        )
    }

    pub(crate) fn table_row(&self) -> String {
        format!(
            "{:>6.0} {:>5} | {:>3} {:>6} {:>4} {:>6} | {:>6} {:>4} {:>6} | {:>6} {:>4} {:>6} | {:>6} {:>4} | {:>8.0} {:>6}{}",
            self.t.as_secs_f64(),
            if self.calm { "yes" } else { "no" },
            self.incarnation,
            mib(self.authority),
            fds(self.authority),
            opt(self.db_kib),
            mib(self.eu),
            fds(self.eu),
            opt(self.eu_cache),
            mib(self.us),
            fds(self.us),
            opt(self.us_cache),
            mib(self.runner),
            fds(self.runner),
            self.checks_per_s,
            self.faults,
            if self.late_ms > 1000 { format!("  load generator late {} ms", self.late_ms) } else { String::new() },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSV's columns as the soak has always written them (readers of old runs' files depend on them).
    const HEADER: &str = "elapsed_s,calm,authority_incarnation,authority_pid,authority_rss_kib,\
authority_fds,authority_subscribers,authority_db_kib,eu_rss_kib,eu_fds,eu_cache_entries,eu_revoked_ids,us_rss_kib,us_fds,\
us_cache_entries,us_revoked_ids,runner_rss_kib,runner_fds,checks_per_s,dispatch_late_ms,checks,mints,\
revocations,faults,restarts";

    #[test]
    fn csv_keeps_its_columns_and_number_formats() {
        let sample = Sample {
            t: Duration::from_millis(12_340),
            calm: true,
            incarnation: 2,
            authority_pid: 77,
            authority: Some(Proc { rss_kib: 30_000, fds: 40 }),
            eu_cache: Some(5),
            checks_per_s: 399.6,
            checks: 10,
            ..Sample::default()
        };
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.serialize(sample.csv_row()).unwrap();
        let text = String::from_utf8(csv.into_inner().unwrap()).unwrap();
        assert_eq!(text, format!("{HEADER}\n12.3,1,2,77,30000,40,,,,,5,,,,,,,,400,0,10,0,0,0,0\n"));
    }
}
