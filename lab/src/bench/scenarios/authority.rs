//! Scenario 7: the authority's own RPCs, Mint, Verify and Revoke (by family
//! id, each a durable log append), closed loop at 1 and 64 callers over up
//! to 8 connections, with the same load generator.

use anyhow::ensure;
use prost::Message;
use tally_proto::v1 as pb;

use crate::bench::lab::{Lab, ORG, REGISTRY_REMEMBERED};
use crate::bench::progress::Progress;
use crate::bench::report::{AuthorityRun, POSTGRES, Report};
use crate::load::Workload;

/// Caveats Mint is asked for; with `org` and `expires` the token has 5 (as in the criterion bench).
const CAVEATS: [&str; 3] = ["action in read,write", "resource = apps/web/*", "service = web"];
const MAX_CONNECTIONS: usize = 8;
/// Families minted per second of a Revoke run, alone and with many callers
/// (above what this machine does), but never more than the authority is
/// sure to remember ([`REGISTRY_REMEMBERED`]): more would measure database
/// look-ups (the report counts them). A run that uses them all up ends early
/// and says so.
const REVOKES_PER_S: [(usize, f64); 2] = [(1, 3_000.0), (64, 40_000.0)];

/// Runs every RPC × callers on `lab`'s authority, whose store is `store`
/// (`report::SQLITE` or `report::POSTGRES`).
pub(crate) async fn run(
    lab: &Lab,
    progress: &Progress,
    report: &mut Report,
    store: &'static str,
) -> anyhow::Result<()> {
    let mint = pb::MintRequest { org: ORG.into(), caveats: CAVEATS.map(String::from).to_vec(), ..Default::default() };
    let token = lab.mint(1, &CAVEATS).await?.remove(0).token;
    let verify = pb::VerifyRequest { bundle: token };
    let operator = lab.operator().to_owned();
    let rpcs = [
        ("Mint", operator.clone(), Some(Workload::Message { hex: hex::encode(mint.encode_to_vec()) })),
        ("Verify", lab.verifier_token.clone(), Some(Workload::Message { hex: hex::encode(verify.encode_to_vec()) })),
        ("Revoke", operator, None),
    ];
    for (rpc, bearer, workload) in rpcs {
        for callers in lab.plan.authority_callers {
            progress.step(&format!("authority ({store}) {rpc} × {callers}"));
            let workload = match &workload {
                Some(w) => w.clone(),
                None => revocations(lab, callers).await?,
            };
            let method = format!("/tally.v1.Authority/{rpc}");
            let mode = lab.saturating_with(callers);
            let mut spec = lab.spec(lab.authority.addr(), &method, mode, workload);
            spec.connections = callers.min(MAX_CONNECTIONS);
            spec.bearer = Some(bearer.clone());
            spec.watch_pids = lab.server_pids();
            let before = lab.writes().await?;
            // The label names `--perf`'s files: one per store.
            let label = if store == POSTGRES {
                format!("authority-pg-{rpc}-{callers}")
            } else {
                format!("authority-{rpc}-{callers}")
            };
            let outcome = lab.saturate(&label, &spec).await?;
            let after = lab.writes().await?;
            let changes_per_commit = after.changes_per_commit(&before);
            let commit_time = after.commit_time(&before);
            let registry_reads = (after.registry_reads - before.registry_reads) as u64;
            ensure!(outcome.ok > 0 && outcome.errors == 0, "authority {rpc}: {:?}", outcome.first_error);
            progress.done(&format!(
                "authority ({store}) {rpc} × {callers}: {:.0}/s, p50 {:.0} µs",
                outcome.throughput, outcome.latency.p50
            ));
            report.authority.push(AuthorityRun {
                store,
                rpc: rpc.into(),
                callers,
                outcome,
                changes_per_commit,
                commit_time,
                registry_reads,
            });
        }
    }
    Ok(())
}

/// A Revoke workload of families minted just before (as the criterion bench
/// does: what is measured is the log append, not a registry look-up in the
/// database for a family minted long ago).
async fn revocations(lab: &Lab, callers: usize) -> anyhow::Result<Workload> {
    let per_s = REVOKES_PER_S.iter().rev().find(|(c, _)| callers >= *c).map_or(REVOKES_PER_S[0].1, |r| r.1);
    let n = ((per_s * (lab.plan.warmup + lab.plan.saturate).as_secs_f64()) as usize).min(REGISTRY_REMEMBERED);
    let families: Vec<String> = lab.mint(n, &[]).await?.into_iter().map(|m| m.family).collect();
    let file = lab.lines_file(&format!("revoke-{callers}.families"), &families)?;
    Ok(Workload::Revoke { file })
}
