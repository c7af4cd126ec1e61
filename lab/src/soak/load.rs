//! The soak's load: the initial population, then for the whole run the
//! Check dispatcher (`checks.rs`), a minter that keeps the population full,
//! a revoker that takes families out at a steady rate (by family and by
//! token, alternately; unacknowledged ones retried), and a key rotation now
//! and then. Calls to the authority go through a channel of their own that
//! reconnects by itself after each restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tally_proto::v1 as pb;
use tally_proto::v1::authority_client::AuthorityClient;
use tally_proto::v1::revoke_request::Target;
use tally_tests::bearer;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use super::checks::{CheckStats, Checker, MAX_IN_FLIGHT};
use super::deployment::{Deployment, ORG};
use super::pool::{Family, MINT_CAVEAT, POOL, Pool, TTL};
use super::safety::Safety;

/// Families revoked (and minted in their place) per second.
const CHURN_PER_SECOND: f64 = 2.0;
/// The revoker leaves at least this many live families (when mints fail for a while).
const KEEP_LIVE: usize = POOL / 2;
/// Interval between two key rotations of the soak's org.
const ROTATE_EVERY: Duration = Duration::from_secs(60);
/// Deadline of each authority call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed authority call.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// Concurrent Mint calls while making the initial population.
const MINTERS: usize = 8;
/// How long stopping waits for checks in flight.
const DRAIN: Duration = Duration::from_secs(15);

/// Authority calls made, by outcome.
#[derive(Debug, Default)]
pub(crate) struct OpStats {
    pub(crate) mints: AtomicU64,
    pub(crate) mint_errors: AtomicU64,
    pub(crate) revocations: AtomicU64,
    pub(crate) revocations_by_token: AtomicU64,
    pub(crate) revoke_errors: AtomicU64,
    pub(crate) rotations: AtomicU64,
    pub(crate) rotate_errors: AtomicU64,
}

/// The running load. Dropping it aborts every task.
#[derive(Debug)]
pub(crate) struct Load {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    in_flight: Arc<Semaphore>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) checks: Arc<CheckStats>,
    pub(crate) ops: Arc<OpStats>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// What the authority-side tasks share.
#[derive(Debug, Clone)]
struct Operator {
    client: AuthorityClient<Channel>,
    bearer: String,
    ops: Arc<OpStats>,
    pool: Arc<Pool>,
    ttl_seconds: u64,
}

impl Operator {
    async fn mint(&self, rng: &mut SmallRng) -> anyhow::Result<Family> {
        let req = pb::MintRequest {
            org: ORG.into(),
            caveats: vec![MINT_CAVEAT.into()],
            ttl_seconds: self.ttl_seconds,
            ..Default::default()
        };
        let mut client = self.client.clone();
        let call = client.mint(bearer(req, &self.bearer));
        let minted = tokio::time::timeout(CALL_TIMEOUT, call).await.context("Mint timed out")??.into_inner();
        self.ops.mints.fetch_add(1, Ordering::Relaxed);
        Family::new(minted, rng)
    }

