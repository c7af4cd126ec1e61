//! What the load generator is asked to do and what it reports: both cross a
//! process boundary as JSON (the spec in a file, the outcome on stdout).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One load run against one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub(crate) target: SocketAddr,
    /// gRPC method path, e.g. `/tally.v1.Verifier/Check`.
    pub(crate) method: String,
    /// `authorization: Bearer …` on every request.
    pub(crate) bearer: Option<String>,
    /// HTTP/2 connections the requests are spread over.
    pub(crate) connections: usize,
    pub(crate) mode: Mode,
    pub(crate) workload: Workload,
    /// Processes whose CPU time over the measured window is reported (the servers).
    pub(crate) watch_pids: Vec<u32>,
    /// Seed of the workload's random choices.
    pub(crate) seed: u64,
}

/// How requests are paced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Mode {
    /// Closed loop: `concurrency` requests always in flight, for `warmup_ms`
    /// (not counted) then `duration_ms`; ends early when the workload runs
    /// out or after `limit` requests in all. Throughput at saturation.
    Closed { concurrency: usize, warmup_ms: u64, duration_ms: u64, limit: Option<u64> },
    /// Open loop: a request started every 1/`rate` s on schedule, whatever
    /// the answers; latency counts from the scheduled start, so a stall
    /// shows up in the latency of every request it delayed.
    Open { rate: f64, warmup_ms: u64, duration_ms: u64 },
}

/// What each request carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Workload {
    /// The same Check every time (`action` and `resource` of the request).
    Check { token: String, action: String, resource: String },
    /// Each Check a new attenuation of one of `tokens` (in turn) by `caveats`
    /// (1 or 2) caveats unique to it. With `pool` > 0, that many are made
    /// before the run and the workload ends when they are used up; else they
    /// are made on the fly.
    Descendants { tokens: Vec<String>, caveats: usize, tag: String, pool: usize },
    /// Each token of the file (one per line) checked once, from line `skip`.
    Tokens { file: PathBuf, skip: usize },
    /// The realistic mix: Zipf(`exponent`) over the file's tokens; each draw
    /// is the token itself (70 %), one of two fixed attenuations of it (20 %)
    /// or a fresh attenuation (10 %).
    Mix { file: PathBuf, exponent: f64 },
    /// The same message (hex of the encoded protobuf) every time.
    Message { hex: String },
    /// A Revoke of each family id (hex) of the file, once, in order.
    Revoke { file: PathBuf },
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
    /// (quantile, µs) points for the percentile chart.
    pub(crate) curve: Vec<(f64, f64)>,
}

/// What one run measured (over the measured window only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// Requests answered with gRPC status OK.
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) window_s: f64,
    /// `ok` per second of the window.
    pub(crate) throughput: f64,
    pub(crate) latency: Latency,
    /// Check answers: allowed, denied, and by source (`cache`, `descendant`, …).
    pub(crate) allowed: u64,
    pub(crate) denied: u64,
    pub(crate) sources: BTreeMap<String, u64>,
    /// CPU seconds the load generator used in the window.
    pub(crate) client_cpu_s: f64,
    /// CPU seconds the watched processes used in the window.
    pub(crate) server_cpu_s: f64,
    /// The workload ran out before the window ended.
    pub(crate) exhausted: bool,
    /// Open loop: requests started more than 1 ms behind schedule.
    pub(crate) late_starts: u64,
    /// Requests answered OK in all, warm-up included.
    pub(crate) total_ok: u64,
    /// Requests sent in all (bodies taken from the workload).
    pub(crate) sent: u64,
}

impl Outcome {
    /// Server CPU microseconds per answered request.
    pub(crate) fn server_us_per_request(&self) -> f64 {
        if self.ok == 0 { f64::NAN } else { self.server_cpu_s * 1e6 / self.ok as f64 }
    }

    /// Client CPU microseconds per answered request.
    pub(crate) fn client_us_per_request(&self) -> f64 {
        if self.ok == 0 { f64::NAN } else { self.client_cpu_s * 1e6 / self.ok as f64 }
    }

    /// Share of one CPU the watched processes used over the window (1.0: a whole core).
    pub(crate) fn server_utilisation(&self) -> f64 {
        if self.window_s > 0.0 { self.server_cpu_s / self.window_s } else { f64::NAN }
    }

    /// Share of one CPU the load generator used over the window.
    pub(crate) fn client_utilisation(&self) -> f64 {
        if self.window_s > 0.0 { self.client_cpu_s / self.window_s } else { f64::NAN }
    }

    /// Share of Check answers given by `source`.
    pub(crate) fn source_share(&self, source: &str) -> f64 {
        let total: u64 = self.sources.values().sum();
        if total == 0 { 0.0 } else { self.sources.get(source).copied().unwrap_or(0) as f64 / total as f64 }
    }
}
