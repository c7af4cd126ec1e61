//! How long and how big each scenario runs: the full run (for people) and
//! `--quick` (every scenario briefly, for CI).

use std::time::Duration;

/// Sizes and durations of one bench run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) quick: bool,
    /// Closed- and open-loop runs start with this, not counted.
    pub(crate) warmup: Duration,
    /// Measured part of a saturation (closed-loop) run.
    pub(crate) saturate: Duration,
    /// Measured part of a fixed-rate (open-loop) run.
    pub(crate) moderate: Duration,
    /// Rounds of echo, exact hit and descendant hit, at saturation and at
    /// the fixed rate (alternating; the median round is reported).
    pub(crate) rounds: usize,
    /// HTTP/2 connections and requests in flight at saturation.
    pub(crate) connections: usize,
    pub(crate) concurrency: usize,
    /// The fixed rate of the latency runs, as a share of echo's saturation
    /// throughput (and at most half of the scenario's own).
    pub(crate) rate_fraction: f64,
    /// Fresh tokens minted for the cold-miss scenario.
    pub(crate) cold_tokens: usize,
    /// Token families of the realistic mix, its Zipf exponent, and the share revoked during it.
    pub(crate) mix_tokens: usize,
    pub(crate) mix_exponent: f64,
    pub(crate) mix_revoked: f64,
    pub(crate) propagation_verifiers: usize,
    pub(crate) propagation_revocations: usize,
    /// Revocations a fresh verifier catches up with.
    pub(crate) catchup_revocations: u64,
    /// Cached entries at which verifier memory is measured, over this many families.
    pub(crate) memory_entries: u64,
    pub(crate) memory_families: usize,
    /// Concurrent callers of the authority scenarios.
    pub(crate) authority_callers: [usize; 2],
}

impl Plan {
    pub(crate) fn new(quick: bool) -> Self {
        let full = Self {
            quick,
            warmup: Duration::from_secs(1),
            saturate: Duration::from_secs(5),
            moderate: Duration::from_secs(5),
            rounds: 3,
            connections: 4,
            concurrency: 64,
            rate_fraction: 0.25,
            cold_tokens: 150_000,
            mix_tokens: 100_000,
            mix_exponent: 1.0,
            mix_revoked: 0.001,
            propagation_verifiers: 8,
            propagation_revocations: 1000,
            catchup_revocations: 100_000,
            memory_entries: 1_000_000,
            memory_families: 2000,
            authority_callers: [1, 64],
        };
        if !quick {
            return full;
        }
        Self {
            warmup: Duration::from_millis(300),
            saturate: Duration::from_secs(1),
            moderate: Duration::from_secs(1),
            rounds: 1,
            cold_tokens: 30_000,
            mix_tokens: 2_000,
            propagation_revocations: 100,
            catchup_revocations: 10_000,
            memory_entries: 50_000,
            memory_families: 100,
            ..full
        }
    }
}
