//! The two pacings: closed loop (a fixed number of requests in flight, for
//! throughput at saturation) and open loop (requests started on a fixed
//! schedule, latency measured from the scheduled start so a stall cannot
//! hide by holding back the requests it would have delayed). Everything runs
//! on one thread (a `LocalSet`), so the state is a plain `RefCell`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use prost::Message;
use tally_proto::v1::{CheckResponse, Source};
use tokio::time::Instant;

use super::client::Channel;
use super::spec::{Latency, Outcome};
use super::workload::Producer;
use crate::usage::{cpu_seconds, own_cpu_seconds};

/// Open loop: a request started later than this behind its schedule counts as late.
const LATE: Duration = Duration::from_millis(1);
/// Open loop: how long answers still outstanding at the end are waited for.
const DRAIN: Duration = Duration::from_secs(10);
/// Open loop: sleep (rather than spin) when the next start is further away than this.
const SPIN_WITHIN: Duration = Duration::from_micros(1500);
/// Quantiles drawn in the percentile chart.
const CURVE: [f64; 10] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0];

/// The run's shared state.
pub(crate) struct Run {
    producer: Box<dyn Producer>,
    decode_check: bool,
    watch: Vec<u32>,
    hist: Histogram<u64>,
    out: Outcome,
    sent: u64,
    in_flight: u64,
    last_ok: Option<Instant>,
    cpu_start: Option<(f64, f64)>,
}

impl Run {
    pub(crate) fn new(producer: Box<dyn Producer>, decode_check: bool, watch: Vec<u32>) -> Rc<RefCell<Self>> {
        // Nanoseconds, 3 significant digits, up to a minute.
        let hist = Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        Rc::new(RefCell::new(Self {
            producer,
            decode_check,
            watch,
            hist,
            out: Outcome::default(),
            sent: 0,
            in_flight: 0,
            last_ok: None,
            cpu_start: None,
        }))
    }

    fn cpu_now(&self) -> (f64, f64) {
        let own = own_cpu_seconds().unwrap_or(0.0);
        let servers = self.watch.iter().filter_map(|&pid| cpu_seconds(pid)).sum();
        (own, servers)
    }

    fn start_window(&mut self) {
        self.cpu_start = Some(self.cpu_now());
    }

    fn end_window(&mut self) {
        if let Some((own, servers)) = self.cpu_start {
            let (own_end, servers_end) = self.cpu_now();
            self.out.client_cpu_s = own_end - own;
            self.out.server_cpu_s = servers_end - servers;
        }
    }

    fn next_body(&mut self) -> Option<Bytes> {
        let body = self.producer.next();
        match body {
            Some(_) => self.sent += 1,
            None => self.out.exhausted = true,
        }
        body
    }

    fn record(&mut self, in_window: bool, latency: Duration, result: anyhow::Result<Bytes>, done: Instant) {
        let message = match result {
            Ok(message) => message,
            Err(e) => {
                if in_window {
                    self.out.errors += 1;
                }
                self.out.first_error.get_or_insert_with(|| format!("{e:#}"));
                return;
            }
        };
        self.out.total_ok += 1;
        if !in_window {
            return;
        }
        self.out.ok += 1;
        self.last_ok = Some(done);
        let _ = self.hist.record((latency.as_nanos() as u64).max(1));
        if self.decode_check
            && let Ok(answer) = CheckResponse::decode(message)
        {
            if answer.allowed {
                self.out.allowed += 1;
            } else {
                self.out.denied += 1;
            }
            *self.out.sources.entry(source_name(answer.source()).to_owned()).or_default() += 1;
        }
    }

    /// The outcome, with the window's length and the latency summary.
    pub(crate) fn finish(&mut self, window_s: f64) -> Outcome {
        let mut out = std::mem::take(&mut self.out);
        out.sent = self.sent;
        out.window_s = window_s;
        out.throughput = if window_s > 0.0 { out.ok as f64 / window_s } else { 0.0 };
        let h = &self.hist;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        if !h.is_empty() {
            out.latency = Latency {
                p50: us(0.5),
                p90: us(0.9),
                p99: us(0.99),
                p999: us(0.999),
                max: h.max() as f64 / 1e3,
                mean: h.mean() / 1e3,
                curve: CURVE.iter().map(|&q| (q, us(q))).collect(),
            };
        }
        out
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Cache => "cache",
        Source::Descendant => "descendant",
        Source::Authority => "authority",
        Source::NegativeCache => "negative_cache",
        Source::Local => "local",
        Source::Unspecified => "unspecified",
    }
}

