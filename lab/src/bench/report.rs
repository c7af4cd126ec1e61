//! What a run found: `report.json`, the table printed at the end, the
//! targets of issue 5 met or not, and the check that every scenario
//! produced numbers (all `--quick` asserts).

use std::fmt::Write as _;

use anyhow::ensure;
use serde::Serialize;

use super::lab::CommitTime;
use crate::load::Outcome;

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) meta: Meta,
    /// Echo first, then the Check scenarios.
    pub(crate) checks: Vec<CheckScenario>,
    pub(crate) mix: Option<Mix>,
    pub(crate) propagation: Option<Propagation>,
    pub(crate) catchup: Option<Catchup>,
    pub(crate) authority: Vec<AuthorityRun>,
    pub(crate) memory: Option<Memory>,
    pub(crate) targets: Vec<Target>,
}

/// When, where, how.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Meta {
    pub(crate) date: String,
    pub(crate) commit: String,
    pub(crate) cpu: String,
    pub(crate) cpus: usize,
    pub(crate) quick: bool,
    /// Whether servers and the load generator ran pinned to different CPUs.
    pub(crate) pinned: bool,
    pub(crate) server_cpu: Option<usize>,
    pub(crate) client_cpu: Option<usize>,
    pub(crate) load_average_before: String,
    pub(crate) load_average_after: String,
    pub(crate) seconds: f64,
}

/// A Check scenario (or echo): saturation, and latency at a fixed rate.
#[derive(Debug, Serialize)]
pub(crate) struct CheckScenario {
    pub(crate) name: String,
    pub(crate) title: String,
    /// The saturation run with the median throughput.
    pub(crate) saturation: Outcome,
    /// Throughput of every saturation round.
    pub(crate) rounds: Vec<f64>,
    /// Requests per second of the open-loop run.
    pub(crate) rate: f64,
    pub(crate) moderate: Outcome,
}

/// The realistic mix's extras.
#[derive(Debug, Serialize)]
pub(crate) struct Mix {
    pub(crate) families: usize,
    pub(crate) revoked: usize,
    pub(crate) checks: u64,
    pub(crate) authority_answers: u64,
    /// Checks answered without the authority.
    pub(crate) hit_ratio: f64,
}

/// Revocation propagation to many verifiers.
#[derive(Debug, Serialize)]
pub(crate) struct Propagation {
    pub(crate) verifiers: usize,
    pub(crate) revocations: usize,
    pub(crate) poll_ms: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    /// Every (verifier, revocation) latency, sorted, for the CDF.
    pub(crate) samples_ms: Vec<f64>,
}

/// A fresh verifier catching up.
#[derive(Debug, Serialize)]
pub(crate) struct Catchup {
    pub(crate) revocations: u64,
    /// From spawning the process to applied = head.
    pub(crate) from_spawn_s: f64,
    /// From its "listening on" line to applied = head.
    pub(crate) from_listening_s: f64,
}

/// The authority's stores, as runs name them.
pub(crate) const SQLITE: &str = "sqlite";
pub(crate) const POSTGRES: &str = "postgres";

/// One authority RPC at some number of callers (closed loop).
#[derive(Debug, Serialize)]
pub(crate) struct AuthorityRun {
    /// The authority's store: `sqlite` or `postgres`.
    pub(crate) store: &'static str,
    pub(crate) rpc: String,
    pub(crate) callers: usize,
    pub(crate) outcome: Outcome,
    /// Mean changes per group commit of the authority over the run (warm-up
    /// included); `None` when it committed nothing.
    pub(crate) changes_per_commit: Option<f64>,
    /// Mean time per group commit and the share of the run the writer spent
    /// committing (warm-up included); `None` when it committed nothing.
    pub(crate) commit_time: Option<CommitTime>,
    /// Revoke-by-family look-ups over the run that the authority's memory of
    /// recent mints could not answer (each a database read).
    pub(crate) registry_reads: u64,
}

