//! The judgement of the samples: for each process, its RSS and fd count at
//! the end of its warm-up (the baseline) against the highest and the final
//! value after it, as growth in percent of the baseline.
//!
//! The rule, also printed with the table: the warm-up is one whole cycle of
//! the fault schedule, or half the run when that is shorter: by its end
//! caches have filled and every kind of fault has struck once, so every path
//! a fault takes (a black hole's pile of calls waiting on the authority, a
//! reconnect, a flush and refill) has brought its pools and allocator pages
//! to their working size. The baseline is the first calm sample after it (no
//! fault under way or just ended). RSS and file
//! descriptors are compared among calm samples only: a fault under way holds
//! memory and descriptors for a moment (calls in flight, connections being
//! redialled, the cache refilling) and gives them back once it is over,
//! while a leak stays, so calm samples show it. The highest RSS during
//! faults is listed beside, not judged, and so is the trend: the
//! least-squares slope of the calm samples over the judged span, as a share
//! of the baseline (a leak shows as a steady climb there, a spike does not).
//! A restart gives the authority a fresh process, whose RSS
//! starts over, so only its last incarnation is judged, with the same
//! warm-up counted from its own start; the soak restarts it only in the
//! first half of the run so that incarnation lives long. Earlier
//! incarnations and this process (load generator and proxy) are listed, not
//! judged.

use std::time::Duration;

use super::faults::SETTLE;
use super::sample::{Proc, Sample};

/// The warm-up of something that runs for `length` under a fault schedule
/// whose cycle lasts `cycle`: that cycle, at most half of `length`.
pub(crate) fn warm_up(length: Duration, cycle: Duration) -> Duration {
    cycle.min(length / 2)
}

