//! A logged history for fault scenarios, and its safety checker. Every Check
//! answer is recorded with when it started and ended, every acknowledged
//! Revoke with when it was acknowledged; [`History::violations`] then lists
//! every Check of a revoked family that started later than `ack + bound` and
//! was allowed ("no allow after revoke-ack + bound").

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_proto::v1 as pb;
use tally_proto::v1::authority_client::AuthorityClient;
use tally_proto::v1::revoke_request::Target;
use tally_proto::v1::verifier_client::VerifierClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::authority::bearer;

/// Longest a Check may take before it is recorded as failed (the verifier
/// answers within its authority timeout, 2 s by default).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a Revoke may take before it is given up (unacknowledged).
const REVOKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two checks of one load task: keeps two cores usable.
const CHECK_PACING: Duration = Duration::from_millis(3);

/// A Check as the caller saw it. Times are since the history began.
#[derive(Debug, Clone)]
pub struct CheckRecord {
    /// Which verifier answered.
    pub region: String,
    /// The token's family (hex).
    pub family: String,
    pub started: Duration,
    pub ended: Duration,
    /// The answer, or the RPC error.
    pub answer: Result<pb::CheckResponse, String>,
}

impl CheckRecord {
    /// Allowed (an RPC error is not).
    pub fn allowed(&self) -> bool {
        self.answer.as_ref().is_ok_and(|r| r.allowed)
    }
}

/// An acknowledged revocation.
#[derive(Debug, Clone)]
pub struct RevokeRecord {
    pub family: String,
    pub seq: u64,
    pub sent: Duration,
    pub acked: Duration,
}

/// A token the load checks, with its family.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub token: String,
    pub family: String,
}

impl From<pb::MintResponse> for Tracked {
    fn from(m: pb::MintResponse) -> Self {
        Self { token: m.token, family: m.family }
    }
}

#[derive(Debug, Default)]
struct Log {
    checks: Vec<CheckRecord>,
    revokes: Vec<RevokeRecord>,
    /// Revoke calls that failed or timed out (outcome unknown).
    unacked: usize,
}

/// The shared history of one scenario.
#[derive(Debug)]
pub struct History {
    origin: Instant,
    log: Mutex<Log>,
    /// Longest a Check may take before it is recorded as failed.
    check_timeout: Duration,
}

impl History {
    pub fn new() -> Arc<Self> {
        Self::with_check_timeout(CHECK_TIMEOUT)
    }

    /// A history whose checks wait up to `check_timeout` (for verifiers given
    /// a longer `--authority-timeout` than the default).
    pub fn with_check_timeout(check_timeout: Duration) -> Arc<Self> {
        Arc::new(Self { origin: Instant::now(), log: Mutex::default(), check_timeout })
    }

    /// Time since the history began.
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks `t` for `read` at a verifier and records the answer.
    pub async fn check(&self, mut verifier: VerifierClient<Channel>, region: &str, t: &Tracked) -> CheckRecord {
        let started = self.now();
        let req = pb::CheckRequest { bundle: t.token.clone(), action: "read".into(), ..Default::default() };
        let answer = match tokio::time::timeout(self.check_timeout, verifier.check(req)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => Err(format!("no answer within {:?}", self.check_timeout)),
        };
        let record =
            CheckRecord { region: region.into(), family: t.family.clone(), started, ended: self.now(), answer };
        self.log().checks.push(record.clone());
        record
    }

