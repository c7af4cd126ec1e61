//! Scenarios 1–3 and the baseline: Check exact hit, descendant hit and cold
//! miss on one verifier, and the echo server answering the same messages.
//! Each: throughput at saturation (closed loop), then latency at a fixed
//! rate (open loop): a quarter of echo's saturation throughput, the same
//! for echo and Tally, or half the scenario's own when that is lower. Echo,
//! exact and descendant run in alternating rounds (see `Plan::rounds`).

use std::time::Duration;

use anyhow::ensure;
use tally_proto::v1::Source;

use super::{CAVEAT, check_once, expect_source};
use crate::bench::lab::{CHECK, Lab};
use crate::bench::progress::Progress;
use crate::bench::report::{CheckScenario, Report};
use crate::load::{Outcome, Workload};

/// Room in the descendant pools over what echo's throughput says is needed.
const POOL_SLACK: f64 = 1.3;
/// Saturation runs of the cold miss, each with more tokens than the last.
const COLD_ATTEMPTS: usize = 3;

/// Runs echo, exact, descendant and cold; returns the fixed rate the latency runs used.
pub(crate) async fn run(lab: &Lab, progress: &Progress, report: &mut Report) -> anyhow::Result<f64> {
    let plan = &lab.plan;
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
    let descendants =
        |tag: String, pool: usize| Workload::Descendants { tokens: vec![token.clone()], caveats: 2, tag, pool };
    let mut echo_spec = lab.spec(echo_addr, CHECK, lab.saturating(), exact.clone());
    echo_spec.watch_pids = vec![echo.pid()];
    let mut exact_spec = lab.spec(verifier.addr(), CHECK, lab.saturating(), exact);
    exact_spec.watch_pids = vec![verifier_pid];
    let mut desc_spec = exact_spec.clone();
    progress.done("verifier and echo started");

    // Saturation in rounds that alternate echo, exact and descendant, so the
    // machine's noise falls on all three alike; each reports its median round.
    let secs = |d: Duration| (plan.warmup + d).as_secs_f64();
    let mut rounds: [Vec<Outcome>; 3] = Default::default();
    for round in 1..=plan.rounds {
        progress.step(&format!("saturation round {round}/{}: echo, exact hit, descendant hit", plan.rounds));
        let echo_max = lab.saturate(&format!("echo-{round}"), &echo_spec).await?;
        ensure!(echo_max.ok > 0, "echo answered nothing: {:?}", echo_max.first_error);
        let exact_max = lab.saturate(&format!("exact-{round}"), &exact_spec).await?;
        expect_source("exact hit", &exact_max, "cache")?;
        // Descendants are made for this round alone (a second check of one is an exact hit).
        let pool = (echo_max.throughput * POOL_SLACK * secs(plan.saturate)) as usize + 1000;
        desc_spec.workload = descendants(format!("sat{round}"), pool);
        let desc_max = lab.saturate(&format!("descendant-{round}"), &desc_spec).await?;
        expect_source("descendant hit", &desc_max, "descendant")?;
        progress.done(&format!(
            "round {round}: echo {:.0}, exact hit {:.0}, descendant hit {:.0} req/s",
            echo_max.throughput, exact_max.throughput, desc_max.throughput
        ));
        for (all, one) in rounds.iter_mut().zip([echo_max, exact_max, desc_max]) {
            all.push(one);
        }
    }
    let [echo_rounds, exact_rounds, desc_rounds] = rounds;
    let (echo_max, echo_all) = median(echo_rounds);
    let (exact_max, exact_all) = median(exact_rounds);
    let (desc_max, desc_all) = median(desc_rounds);

    // The fixed-rate runs in rounds too; each reports its round with the median p99.
    let rate = echo_max.throughput * plan.rate_fraction;
    let exact_rate = rate.min(exact_max.throughput / 2.0);
    let desc_rate = rate.min(desc_max.throughput / 2.0);
    let mut at_rates: [Vec<Outcome>; 3] = Default::default();
    for round in 1..=plan.rounds {
        progress.step(&format!("fixed-rate round {round}/{}: echo, exact hit, descendant hit", plan.rounds));
        echo_spec.mode = lab.at_rate(rate);
        let echo_at = lab.load(&echo_spec).await?;
        exact_spec.mode = lab.at_rate(exact_rate);
        let exact_at = lab.load(&exact_spec).await?;
        expect_source("exact hit", &exact_at, "cache")?;
        desc_spec.mode = lab.at_rate(desc_rate);
        desc_spec.workload = descendants(format!("rate{round}"), (rate * POOL_SLACK * secs(plan.moderate)) as usize);
        let desc_at = lab.load(&desc_spec).await?;
        expect_source("descendant hit", &desc_at, "descendant")?;
        progress.done(&format!(
            "round {round} at {rate:.0}/s: p99 echo {:.0}, exact hit {:.0}, descendant hit {:.0} µs",
            echo_at.latency.p99, exact_at.latency.p99, desc_at.latency.p99
        ));
        for (all, one) in at_rates.iter_mut().zip([echo_at, exact_at, desc_at]) {
            all.push(one);
        }
    }
    drop(echo);
    let [echo_at, exact_at, desc_at] = at_rates.map(median_p99);
    push(report, progress, "echo", "echo (bare tonic, no work)", (echo_max, echo_all), rate, echo_at);
    push(report, progress, "exact", "Check exact hit", (exact_max, exact_all), exact_rate, exact_at);
    push(report, progress, "descendant", "Check descendant hit", (desc_max, desc_all), desc_rate, desc_at);

    let (max, at_rate, rate_used) = cold(lab, progress, (verifier.addr(), verifier_pid), rate).await?;
    let throughput = max.throughput;
    push(report, progress, "cold", "Check cold miss (→ authority)", (max, vec![throughput]), rate_used, at_rate);
    Ok(rate)
}

