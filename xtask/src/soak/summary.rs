//! The judgement of the samples: for each process, its RSS and fd count at
//! the end of its warm-up (the baseline) against the highest and the final
//! value after it, as growth in percent of the baseline.
//!
//! The rule, also printed with the table: the warm-up is the first 20 % of
//! the run or its first 2 minutes, whichever is shorter (caches fill, pools
//! and allocator arenas reach their working size); the baseline is the first
//! calm sample after it (no fault under way or just ended). RSS and file
//! descriptors are compared among calm samples only: a fault under way holds
//! memory and descriptors for a moment (calls in flight, connections being
//! redialled, the cache refilling) and gives them back once it is over,
//! while a leak stays, so calm samples show it. The highest RSS during
//! faults is listed beside, not judged. A restart gives the authority a fresh process, whose RSS
//! starts over, so only its last incarnation is judged, with the same
//! warm-up counted from its own start; the soak restarts it only in the
//! first half of the run so that incarnation lives long. Earlier
//! incarnations and this process (load generator and proxy) are listed, not
//! judged.

use std::time::Duration;

use super::faults::SETTLE;
use super::sample::{Proc, Sample};

/// Share of the run that is warm-up, and its cap.
const WARM_UP_SHARE: f64 = 0.2;
const WARM_UP_CAP: Duration = Duration::from_secs(120);

/// The warm-up of something that runs for `length`.
pub(crate) fn warm_up(length: Duration) -> Duration {
    length.mul_f64(WARM_UP_SHARE).min(WARM_UP_CAP)
}

/// Which later samples a quantity is compared over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    /// No fault under way nor just ended (judged).
    Calm,
    /// A fault under way or just ended (listed).
    Faults,
}

/// A quantity of a process: its name, how to read it, over which samples.
type Measure = (&'static str, fn(&Proc) -> u64, Over);

/// One process and quantity, judged or listed.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) process: String,
    pub(crate) what: &'static str,
    pub(crate) baseline_at: Duration,
    pub(crate) baseline: u64,
    pub(crate) max: u64,
    pub(crate) last: u64,
    pub(crate) judged: bool,
}

impl Row {
    /// (max − baseline) / baseline, in percent.
    pub(crate) fn growth(&self) -> f64 {
        (self.max as f64 - self.baseline as f64) / (self.baseline.max(1) as f64) * 100.0
    }

    pub(crate) fn within(&self, tolerance: f64) -> bool {
        self.growth() <= tolerance
    }
}

/// The judged and listed rows. `started_at[i]` is when incarnation i + 1 started.
pub(crate) fn rows(samples: &[Sample], length: Duration, started_at: &[Duration]) -> Vec<Row> {
    let mut rows = Vec::new();
    let w = warm_up(length);
    let mut push = |process: &str, judged: bool, from: Duration, pick: &dyn Fn(&Sample) -> Option<Proc>| {
        let series: Vec<(Duration, bool, Proc)> =
            samples.iter().filter(|s| s.t >= from).filter_map(|s| pick(s).map(|p| (s.t, s.calm, p))).collect();
        let Some(first) = series.iter().position(|(_, calm, _)| *calm) else { return };
        let (at, _, base) = series[first];
        let metrics: [Measure; 3] = [
            ("RSS", |p| p.rss_kib, Over::Calm),
            ("fds", |p| p.fds, Over::Calm),
            ("RSS in faults", |p| p.rss_kib, Over::Faults),
        ];
        for (what, get, over) in metrics {
            let rest: Vec<u64> = series[first + 1..]
                .iter()
                .filter(|(_, calm, _)| *calm == (over == Over::Calm))
                .map(|(_, _, p)| get(p))
                .collect();
            let (Some(max), Some(last)) = (rest.iter().max(), rest.last()) else { continue };
            rows.push(Row {
                process: process.to_owned(),
                what,
                baseline_at: at,
                baseline: get(&base),
                max: *max,
                last: *last,
                judged: judged && over == Over::Calm,
            });
        }
    };
    push("verifier eu", true, w, &|s| s.eu);
    push("verifier us", true, w, &|s| s.us);
    let last = samples.last().map_or(1, |s| s.incarnation);
    let born = started_at.get(last as usize - 1).copied().unwrap_or_default();
    let from = born + warm_up(length.saturating_sub(born));
    push(&format!("authority #{last}"), true, from, &|s| s.authority.filter(|_| s.incarnation == last));
    push("runner (load, proxy)", false, w, &|s| s.runner);
    rows
}

/// One line per earlier authority incarnation: lifetime, highest RSS and fds.
pub(crate) fn incarnations(samples: &[Sample]) -> Vec<String> {
    let last = samples.last().map_or(1, |s| s.incarnation);
    (1..last)
        .filter_map(|i| {
            let mine: Vec<(Duration, Proc)> =
                samples.iter().filter(|s| s.incarnation == i).filter_map(|s| s.authority.map(|p| (s.t, p))).collect();
            let (first, last) = (mine.first()?, mine.last()?);
            Some(format!(
                "authority #{i}: sampled {:.0}–{:.0} s, highest RSS {}, highest fds {}",
                first.0.as_secs_f64(),
                last.0.as_secs_f64(),
                mib(mine.iter().map(|(_, p)| p.rss_kib).max().unwrap_or(0)),
                mine.iter().map(|(_, p)| p.fds).max().unwrap_or(0),
            ))
        })
        .collect()
}

/// The rule, in words, for the output.
pub(crate) fn rule(length: Duration, tolerance: f64, started_at: &[Duration]) -> String {
    let last = started_at.len();
    let born = started_at.last().copied().unwrap_or_default();
    format!(
        "Rule: warm-up = min(20 % of the run, 2 min) = {:.0} s; baseline = a process's first calm sample \
         (no fault under way or ended less than {:.0} s before) after its warm-up; growth = (highest later \
         calm sample − baseline) / baseline, for RSS and fds alike (a fault under way holds memory and \
         descriptors for a moment and gives them back once over; a leak stays, so calm samples show it; \
         the highest RSS during faults is listed beside); judged: both \
         verifiers, and the authority's last incarnation (#{last}, started at {:.0} s; its warm-up {:.0} s \
         from then: a restart starts RSS over, and restarts stop at half the run); earlier incarnations and \
         the runner (load generator and proxy) are listed, not judged. Tolerance {tolerance} %.",
        warm_up(length).as_secs_f64(),
        SETTLE.as_secs_f64(),
        born.as_secs_f64(),
        warm_up(length.saturating_sub(born)).as_secs_f64(),
    )
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The table of rows.
pub(crate) fn table(rows: &[Row], tolerance: f64) -> String {
    let mut out = format!(
        "{:<22} {:<13} {:>12} {:>7} {:>12} {:>12} {:>8}  verdict\n",
        "process", "what", "baseline", "at", "max after", "final", "growth"
    );
    for r in rows {
        let value = |v: u64| if r.what.starts_with("RSS") { mib(v) } else { v.to_string() };
        let verdict = match (r.judged, r.within(tolerance)) {
            (false, _) => "listed",
            (true, true) => "ok",
            (true, false) => "GREW",
        };
        out.push_str(&format!(
            "{:<22} {:<13} {:>12} {:>6.0}s {:>12} {:>12} {:>+7.1}%  {verdict}\n",
            r.process,
            r.what,
            value(r.baseline),
            r.baseline_at.as_secs_f64(),
            value(r.max),
            value(r.last),
            r.growth(),
        ));
    }
    out
}
