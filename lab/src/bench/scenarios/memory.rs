//! Scenario 8: verifier memory per cached entry. A fresh verifier sees a
//! number of families once, then unique one-caveat attenuations of them
//! (each cached as its own entry) until the cache holds the planned count;
//! the growth of its resident set is divided by the growth of its cache.

use anyhow::ensure;

use super::{CAVEAT, count, expect_source, until_done};
use crate::bench::lab::{CHECK, Lab};
use crate::bench::progress::Progress;
use crate::bench::report::{Memory, Report};
use crate::load::Workload;
use crate::usage::rss_bytes;

pub(crate) async fn run(lab: &Lab, progress: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let plan = &lab.plan;
    progress.step(&format!("verifier memory: filling a cache to {} entries", count(plan.memory_entries)));
    let tokens = lab.mint(plan.memory_families, &[CAVEAT]).await?;
    let file = lab.token_file("memory.tokens", &tokens)?;
    let mut verifier = lab.verifier("memory", true).await?;
    let pid = verifier.process().pid();
    let warm = Workload::Tokens { file, skip: 0 };
    let spec = lab.spec(verifier.addr(), CHECK, until_done(plan.concurrency, None), warm);
    expect_source("memory warm-up", &lab.load(&spec).await?, "authority")?;
    let entries_before = verifier.status().await.cache_entries;
    let rss_before = rss_bytes(pid).unwrap_or(0);

    let fill = plan.memory_entries.saturating_sub(entries_before);
    let workload = Workload::Descendants {
        tokens: tokens.iter().map(|t| t.token.clone()).collect(),
        caveats: 1,
        tag: "mem".into(),
        pool: 0,
    };
    let spec = lab.spec(verifier.addr(), CHECK, until_done(plan.concurrency, Some(fill)), workload);
    expect_source("memory fill", &lab.load(&spec).await?, "descendant")?;
    let entries = verifier.status().await.cache_entries;
    let rss_after = rss_bytes(pid).unwrap_or(0);
    ensure!(entries > entries_before && rss_after > 0, "the cache did not grow ({entries_before} → {entries})");
    let bytes_per_entry = (rss_after.saturating_sub(rss_before)) as f64 / (entries - entries_before) as f64;
    lab.spare(tokens.iter().map(|t| t.family.as_str()));
    progress.done(&format!("verifier memory: {bytes_per_entry:.0} B per cached entry at {entries} entries"));
    report.memory =
        Some(Memory { entries, families: tokens.len(), rss_before, rss_after, entries_before, bytes_per_entry });
    Ok(())
}
