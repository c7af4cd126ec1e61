//! Scenario 7: the authority's own RPCs, Mint, Verify and Revoke (by family
//! id, each a durable log append), closed loop at 1 and 64 callers over up
//! to 8 connections, with the same load generator.

use anyhow::ensure;
use prost::Message;
use tally_proto::v1 as pb;

use crate::bench::lab::{Lab, ORG};
use crate::bench::load::Workload;
use crate::bench::progress::Progress;
use crate::bench::report::{AuthorityRun, Report};

/// Caveats Mint is asked for; with `org` and `expires` the token has 5 (as in the criterion bench).
const CAVEATS: [&str; 3] = ["action in read,write", "resource = apps/web/*", "service = web"];
const MAX_CONNECTIONS: usize = 8;

pub(crate) async fn run(lab: &Lab, progress: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let mint = pb::MintRequest { org: ORG.into(), caveats: CAVEATS.map(String::from).to_vec(), ..Default::default() };
    let token = lab.mint(1, &CAVEATS).await?.remove(0).token;
    let verify = pb::VerifyRequest { bundle: token };
    let operator = lab.operator().to_owned();
    let rpcs = [
        ("Mint", operator.clone(), Workload::Message { hex: hex::encode(mint.encode_to_vec()) }),
        ("Verify", lab.verifier_token.clone(), Workload::Message { hex: hex::encode(verify.encode_to_vec()) }),
        ("Revoke", operator, Workload::RevokeRandom),
    ];
    for (rpc, bearer, workload) in rpcs {
        for callers in lab.plan.authority_callers {
            progress.step(&format!("authority {rpc} × {callers}"));
            let method = format!("/tally.v1.Authority/{rpc}");
            let mode = lab.saturating_with(callers);
            let mut spec = lab.spec(lab.authority.addr(), &method, mode, workload.clone());
            spec.connections = callers.min(MAX_CONNECTIONS);
            spec.bearer = Some(bearer.clone());
            spec.watch_pids = vec![lab.authority.pid()];
            let outcome = lab.saturate(&format!("authority-{rpc}-{callers}"), &spec).await?;
            ensure!(outcome.ok > 0 && outcome.errors == 0, "authority {rpc}: {:?}", outcome.first_error);
            progress.done(&format!(
                "authority {rpc} × {callers}: {:.0}/s, p50 {:.0} µs",
                outcome.throughput, outcome.latency.p50
            ));
            report.authority.push(AuthorityRun { rpc: rpc.into(), callers, outcome });
        }
    }
    Ok(())
}
