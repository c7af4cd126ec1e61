//! A latency histogram with fixed buckets, lock-free to record, rendered in
//! Prometheus text format (cumulative `_bucket`, `_sum`, `_count`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in seconds: 50 µs to 10 s, roughly 1-2.5-5 per decade.
pub const BUCKETS: [f64; 17] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counts of durations per bucket (the last one is `+Inf`), their sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.iter().position(|&le| secs <= le).unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends this histogram's samples for `name` with `labels` (`key="value"`
    /// pairs, already escaped; empty for none). HELP and TYPE lines are the
    /// caller's: see [`header`].
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or_else(|| "+Inf".to_owned(), f64::to_string);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// The HELP and TYPE lines of a histogram family.
pub fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inf_counts_everything() {
        let h = Histogram::default();
        for us in [10, 60, 60, 2_000, 20_000_000] {
            h.record(Duration::from_micros(us));
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "method=\"M\"");
        let line = |le: &str| {
            let prefix = format!("x_seconds_bucket{{method=\"M\",le=\"{le}\"}} ");
            out.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {le} in {out}")).to_owned()
        };
        assert_eq!(line("0.00005"), "1");
        assert_eq!(line("0.0001"), "3");
        assert_eq!(line("0.0025"), "4");
        assert_eq!(line("10"), "4");
        assert_eq!(line("+Inf"), "5");
        assert!(out.contains("x_seconds_count{method=\"M\"} 5\n"), "{out}");
        let sum: f64 =
            out.lines().find_map(|l| l.strip_prefix("x_seconds_sum{method=\"M\"} ")).unwrap().parse().unwrap();
        assert!((sum - 20.00213).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn no_labels_renders_plain_names() {
        let h = Histogram::default();
        h.record(Duration::from_millis(3));
        let mut out = String::new();
        h.render(&mut out, "y", "");
        assert!(out.contains("y_bucket{le=\"0.005\"} 1\n") && out.contains("y_count 1\n"), "{out}");
    }
}