    /// Keeps live + fresh families at [`POOL`].
    async fn minter(self, seed: u64, mut stop: watch::Receiver<bool>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        while !*stop.borrow_and_update() {
            let pause = if self.pool.size() >= POOL {
                Duration::from_millis(50)
            } else {
                match self.mint(&mut rng).await {
                    Ok(f) => {
                        self.pool.add_fresh(f);
                        Duration::ZERO
                    }
                    Err(_) => {
                        self.ops.mint_errors.fetch_add(1, Ordering::Relaxed);
                        RETRY_AFTER
                    }
                }
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Revokes [`CHURN_PER_SECOND`] families a second.
    async fn revoker(self, safety: Arc<Safety>, mut stop: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / CHURN_PER_SECOND));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut by_token = false;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = interval.tick() => {}
            }
            let Some((family, retry)) = self.pool.take_for_revocation(KEEP_LIVE) else { continue };
            // A retry goes by family: the token may be revoked already, and then it no longer verifies.
            by_token = !by_token;
            let token = by_token && !retry;
            let target =
                if token { Target::Token(family.token.clone()) } else { Target::Family(family.family.to_string()) };
            let req = pb::RevokeRequest { target: Some(target), reason: "soak".into() };
            let mut client = self.client.clone();
            let call = client.revoke(bearer(req, &self.bearer));
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(_)) => {
                    safety.acked(&family.family, Instant::now());
                    self.ops.revocations.fetch_add(1, Ordering::Relaxed);
                    if token {
                        self.ops.revocations_by_token.fetch_add(1, Ordering::Relaxed);
                    }
                    self.pool.revoked_ack(family);
                }
                _ => {
                    self.ops.revoke_errors.fetch_add(1, Ordering::Relaxed);
                    self.pool.revoke_failed(family);
                }
            }
        }
    }

    /// Rotates the org's key every [`ROTATE_EVERY`] (old tokens stay valid).
    async fn rotator(self, mut stop: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + ROTATE_EVERY, ROTATE_EVERY);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = interval.tick() => {}
            }
            let req = pb::RotateKeyRequest { org: ORG.into() };
            let mut client = self.client.clone();
            let call = client.rotate_key(bearer(req, &self.bearer));
            let counter = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(_)) => &self.ops.rotations,
                _ => &self.ops.rotate_errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Load {
    /// Mints the initial population, then starts every task. Tokens live
    /// [`TTL`]: families are revoked oldest first, long before that, and the
    /// revocations of expired tokens leave the verifiers' deny lists, so
    /// those reach a steady size as the caches do.
    pub(crate) async fn start(d: &Deployment, rate: u32, seed: u64) -> anyhow::Result<(Self, Arc<Safety>)> {
        let channel = Endpoint::from_shared(d.authority.url())?.connect_lazy();
        let pool = Arc::new(Pool::default());
        let ops = Arc::new(OpStats::default());
        let operator = Operator {
            client: AuthorityClient::new(channel),
            bearer: d.authority.bootstrap().to_owned(),
            ops: ops.clone(),
            pool: pool.clone(),
            ttl_seconds: TTL.as_secs(),
        };
        let mut minting = tokio::task::JoinSet::new();
        for caller in 0..MINTERS {
            let operator = operator.clone();
            minting.spawn(async move {
                let mut rng = SmallRng::seed_from_u64(seed ^ caller as u64);
                for _ in 0..POOL / MINTERS + usize::from(caller < POOL % MINTERS) {
                    let family = operator.mint(&mut rng).await?;
                    operator.pool.add_live(Arc::new(family));
                }
                anyhow::Ok(())
            });
        }
        for minted in minting.join_all().await {
            minted.context("minting the initial population")?;
        }

        let safety = Arc::new(Safety::default());
        let checks = Arc::new(CheckStats::default());
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let checker = Arc::new(Checker {
            eu: d.eu.client(),
            us: d.us.client(),
            pool: pool.clone(),
            safety: safety.clone(),
            stats: checks.clone(),
            in_flight: in_flight.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(checker.dispatch(rate, seed.wrapping_add(1), stopped.clone())),
            tokio::spawn(operator.clone().minter(seed.wrapping_add(2), stopped.clone())),
            tokio::spawn(operator.clone().revoker(safety.clone(), stopped.clone())),
            tokio::spawn(operator.rotator(stopped)),
        ];
        Ok((Self { stop, tasks, in_flight, pool, checks, ops }, safety))
    }

    /// Stops sending and waits (a while) for the checks in flight. Returns
    /// how many were still in flight when it gave up.
    pub(crate) async fn stop(&mut self) -> usize {
        self.stop.send_replace(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let all = MAX_IN_FLIGHT as u32;
        match tokio::time::timeout(DRAIN, self.in_flight.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => MAX_IN_FLIGHT - self.in_flight.available_permits(),
        }
    }
}