/// Verifier memory per cached entry.
#[derive(Debug, Serialize)]
pub(crate) struct Memory {
    pub(crate) entries: u64,
    pub(crate) families: usize,
    pub(crate) rss_before: u64,
    pub(crate) rss_after: u64,
    pub(crate) entries_before: u64,
    pub(crate) bytes_per_entry: f64,
}

/// A target of issue 5.
#[derive(Debug, Serialize)]
pub(crate) struct Target {
    pub(crate) what: String,
    pub(crate) goal: String,
    pub(crate) measured: String,
    pub(crate) met: bool,
}

impl Report {
    pub(crate) fn check(&self, name: &str) -> Option<&CheckScenario> {
        self.checks.iter().find(|c| c.name == name)
    }

    fn authority_run(&self, store: &str, rpc: &str, callers: usize) -> Option<&AuthorityRun> {
        self.authority.iter().find(|a| a.store == store && a.rpc == rpc && a.callers == callers)
    }

    /// Fills `targets` from the results.
    pub(crate) fn judge(&mut self) {
        let mut t = Vec::new();
        let mut add = |what: &str, goal: &str, measured: String, met: bool| {
            t.push(Target { what: what.into(), goal: goal.into(), measured, met })
        };
        if let (Some(echo), Some(exact)) = (self.check("echo"), self.check("exact")) {
            let r = exact.saturation.throughput / echo.saturation.throughput;
            add("exact hit throughput", "≥ 0.9 × echo", format!("{r:.2} × echo"), r >= 0.9);
            let r = exact.moderate.latency.p99 / echo.moderate.latency.p99;
            add("exact hit p99", "≤ 1.2 × echo", format!("{r:.2} × echo"), r <= 1.2);
        }
        if let (Some(echo), Some(desc)) = (self.check("echo"), self.check("descendant")) {
            let r = desc.saturation.throughput / echo.saturation.throughput;
            add("descendant hit throughput", "≥ 0.85 × echo", format!("{r:.2} × echo"), r >= 0.85);
        }
        if let Some(m) = &self.mix {
            add("realistic mix hit ratio", "≥ 99.5 %", format!("{:.3} %", m.hit_ratio * 100.0), m.hit_ratio >= 0.995);
        }
        if let Some(p) = &self.propagation {
            let what = format!("propagation to {} verifiers, p99", p.verifiers);
            add(&what, "≤ 10 ms", format!("{:.2} ms", p.p99_ms), p.p99_ms <= 10.0);
        }
        if let Some(c) = &self.catchup {
            let what = format!("catch-up of {} revocations", c.revocations);
            add(&what, "≤ 1 s (100k)", format!("{:.3} s", c.from_spawn_s), c.from_spawn_s <= 1.0);
        }
        if let Some(r) = self.authority_run(SQLITE, "Revoke", 64) {
            let x = r.outcome.throughput;
            add("revoke commits, 64 callers", "≥ 20k/s", format!("{x:.0}/s"), x >= 20_000.0);
        }
        if let Some(r) = self.authority_run(POSTGRES, "Revoke", 64) {
            let x = r.outcome.throughput;
            add("revoke commits on PostgreSQL, 64 callers", "≥ 15k/s", format!("{x:.0}/s"), x >= 15_000.0);
        }
        if let Some(m) = &self.memory {
            let what = format!("memory per cached token ({} entries)", m.entries);
            add(&what, "≤ 256 B", format!("{:.0} B", m.bytes_per_entry), m.bytes_per_entry <= 256.0);
        }
        self.targets = t;
    }

