//! The scenarios of issue 5, one file each, in the order they run: the Check
//! scenarios beside the echo baseline, the realistic mix, verifier memory,
//! revocation propagation, the authority's RPCs, and catch-up (last: it needs
//! the revocations the authority scenario committed).

pub(crate) mod authority;
pub(crate) mod catchup;
pub(crate) mod checks;
pub(crate) mod memory;
pub(crate) mod mix;
pub(crate) mod propagation;

use std::time::Duration;

use anyhow::ensure;
use tally_proto::v1 as pb;
use tally_tests::Verifier;

use crate::load::{Mode, Outcome};

/// Caveat of every minted bench token; requests ask for `read`.
pub(crate) const CAVEAT: &str = "action in read,write";
/// A share of answers below this from the expected source means the run
/// measured something else than it claims: the harness fails.
const EXPECTED_SHARE: f64 = 0.99;

/// One Check with action `read`.
pub(crate) async fn check_once(verifier: &Verifier, token: &str) -> anyhow::Result<pb::CheckResponse> {
    let req = pb::CheckRequest { bundle: token.into(), action: "read".into(), ..Default::default() };
    Ok(verifier.client().check(req).await?.into_inner())
}

/// Fails unless (nearly) every answer was allowed and came from `source`.
pub(crate) fn expect_source(what: &str, o: &Outcome, source: &str) -> anyhow::Result<()> {
    ensure!(o.ok > 0, "{what}: no answers ({:?})", o.first_error);
    let allowed = o.allowed as f64 / (o.allowed + o.denied).max(1) as f64;
    ensure!(allowed >= EXPECTED_SHARE, "{what}: only {:.1} % allowed", allowed * 100.0);
    let share = o.source_share(source);
    ensure!(share >= EXPECTED_SHARE, "{what}: only {:.1} % from {source}: {:?}", share * 100.0, o.sources);
    Ok(())
}

/// A closed loop until the workload runs out or `limit` requests were sent.
pub(crate) fn until_done(concurrency: usize, limit: Option<u64>) -> Mode {
    Mode::Closed { concurrency, warmup_ms: 0, duration_ms: Duration::from_secs(3600).as_millis() as u64, limit }
}

/// `n` with a thousands suffix, for step names.
pub(crate) fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}
