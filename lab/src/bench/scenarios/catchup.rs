//! Scenario 6: catch-up. The log is topped up to the planned number of
//! revocations, then a fresh verifier starts and is timed until it has
//! applied the head (its deny list complete, its cache usable).

use std::time::Duration;

use anyhow::ensure;
use tokio::time::Instant;

use super::{count, until_done};
use crate::bench::lab::Lab;
use crate::bench::progress::Progress;
use crate::bench::report::{Catchup, Report};
use crate::load::Workload;

const POLL: Duration = Duration::from_millis(1);
const GIVE_UP: Duration = Duration::from_secs(120);
/// Callers topping the log up.
const CALLERS: usize = 64;
const CONNECTIONS: usize = 8;

pub(crate) async fn run(lab: &Lab, progress: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let want = lab.plan.catchup_revocations;
    progress.step(&format!("catch-up: a fresh verifier behind {} revocations", count(want)));
    let head = lab.head_seq().await?;
    if head < want {
        let families = lab.families((want - head) as usize).await?;
        let file = lab.lines_file("catchup.families", &families)?;
        let mode = until_done(CALLERS, None);
        let mut spec = lab.spec(lab.authority.addr(), "/tally.v1.Authority/Revoke", mode, Workload::Revoke { file });
        spec.bearer = Some(lab.operator().to_owned());
        spec.connections = CONNECTIONS;
        let out = lab.load(&spec).await?;
        ensure!(out.errors == 0, "topping the log up: {:?}", out.first_error);
    }
    let head = lab.head_seq().await?;
    ensure!(head >= want, "log head {head} < {want}");

    let spawned = Instant::now();
    let verifier = lab.verifier("catchup", false).await?;
    let listening = Instant::now();
    loop {
        let s = verifier.status().await;
        if s.synced && s.applied_seq >= head {
            break;
        }
        ensure!(spawned.elapsed() < GIVE_UP, "not caught up within {GIVE_UP:?}: {s:?}");
        tokio::time::sleep(POLL).await;
    }
    let done = Instant::now();
    let from_spawn_s = (done - spawned).as_secs_f64();
    let from_listening_s = (done - listening).as_secs_f64();
    progress.done(&format!("catch-up of {head} revocations: {from_spawn_s:.3} s from spawn"));
    report.catchup = Some(Catchup { revocations: head, from_spawn_s, from_listening_s });
    Ok(())
}