    /// Fails unless every scenario produced numbers.
    pub(crate) fn ensure_complete(&self) -> anyhow::Result<()> {
        let good = |x: f64| x.is_finite() && x > 0.0;
        for name in ["echo", "exact", "descendant", "cold", "mix"] {
            let c = self.check(name).ok_or_else(|| anyhow::anyhow!("scenario {name} missing"))?;
            for (part, o) in [("saturation", &c.saturation), ("fixed rate", &c.moderate)] {
                ensure!(o.ok > 0 && good(o.throughput), "{name} {part}: no answers ({:?})", o.first_error);
                ensure!(good(o.latency.p50) && good(o.latency.p999), "{name} {part}: no latency");
            }
        }
        let mix = self.mix.as_ref().ok_or_else(|| anyhow::anyhow!("mix hit ratio missing"))?;
        ensure!(mix.checks > 0 && mix.hit_ratio.is_finite(), "mix: no checks");
        let p = self.propagation.as_ref().ok_or_else(|| anyhow::anyhow!("propagation missing"))?;
        ensure!(p.samples_ms.len() == p.verifiers * p.revocations, "propagation: samples missing");
        let c = self.catchup.as_ref().ok_or_else(|| anyhow::anyhow!("catch-up missing"))?;
        ensure!(good(c.from_spawn_s), "catch-up: no time");
        let stores =
            if self.authority.iter().any(|a| a.store == POSTGRES) { &[SQLITE, POSTGRES][..] } else { &[SQLITE] };
        for store in stores {
            for rpc in ["Mint", "Verify", "Revoke"] {
                for callers in [1, 64] {
                    let r = self
                        .authority_run(store, rpc, callers)
                        .ok_or_else(|| anyhow::anyhow!("{rpc} × {callers} on {store} missing"))?;
                    ensure!(r.outcome.ok > 0 && good(r.outcome.throughput), "{rpc} × {callers} on {store}: no answers");
                }
            }
        }
        let m = self.memory.as_ref().ok_or_else(|| anyhow::anyhow!("memory missing"))?;
        ensure!(good(m.bytes_per_entry), "memory: no figure");
        Ok(())
    }

