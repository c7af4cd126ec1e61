//! Scenario 4, the realistic mix: Zipf over many token families and their
//! attenuations (see `Workload::Mix`), on a fresh verifier that has seen
//! each family once (a long-running deployment has), while 0.1 % of the
//! families are revoked. Reports the share of checks answered without the
//! authority (revoked families are denied locally: a hit too).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{CAVEAT, expect_source, until_done};
use crate::bench::lab::{CHECK, Lab};
use crate::bench::progress::Progress;
use crate::bench::report::{CheckScenario, Mix, Report};
use crate::load::{Outcome, Workload};

pub(crate) async fn run(lab: &Lab, progress: &Progress, report: &mut Report, rate: f64) -> anyhow::Result<()> {
    let plan = &lab.plan;
    progress.step(&format!("realistic mix: minting {} token families", plan.mix_tokens));
    let tokens = lab.mint(plan.mix_tokens, &[CAVEAT]).await?;
    let file = lab.token_file("mix.tokens", &tokens)?;
    let mut verifier = lab.verifier("mix", true).await?;
    let pid = verifier.process().pid();
    let mut spec = lab.spec(
        verifier.addr(),
        CHECK,
        until_done(plan.concurrency, None),
        Workload::Tokens { file: file.clone(), skip: 0 },
    );
    let warm = lab.load(&spec).await?;
    expect_source("mix warm-up", &warm, "authority")?;
    progress.done(&format!("mix: {} families minted and seen once", tokens.len()));

    progress.step("realistic mix: saturation with revocations, then a fixed rate");
    let revoked = ((plan.mix_tokens as f64 * plan.mix_revoked).round() as usize).max(1);
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let families: Vec<String> =
        (0..revoked).map(|_| tokens[rng.random_range(0..tokens.len())].family.clone()).collect();
    spec.workload = Workload::Mix { file, exponent: plan.mix_exponent };
    spec.mode = lab.saturating();
    spec.watch_pids = vec![pid, lab.authority.pid()];
    let (max, revoking) =
        tokio::join!(lab.saturate("mix", &spec), revoke_spread(lab, &families, plan.warmup, plan.saturate));
    let (max, ()) = (max?, revoking?);
    let rate = rate.min(max.throughput / 2.0);
    spec.mode = lab.at_rate(rate);
    let at_rate = lab.load(&spec).await?;

    lab.spare(tokens.iter().map(|t| t.family.as_str()).filter(|f| !families.iter().any(|r| r == f)));
    let sum = |o: &Outcome| o.sources.values().sum::<u64>();
    let asked = |o: &Outcome| o.sources.get("authority").copied().unwrap_or(0);
    let checks = sum(&max) + sum(&at_rate);
    let authority_answers = asked(&max) + asked(&at_rate);
    let hit_ratio = 1.0 - authority_answers as f64 / checks.max(1) as f64;
    progress.done(&format!(
        "realistic mix: {:.0} req/s at saturation, hit ratio {:.3} %; at {rate:.0}/s p99 {:.0} µs",
        max.throughput,
        hit_ratio * 100.0,
        at_rate.latency.p99
    ));
    report.mix = Some(Mix { families: tokens.len(), revoked, checks, authority_answers, hit_ratio });
    report.checks.push(CheckScenario {
        name: "mix".into(),
        title: "realistic mix (Zipf, 0.1 % revoked)".into(),
        rounds: vec![max.throughput],
        saturation: max,
        rate,
        moderate: at_rate,
    });
    Ok(())
}

/// Revokes `families` evenly over `over`, after `after`.
async fn revoke_spread(lab: &Lab, families: &[String], after: Duration, over: Duration) -> anyhow::Result<()> {
    tokio::time::sleep(after).await;
    let gap = over / families.len().max(1) as u32;
    for family in families {
        lab.revoke_family(family).await?;
        tokio::time::sleep(gap).await;
    }
    Ok(())
}