/// Cold miss: every request a token the verifier has not seen. The supply
/// follows the measured rate: a saturation run that uses its tokens up runs
/// again with more, and the fixed-rate run gets freshly minted tokens enough
/// for its rate (a faster authority must not make the scenario fail).
async fn cold(
    lab: &Lab,
    progress: &Progress,
    (addr, verifier_pid): (std::net::SocketAddr, u32),
    rate: f64,
) -> anyhow::Result<(Outcome, Outcome, f64)> {
    let plan = &lab.plan;
    let secs = |d: Duration| d.as_secs_f64();
    let window = secs(plan.warmup) + secs(plan.saturate);
    let mut n = plan.cold_tokens;
    let mut attempt = 0;
    let max = loop {
        attempt += 1;
        progress.step(&format!("Check cold miss: minting {n} fresh tokens"));
        let tokens = lab.mint(n, &[CAVEAT]).await?;
        let file = lab.token_file(&format!("cold-{attempt}.tokens"), &tokens)?;
        let mut spec = lab.spec(addr, CHECK, lab.saturating(), Workload::Tokens { file, skip: 0 });
        spec.watch_pids = vec![verifier_pid, lab.authority.pid()];
        let max = lab.saturate("cold", &spec).await?;
        lab.spare(tokens.iter().map(|t| t.family.as_str()));
        if !max.exhausted {
            break max;
        }
        ensure!(attempt < COLD_ATTEMPTS, "cold miss: {n} fresh tokens still used up at saturation");
        // Enough for the rate it reached over the whole window, with room.
        n = ((max.throughput * window * 1.5) as usize).max(n * 2);
    };
    expect_source("cold miss", &max, "authority")?;
    let rate = rate.min(max.throughput / 2.0);
    let need = (rate * (secs(plan.warmup) + secs(plan.moderate)) * 1.3) as usize + 100;
    progress.step(&format!("Check cold miss at {rate:.0}/s: minting {need} fresh tokens"));
    let tokens = lab.mint(need, &[CAVEAT]).await?;
    let file = lab.token_file("cold-rate.tokens", &tokens)?;
    let mut spec = lab.spec(addr, CHECK, lab.at_rate(rate), Workload::Tokens { file, skip: 0 });
    spec.watch_pids = vec![verifier_pid, lab.authority.pid()];
    let at_rate = lab.load(&spec).await?;
    lab.spare(tokens.iter().map(|t| t.family.as_str()));
    ensure!(!at_rate.exhausted, "cold miss: {need} fresh tokens used up at {rate:.0}/s");
    expect_source("cold miss", &at_rate, "authority")?;
    progress.done("cold miss measured");
    Ok((max, at_rate, rate))
}

/// The round with the median p99.
fn median_p99(mut rounds: Vec<Outcome>) -> Outcome {
    rounds.sort_by(|a, b| a.latency.p99.total_cmp(&b.latency.p99));
    let mid = rounds.len() / 2;
    rounds.swap_remove(mid)
}

/// The round with the median throughput, and every round's throughput.
fn median(mut rounds: Vec<Outcome>) -> (Outcome, Vec<f64>) {
    let all = rounds.iter().map(|o| o.throughput).collect();
    rounds.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    let mid = rounds.len() / 2;
    (rounds.swap_remove(mid), all)
}

fn push(
    report: &mut Report,
    progress: &Progress,
    name: &str,
    title: &str,
    (max, rounds): (Outcome, Vec<f64>),
    rate: f64,
    at: Outcome,
) {
    progress.note(&format!(
        "{title}: {:.0} req/s at saturation; at {rate:.0}/s p50 {:.0} µs, p99 {:.0} µs",
        max.throughput, at.latency.p50, at.latency.p99
    ));
    let scenario =
        CheckScenario { name: name.into(), title: title.into(), saturation: max, rounds, rate, moderate: at };
    report.checks.push(scenario);
}