/// Least-squares slope of `points` (seconds, value), per second; `None` for fewer than two distinct times.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), p| (a + (p.0 - mx) * (p.1 - my), b + (p.0 - mx).powi(2)));
    (sxx > 0.0).then(|| sxy / sxx)
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
    /// Fitted change over the compared span, in percent of the baseline (calm rows only).
    pub(crate) trend: Option<f64>,
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
pub(crate) fn rows(samples: &[Sample], length: Duration, cycle: Duration, started_at: &[Duration]) -> Vec<Row> {
    let mut rows = Vec::new();
    let w = warm_up(length, cycle);
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
            let later: Vec<(Duration, u64)> = series[first + 1..]
                .iter()
                .filter(|(_, calm, _)| *calm == (over == Over::Calm))
                .map(|(t, _, p)| (*t, get(p)))
                .collect();
            let (Some(max), Some(&(end, last))) = (later.iter().map(|(_, v)| *v).max(), later.last()) else {
                continue;
            };
            let trend = if over == Over::Calm {
                let points: Vec<(f64, f64)> = std::iter::once((at, get(&base)))
                    .chain(later.iter().copied())
                    .map(|(t, v)| (t.as_secs_f64(), v as f64))
                    .collect();
                slope(&points).map(|per_s| per_s * (end - at).as_secs_f64() / get(&base).max(1) as f64 * 100.0)
            } else {
                None
            };
            rows.push(Row {
                process: process.to_owned(),
                what,
                baseline_at: at,
                baseline: get(&base),
                max,
                last,
                trend,
                judged: judged && over == Over::Calm,
            });
        }
    };
    push("verifier eu", true, w, &|s| s.eu);
    push("verifier us", true, w, &|s| s.us);
    let last = samples.last().map_or(1, |s| s.incarnation);
    let born = started_at.get(last as usize - 1).copied().unwrap_or_default();
    let from = born + warm_up(length.saturating_sub(born), cycle);
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
pub(crate) fn rule(length: Duration, cycle: Duration, tolerance: f64, started_at: &[Duration]) -> String {
    let last = started_at.len();
    let born = started_at.last().copied().unwrap_or_default();
    format!(
        "Rule: warm-up = one cycle of the fault schedule ({:.0} s: every kind of fault has struck once), at most \
         half the run = {:.0} s; baseline = a process's first calm sample \
         (no fault under way or ended less than {:.0} s before) after its warm-up; growth = (highest later \
         calm sample − baseline) / baseline, for RSS and fds alike (a fault under way holds memory and \
         descriptors for a moment and gives them back once over; a leak stays, so calm samples show it; \
         the highest RSS during faults is listed beside, and the trend: the least-squares slope of the calm \
         samples times the span, in % of the baseline); judged: both \
         verifiers, and the authority's last incarnation (#{last}, started at {:.0} s; its warm-up {:.0} s \
         from then: a restart starts RSS over, and restarts stop at half the run); earlier incarnations and \
         the runner (load generator and proxy) are listed, not judged. Tolerance {tolerance} %.",
        cycle.as_secs_f64(),
        warm_up(length, cycle).as_secs_f64(),
        SETTLE.as_secs_f64(),
        born.as_secs_f64(),
        warm_up(length.saturating_sub(born), cycle).as_secs_f64(),
    )
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The table of rows.
pub(crate) fn table(rows: &[Row], tolerance: f64) -> String {
    let mut out = format!(
        "{:<22} {:<13} {:>12} {:>7} {:>12} {:>12} {:>8} {:>8}  verdict\n",
        "process", "what", "baseline", "at", "max after", "final", "growth", "trend"
    );
    for r in rows {
        let value = |v: u64| if r.what.starts_with("RSS") { mib(v) } else { v.to_string() };
        let verdict = match (r.judged, r.within(tolerance)) {
            (false, _) => "listed",
            (true, true) => "ok",
            (true, false) => "GREW",
        };
        out.push_str(&format!(
            "{:<22} {:<13} {:>12} {:>6.0}s {:>12} {:>12} {:>+7.1}% {:>8}  {verdict}\n",
            r.process,
            r.what,
            value(r.baseline),
            r.baseline_at.as_secs_f64(),
            value(r.max),
            value(r.last),
            r.growth(),
            r.trend.map_or_else(|| "-".to_owned(), |t| format!("{t:+.1}%")),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 30-minute run sampled every 10 s, "us" at `rss(t)` KiB, calm except right after faults at `faults`.
    fn run(rss: impl Fn(u64) -> u64, faults: &[u64]) -> Vec<Row> {
        let samples: Vec<Sample> = (0..=180)
            .map(|i| {
                let t = i * 10;
                let calm = !faults.iter().any(|f| (*f..*f + 10).contains(&t));
                let p = |kib| Some(Proc { rss_kib: kib, fds: 16 });
                Sample {
                    t: Duration::from_secs(t),
                    calm,
                    incarnation: 1,
                    us: p(rss(t)),
                    eu: p(10_000),
                    ..Sample::default()
                }
            })
            .collect();
        rows(&samples, Duration::from_secs(1800), Duration::from_secs(300), &[Duration::ZERO])
    }

    fn us_rss(rows: &[Row]) -> &Row {
        rows.iter().find(|r| r.process == "verifier us" && r.what == "RSS").expect("us RSS row")
    }

    #[test]
    fn baseline_after_one_fault_cycle_and_calm() {
        // Grows through the first cycle, then flat; the sample at 300 s is in a fault.
        let rows = run(|t| 10_000 + t.min(300) * 5, &[300]);
        let r = us_rss(&rows);
        assert_eq!(r.baseline_at, Duration::from_secs(310));
        assert_eq!(r.baseline, 11_500);
        assert!(r.within(10.0) && r.growth() == 0.0);
        assert!(r.trend.unwrap().abs() < 0.01);
    }

    #[test]
    fn a_steady_climb_shows_in_growth_and_trend_a_spike_only_in_growth() {
        let leak = run(|t| 10_000 + t * 2, &[]);
        let r = us_rss(&leak);
        // From 10,600 KiB at 300 s to 13,600 KiB at 1,800 s: +28 %, all of it trend.
        assert!(!r.within(10.0));
        assert!((r.growth() - 28.3).abs() < 0.1, "{}", r.growth());
        assert!((r.trend.unwrap() - 28.3).abs() < 0.1, "{:?}", r.trend);

        let spike = run(|t| if t == 900 { 12_000 } else { 10_000 }, &[]);
        let r = us_rss(&spike);
        assert!(!r.within(10.0), "the max still judges");
        assert!(r.trend.unwrap().abs() < 1.0, "{:?}", r.trend);
    }

    #[test]
    fn short_runs_warm_up_for_half_their_length() {
        assert_eq!(warm_up(Duration::from_secs(120), Duration::from_secs(300)), Duration::from_secs(60));
        assert_eq!(warm_up(Duration::from_secs(1800), Duration::from_secs(300)), Duration::from_secs(300));
    }
}
