//! Scenarios 1–3 and the baseline: Check exact hit, descendant hit and cold
//! miss on one verifier, and the echo server answering the same messages.
//! Each: throughput at saturation (closed loop), then latency at a fixed
//! rate (open loop): a quarter of echo's saturation throughput, the same
//! for echo and Tally, or half the scenario's own when that is lower.

use anyhow::ensure;
use tally_proto::v1::Source;

use super::{CAVEAT, check_once, expect_source};
use crate::bench::lab::{CHECK, Lab};
use crate::bench::load::{Outcome, Workload};
use crate::bench::progress::Progress;
use crate::bench::report::{CheckScenario, Report};

/// Room in the descendant pools over what echo's throughput says is needed.
const POOL_SLACK: f64 = 1.3;

/// Runs echo, exact, descendant and cold; returns the fixed rate the latency runs used.
pub(crate) async fn run(lab: &Lab, progress: &Progress, report: &mut Report) -> anyhow::Result<f64> {
    progress.step("Check: starting a verifier and the echo server");
    let mut verifier = lab.verifier("bench", true).await?;
    let verifier_pid = verifier.process().pid();
    let token = lab.mint(1, &[CAVEAT]).await?.remove(0).token;
    let first = check_once(&verifier, &token).await?;
    ensure!(first.allowed && first.source() == Source::Authority, "first check: {first:?}");
    let hit = check_once(&verifier, &token).await?;
    ensure!(hit.allowed && hit.source() == Source::Cache, "second check: {hit:?}");
    // Echo answers exactly what a cache hit answers: same sizes both ways.
    let (echo, echo_addr) = lab.echo(&hit).await?;
    let exact = Workload::Check { token: token.clone(), action: "read".into(), resource: String::new() };
    progress.done("verifier and echo started");

    progress.step("echo: saturation, then a fixed rate");
    let mut spec = lab.spec(echo_addr, CHECK, lab.saturating(), exact.clone());
    spec.watch_pids = vec![echo.pid()];
    let echo_max = lab.saturate("echo", &spec).await?;
    ensure!(echo_max.ok > 0, "echo answered nothing: {:?}", echo_max.first_error);
    let rate = echo_max.throughput * lab.plan.rate_fraction;
    spec.mode = lab.at_rate(rate);
    let echo_rate = lab.load(&spec).await?;
    drop(echo);
    push(report, progress, "echo", "echo (bare tonic, no work)", echo_max, rate, echo_rate);

    progress.step("Check exact hit");
    let mut spec = lab.spec(verifier.addr(), CHECK, lab.saturating(), exact);
    spec.watch_pids = vec![verifier_pid];
    let max = lab.saturate("exact", &spec).await?;
    expect_source("exact hit", &max, "cache")?;
    let (rate_used, at_rate) = fixed_rate(lab, &mut spec, &max, rate).await?;
    expect_source("exact hit", &at_rate, "cache")?;
    push(report, progress, "exact", "Check exact hit", max, rate_used, at_rate);

    progress.step("Check descendant hit (2 caveats added per request)");
    let per_s = report.check("echo").map_or(0.0, |e| e.saturation.throughput) * POOL_SLACK;
    let secs = |d: std::time::Duration| (lab.plan.warmup + d).as_secs_f64();
    let pool = (per_s * secs(lab.plan.saturate)) as usize + 1000;
    let descendants = |tag: &str, pool: usize| Workload::Descendants {
        tokens: vec![token.clone()],
        caveats: 2,
        tag: tag.into(),
        pool,
    };
    let mut spec = lab.spec(verifier.addr(), CHECK, lab.saturating(), descendants("sat", pool));
    spec.watch_pids = vec![verifier_pid];
    let max = lab.saturate("descendant", &spec).await?;
    expect_source("descendant hit", &max, "descendant")?;
    spec.workload = descendants("rate", (rate * POOL_SLACK * secs(lab.plan.moderate)) as usize + 1000);
    let (rate_used, at_rate) = fixed_rate(lab, &mut spec, &max, rate).await?;
    expect_source("descendant hit", &at_rate, "descendant")?;
    push(report, progress, "descendant", "Check descendant hit", max, rate_used, at_rate);

    progress.step(&format!("Check cold miss: minting {} fresh tokens", lab.plan.cold_tokens));
    let tokens = lab.mint(lab.plan.cold_tokens, &[CAVEAT]).await?;
    let file = lab.token_file("cold.tokens", &tokens)?;
    let mut spec = lab.spec(verifier.addr(), CHECK, lab.saturating(), Workload::Tokens { file: file.clone(), skip: 0 });
    spec.watch_pids = vec![verifier_pid, lab.authority.pid()];
    let max = lab.saturate("cold", &spec).await?;
    expect_source("cold miss", &max, "authority")?;
    // The fixed-rate run gets the tokens left, at a rate they last for.
    let left = tokens.len().saturating_sub(max.sent as usize);
    ensure!(left > 0, "cold miss: all {} fresh tokens used at saturation; mint more", tokens.len());
    spec.workload = Workload::Tokens { file, skip: max.sent as usize };
    let lasting = left as f64 * 0.9 / secs(lab.plan.moderate);
    let (rate_used, at_rate) = fixed_rate(lab, &mut spec, &max, rate.min(lasting)).await?;
    expect_source("cold miss", &at_rate, "authority")?;
    push(report, progress, "cold", "Check cold miss (→ authority)", max, rate_used, at_rate);
    Ok(rate)
}

/// The fixed-rate run of a spec: at `rate`, or half its own saturation throughput if lower.
async fn fixed_rate(
    lab: &Lab,
    spec: &mut crate::bench::load::Spec,
    max: &Outcome,
    rate: f64,
) -> anyhow::Result<(f64, Outcome)> {
    let rate = rate.min(max.throughput / 2.0);
    spec.mode = lab.at_rate(rate);
    Ok((rate, lab.load(spec).await?))
}

fn push(report: &mut Report, progress: &Progress, name: &str, title: &str, max: Outcome, rate: f64, at: Outcome) {
    progress.done(&format!(
        "{title}: {:.0} req/s at saturation; at {rate:.0}/s p50 {:.0} µs, p99 {:.0} µs",
        max.throughput, at.latency.p50, at.latency.p99
    ));
    let scenario = CheckScenario { name: name.into(), title: title.into(), saturation: max, rate, moderate: at };
    report.checks.push(scenario);
}
