//! Scenario 5: revocation propagation. Several verifiers follow the stream;
//! revocations are made one after another, and for each the time from
//! `Revoke` returning to each verifier reporting it applied (its `Status`,
//! polled every millisecond: the figures are upper bounds within that).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use tally_proto::v1 as pb;
use tokio::time::Instant;

use crate::bench::lab::Lab;
use crate::bench::progress::Progress;
use crate::bench::report::{Propagation, Report};

const POLL: Duration = Duration::from_millis(1);
/// How long the last revocation may take to reach every verifier.
const SETTLE: Duration = Duration::from_secs(10);

pub(crate) async fn run(lab: &Lab, progress: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let plan = &lab.plan;
    let n = plan.propagation_verifiers;
    progress.step(&format!("propagation: {n} verifiers, {} revocations", plan.propagation_revocations));
    let mut verifiers = Vec::with_capacity(n);
    for i in 0..n {
        verifiers.push(lab.verifier(&format!("p{i}"), true).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Each poller records (applied seq, when first seen) whenever applied moves.
    let pollers: Vec<_> = verifiers
        .iter()
        .map(|v| {
            let (mut client, stop) = (v.client(), stop.clone());
            tokio::spawn(async move {
                let mut seen: Vec<(u64, Instant)> = Vec::new();
                let mut tick = tokio::time::interval(POLL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let applied = client.status(pb::StatusRequest {}).await?.into_inner().applied_seq;
                    let now = Instant::now();
                    if seen.last().is_none_or(|&(s, _)| applied > s) {
                        seen.push((applied, now));
                    }
                }
                Ok::<_, tonic::Status>(seen)
            })
        })
        .collect();

    let families = lab.families(plan.propagation_revocations).await?;
    let mut returned: Vec<(u64, Instant)> = Vec::with_capacity(families.len());
    for family in &families {
        let seq = lab.revoke_family(family).await?;
        returned.push((seq, Instant::now()));
    }
    let last = returned.last().map_or(0, |r| r.0);
    let deadline = Instant::now() + SETTLE;
    for v in &verifiers {
        while v.status().await.applied_seq < last {
            ensure!(Instant::now() < deadline, "a verifier did not apply seq {last} within {SETTLE:?}");
            tokio::time::sleep(POLL).await;
        }
    }
    tokio::time::sleep(POLL * 3).await;
    stop.store(true, Ordering::Relaxed);

    let mut samples = Vec::with_capacity(n * returned.len());
    for poller in pollers {
        let seen = poller.await?.context("Status")?;
        for &(seq, at) in &returned {
            // The first poll that saw this seq applied (or a later one).
            let i = seen.partition_point(|&(applied, _)| applied < seq);
            let (_, when) = seen.get(i).context("a revocation never seen applied")?;
            samples.push(when.saturating_duration_since(at).as_secs_f64() * 1e3);
        }
    }
    samples.sort_by(f64::total_cmp);
    let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let (p50_ms, p99_ms, max_ms) = (q(0.5), q(0.99), *samples.last().unwrap_or(&f64::NAN));
    progress.done(&format!("propagation to {n} verifiers: p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms, max {max_ms:.2} ms"));
    report.propagation = Some(Propagation {
        verifiers: n,
        revocations: returned.len(),
        poll_ms: POLL.as_secs_f64() * 1e3,
        p50_ms,
        p99_ms,
        max_ms,
        samples_ms: samples,
    });
    Ok(())
}