    /// The table printed at the end (also what the README quotes).
    pub(crate) fn table(&self) -> String {
        let m = &self.meta;
        let mut s = String::new();
        let pin = match (m.server_cpu, m.client_cpu) {
            (Some(a), Some(b)) if m.pinned => format!("pinned: servers on CPU {a}, load generator on CPU {b}"),
            _ => "not pinned (taskset missing or fewer than 2 CPUs)".into(),
        };
        let _ = writeln!(
            s,
            "Tally bench{} — {} — {} × {} — {pin}",
            if m.quick { " --quick" } else { "" },
            m.date,
            m.cpus,
            m.cpu
        );
        let _ = writeln!(
            s,
            "load average before {} / after {}; commit {}\n",
            m.load_average_before, m.load_average_after, m.commit
        );
        let echo = self.check("echo");
        let _ = writeln!(
            s,
            "{:<34} {:>10} {:>6} {:>9} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>5} {:>5}",
            "scenario",
            "max req/s",
            "×echo",
            "rate/s",
            "p50 µs",
            "p99 µs",
            "p999 µs",
            "p99×e",
            "srv µs/r",
            "cli µs/r",
            "srv%",
            "cli%"
        );
        for c in &self.checks {
            let ratio = echo.map_or(f64::NAN, |e| c.saturation.throughput / e.saturation.throughput);
            let p99 = echo.map_or(f64::NAN, |e| c.moderate.latency.p99 / e.moderate.latency.p99);
            let l = &c.moderate.latency;
            let _ = writeln!(
                s,
                "{:<34} {:>10.0} {:>6.2} {:>9.0} {:>8.0} {:>8.0} {:>8.0} {:>7.2} {:>8.1} {:>8.1} {:>5.0} {:>5.0}",
                c.title,
                c.saturation.throughput,
                ratio,
                c.rate,
                l.p50,
                l.p99,
                l.p999,
                p99,
                c.saturation.server_us_per_request(),
                c.saturation.client_us_per_request(),
                c.saturation.server_utilisation() * 100.0,
                c.saturation.client_utilisation() * 100.0
            );
        }
        for a in &self.authority {
            let ratio = echo.map_or(f64::NAN, |e| a.outcome.throughput / e.saturation.throughput);
            let l = &a.outcome.latency;
            let plural = if a.callers == 1 { "" } else { "s" };
            // A run whose workload ran out measured a shorter window: say so.
            let short = if a.outcome.exhausted { " †" } else { "" };
            let pg = if a.store == POSTGRES { " PG" } else { "" };
            let title = format!("authority{pg} {} × {} caller{plural}{short}", a.rpc, a.callers);
            let _ = writeln!(
                s,
                "{:<34} {:>10.0} {:>6.2} {:>9} {:>8.0} {:>8.0} {:>8.0} {:>7} {:>8.1} {:>8.1} {:>5.0} {:>5.0}",
                title,
                a.outcome.throughput,
                ratio,
                "closed",
                l.p50,
                l.p99,
                l.p999,
                "",
                a.outcome.server_us_per_request(),
                a.outcome.client_us_per_request(),
                a.outcome.server_utilisation() * 100.0,
                a.outcome.client_utilisation() * 100.0
            );
        }
        let _ = writeln!(
            s,
            "(max: closed loop at saturation; rate, p50–p999: open loop at that fixed rate, authority rows closed loop;\n \
             srv/cli µs/r: CPU per request of the servers / the load generator at saturation, srv%/cli%: their share of one CPU;\n \
             PG: the authority on PostgreSQL (its server on the servers' CPU, counted in srv);\n \
             †: the run used up its prepared requests before the end, throughput is over the shorter window)\n"
        );
        // One line per authority figure: each run that has it, as "Rpc × callers value".
        let per_run = |s: &mut String, label: &str, value: &dyn Fn(&AuthorityRun) -> Option<String>| {
            let runs: Vec<String> = self
                .authority
                .iter()
                .filter_map(|a| {
                    let pg = if a.store == POSTGRES { "PG " } else { "" };
                    value(a).map(|v| format!("{pg}{} × {} {v}", a.rpc, a.callers))
                })
                .collect();
            if !runs.is_empty() {
                let _ = writeln!(s, "{label}: {}", runs.join(", "));
            }
        };
        per_run(&mut s, "authority group commits, changes per commit", &|a| {
            a.changes_per_commit.map(|g| format!("{g:.1}"))
        });
        per_run(&mut s, "authority commit time, mean (share of the run spent committing)", &|a| {
            a.commit_time.map(|t| format!("{:.0} µs ({:.0} %)", t.mean_us, t.busy_share * 100.0))
        });
        per_run(&mut s, "registry look-ups that read the database", &|a| {
            (a.rpc == "Revoke").then(|| a.registry_reads.to_string())
        });
        if let Some(x) = &self.mix {
            let _ = writeln!(
                s,
                "realistic mix: hit ratio {:.3} % ({} of {} checks asked the authority; {} families, {} revoked during the run)",
                x.hit_ratio * 100.0,
                x.authority_answers,
                x.checks,
                x.families,
                x.revoked
            );
        }
        if let Some(p) = &self.propagation {
            let _ = writeln!(
                s,
                "propagation to {} verifiers, {} revocations: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (Status polled every {} ms)",
                p.verifiers, p.revocations, p.p50_ms, p.p99_ms, p.max_ms, p.poll_ms
            );
        }
        if let Some(c) = &self.catchup {
            let _ = writeln!(
                s,
                "catch-up of {} revocations by a fresh verifier: {:.3} s from spawn ({:.3} s from listening)",
                c.revocations, c.from_spawn_s, c.from_listening_s
            );
        }
        if let Some(m) = &self.memory {
            let _ = writeln!(
                s,
                "verifier memory: {:.0} B per cached entry ({} entries over {} families; RSS {:.1} → {:.1} MiB)",
                m.bytes_per_entry,
                m.entries,
                m.families,
                m.rss_before as f64 / 1048576.0,
                m.rss_after as f64 / 1048576.0
            );
        }
        if !self.targets.is_empty() {
            let _ = writeln!(s, "\ntargets:");
            for t in &self.targets {
                let mark = if t.met { "met    " } else { "NOT MET" };
                let _ = writeln!(s, "  {mark} {:<44} {:<16} {}", t.what, t.goal, t.measured);
            }
        }
        s
    }
}