/// Closed loop. Returns the measured window's length in seconds.
pub(crate) async fn closed(
    channels: &[Channel],
    run: &Rc<RefCell<Run>>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    limit: Option<u64>,
) -> f64 {
    let start = Instant::now();
    let (from, end) = (start + warmup, start + warmup + duration);
    let window = tokio::task::spawn_local({
        let run = run.clone();
        async move {
            tokio::time::sleep_until(from).await;
            run.borrow_mut().start_window();
        }
    });
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency.max(1) {
        let (channel, run) = (channels[w % channels.len()].clone(), run.clone());
        workers.push(tokio::task::spawn_local(async move {
            loop {
                let body = {
                    let mut r = run.borrow_mut();
                    if Instant::now() >= end || limit.is_some_and(|l| r.sent >= l) {
                        break;
                    }
                    let Some(body) = r.next_body() else { break };
                    body
                };
                let t0 = Instant::now();
                let result = channel.call(body).await;
                let done = Instant::now();
                run.borrow_mut().record(done >= from && done < end, done - t0, result, done);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let stopped = Instant::now();
    if stopped < from {
        // Ran out (or hit the limit) during the warm-up: nothing measured.
        window.abort();
        return 0.0;
    }
    let _ = window.await;
    let mut r = run.borrow_mut();
    r.end_window();
    let last = if r.out.exhausted || limit.is_some() { r.last_ok.unwrap_or(from) } else { end };
    last.min(end).saturating_duration_since(from).as_secs_f64()
}

/// Open loop at `rate` requests per second. Returns the measured window's length.
pub(crate) async fn open(
    channels: &[Channel],
    run: &Rc<RefCell<Run>>,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> f64 {
    let interval = 1.0 / rate.max(1e-3);
    let warmup_n = (warmup.as_secs_f64() * rate) as u64;
    let total_n = warmup_n + (duration.as_secs_f64() * rate) as u64;
    let start = Instant::now() + Duration::from_millis(5);
    let at = |i: u64| start + Duration::from_secs_f64(i as f64 * interval);
    let mut i = 0u64;
    'schedule: while i < total_n {
        let now = Instant::now();
        while i < total_n && at(i) <= now {
            let intended = at(i);
            let in_window = i >= warmup_n;
            let body = {
                let mut r = run.borrow_mut();
                if i == warmup_n {
                    r.start_window();
                }
                if in_window && now - intended > LATE {
                    r.out.late_starts += 1;
                }
                let Some(body) = r.next_body() else { break 'schedule };
                r.in_flight += 1;
                body
            };
            let (channel, run) = (channels[i as usize % channels.len()].clone(), run.clone());
            tokio::task::spawn_local(async move {
                let result = channel.call(body).await;
                let done = Instant::now();
                let mut r = run.borrow_mut();
                r.in_flight -= 1;
                r.record(in_window, done - intended, result, done);
            });
            i += 1;
        }
        let next = at(i);
        if next > now + SPIN_WITHIN {
            tokio::time::sleep_until(next - SPIN_WITHIN / 2).await;
        } else {
            // Spin (letting the runtime poll its sockets) for sub-millisecond pacing.
            tokio::task::yield_now().await;
        }
    }
    let scheduled_end = at(i);
    let drain_until = Instant::now() + DRAIN;
    while run.borrow().in_flight > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut r = run.borrow_mut();
    r.end_window();
    let outstanding = r.in_flight;
    if outstanding > 0 {
        r.out.errors += outstanding;
        r.out.first_error.get_or_insert_with(|| format!("{outstanding} requests unanswered after {DRAIN:?}"));
    }
    if i <= warmup_n {
        return 0.0;
    }
    scheduled_end.saturating_duration_since(at(warmup_n)).as_secs_f64()
}