    /// Checks `t` (each check recorded) until the verifier allows it from its
    /// cache; panics after 5 s. Warms a cache, or shows it answers again.
    pub async fn until_cached(&self, verifier: &VerifierClient<Channel>, region: &str, t: &Tracked) {
        crate::eventually(Duration::from_secs(5), || async {
            let r = self.check(verifier.clone(), region, t).await;
            match &r.answer {
                Ok(a) if a.allowed && a.source() == pb::Source::Cache => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    /// Revokes `family` with `operator`; records and returns the seq if acknowledged.
    pub async fn revoke(&self, mut authority: AuthorityClient<Channel>, operator: &str, family: &str) -> Option<u64> {
        let sent = self.now();
        let req = pb::RevokeRequest { target: Some(Target::Family(family.into())), reason: "fault test".into() };
        match tokio::time::timeout(REVOKE_TIMEOUT, authority.revoke(bearer(req, operator))).await {
            Ok(Ok(r)) => {
                let seq = r.into_inner().seq;
                let record = RevokeRecord { family: family.into(), seq, sent, acked: self.now() };
                self.log().revokes.push(record);
                Some(seq)
            }
            _ => {
                self.log().unacked += 1;
                None
            }
        }
    }

    /// Every recorded check so far.
    pub fn checks(&self) -> Vec<CheckRecord> {
        self.log().checks.clone()
    }

    /// Every acknowledged revocation so far, in ack order.
    pub fn revokes(&self) -> Vec<RevokeRecord> {
        self.log().revokes.clone()
    }

    /// Revoke calls without an acknowledgement.
    pub fn unacked(&self) -> usize {
        self.log().unacked
    }

    /// Allowed checks of a revoked family that started later than its ack +
    /// `bound`, skipping the families in `exempt` (revocations known lost,
    /// e.g. by a restore from an older copy), one line each.
    pub fn violations(&self, bound: Duration, exempt: &HashSet<String>) -> Vec<String> {
        let log = self.log();
        let mut first_ack: HashMap<&str, &RevokeRecord> = HashMap::new();
        for r in &log.revokes {
            first_ack.entry(&r.family).and_modify(|e| *e = if r.acked < e.acked { r } else { e }).or_insert(r);
        }
        log.checks
            .iter()
            .filter(|c| c.allowed() && !exempt.contains(&c.family))
            .filter_map(|c| {
                let r = first_ack.get(c.family.as_str())?;
                (c.started > r.acked + bound).then(|| {
                    let source = c.answer.as_ref().map(|a| a.source()).ok();
                    format!(
                        "{}: family {} revoked (seq {}) acked at {:?}, check started at {:?} (+{:?}) allowed from {source:?}",
                        c.region,
                        c.family,
                        r.seq,
                        r.acked,
                        c.started,
                        c.started - r.acked,
                    )
                })
            })
            .collect()
    }

    /// Panics listing the violations of "no allow after revoke-ack + bound".
    #[track_caller]
    pub fn assert_safe(&self, bound: Duration, exempt: &HashSet<String>) {
        let v = self.violations(bound, exempt);
        assert!(v.is_empty(), "{} checks allowed past revoke-ack + {bound:?}:\n{}", v.len(), v.join("\n"));
    }

    /// One line: checks (allowed / denied / failed) and revocations.
    pub fn summary(&self) -> String {
        let log = self.log();
        let allowed = log.checks.iter().filter(|c| c.allowed()).count();
        let failed = log.checks.iter().filter(|c| c.answer.is_err()).count();
        format!(
            "{} checks ({allowed} allowed, {} denied, {failed} failed), {} revocations acked, {} unacked",
            log.checks.len(),
            log.checks.len() - allowed - failed,
            log.revokes.len(),
            log.unacked,
        )
    }
}

/// Background Check load on one verifier: cycles through `tokens` until
/// stopped. Dropping it stops the task.
#[derive(Debug)]
pub struct CheckLoad {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<usize>>,
}

impl CheckLoad {
    /// Starts checking `tokens` (shared, so the test may add some) at `verifier`.
    pub fn start(
        history: Arc<History>,
        verifier: VerifierClient<Channel>,
        region: &str,
        tokens: Arc<Mutex<Vec<Tracked>>>,
    ) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let region = region.to_owned();
        let task = tokio::spawn(async move {
            let mut n = 0usize;
            while !*stopped.borrow() {
                let t = {
                    let tokens = tokens.lock().unwrap_or_else(|p| p.into_inner());
                    if tokens.is_empty() { None } else { Some(tokens[n % tokens.len()].clone()) }
                };
                if let Some(t) = t {
                    history.check(verifier.clone(), &region, &t).await;
                    n += 1;
                }
                tokio::select! {
                    _ = stopped.changed() => {}
                    _ = tokio::time::sleep(CHECK_PACING) => {}
                }
            }
            n
        });
        Self { stop, task: Some(task) }
    }

    /// Stops and returns how many checks it made.
    pub async fn stop(mut self) -> usize {
        self.stop.send_replace(true);
        self.task.take().expect("running").await.expect("check load task")
    }
}

impl Drop for CheckLoad {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
