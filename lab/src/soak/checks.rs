//! Checks at a fixed rate, in an open loop (each Check is a task of its own,
//! so a slow answer never holds the next one back), spread over both
//! verifiers and every kind of token the soak knows; each answer is judged
//! against what its kind must get, and every allow goes past the safety
//! check.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tally_proto::v1::verifier_client::VerifierClient;
use tally_proto::v1::{self as pb, Reason};
use tokio::sync::{Semaphore, watch};
use tonic::transport::Channel;

use super::pool::{Family, Pool, unknown_forgery};
use super::safety::Safety;

/// Longest a Check may take before it counts as an error (the verifiers
/// answer within their 2 s authority timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the dispatcher wakes up to send what is due.
const TICK: Duration = Duration::from_millis(10);
/// Checks in flight at most; beyond, due checks are shed (and counted).
pub(crate) const MAX_IN_FLIGHT: usize = 2048;
/// A dispatcher wake-up later than this is a stall of the load generator.
const STALL: Duration = Duration::from_secs(1);
/// Wrong answers described in full; the rest are only counted.
const DESCRIBED: usize = 20;

/// What is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// A live token as minted: an exact cache hit once cached.
    Exact,
    /// A fixed attenuation of a live token: a descendant hit, then an exact one.
    Descendant,
    /// A token just minted, checked once at each verifier: a cache miss.
    Fresh,
    /// A live token's identifier and caveats under a wrong key: the cached chain says forged.
    Forged,
    /// A well-formed token of a family never minted: the authority says forged.
    UnknownForgery,
    /// Random text or a truncated token: malformed.
    Garbage,
    /// A token whose revocation was acknowledged.
    Revoked,
}

/// Kinds drawn for each check, with weights in percent (fresh tokens are
/// checked as soon as they are minted, in place of a drawn check).
const MIX: [(Kind, u64); 6] = [
    (Kind::Exact, 50),
    (Kind::Descendant, 25),
    (Kind::Forged, 6),
    (Kind::UnknownForgery, 2),
    (Kind::Garbage, 3),
    (Kind::Revoked, 14),
];

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Exact => "exact",
            Kind::Descendant => "descendant",
            Kind::Fresh => "fresh (miss)",
            Kind::Forged => "forged",
            Kind::UnknownForgery => "unknown forgery",
            Kind::Garbage => "garbage",
            Kind::Revoked => "revoked",
        }
    }

    fn draw(rng: &mut SmallRng) -> Self {
        MIX.choose_weighted(rng, |&(_, weight)| weight).map_or(Kind::Exact, |&(kind, _)| kind)
    }

    /// Whether a valid token is checked (allowed unless the authority is out of reach).
    fn valid(self) -> bool {
        matches!(self, Kind::Exact | Kind::Descendant | Kind::Fresh)
    }
}

/// Answers by kind and outcome, and the wrong ones.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// (kind, "allowed" | "denied REASON" | "error CODE") → count.
    pub(crate) counts: BTreeMap<(Kind, String), u64>,
    pub(crate) wrong: u64,
    pub(crate) described: Vec<String>,
}

/// What the check side did, shared with the sampler.
#[derive(Debug, Default)]
pub(crate) struct CheckStats {
    /// Checks answered (or failed).
    pub(crate) done: AtomicU64,
    /// Checks due but not sent: too many in flight, or the dispatcher woke late.
    pub(crate) shed: AtomicU64,
    /// Dispatcher wake-ups later than [`STALL`].
    pub(crate) stalls: AtomicU64,
    /// Latest dispatcher wake-up since the last sample, in ms (reset by the sampler).
    pub(crate) worst_late_ms: AtomicU64,
    pub(crate) tally: Mutex<Tally>,
}

/// Everything a Check task needs.
#[derive(Debug)]
pub(crate) struct Checker {
    pub(crate) eu: VerifierClient<Channel>,
    pub(crate) us: VerifierClient<Channel>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) safety: Arc<Safety>,
    pub(crate) stats: Arc<CheckStats>,
    pub(crate) in_flight: Arc<Semaphore>,
}

/// One Check to make.
struct Planned {
    kind: Kind,
    region: &'static str,
    bundle: String,
    resource: &'static str,
    /// The family of the token sent, when it has one we know.
    family: Option<Arc<Family>>,
}

impl Checker {
    /// Sends `rate` checks a second until `stop` turns true.
    pub(crate) async fn dispatch(self: Arc<Self>, rate: u32, seed: u64, mut stop: watch::Receiver<bool>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last = Instant::now();
        let mut owed = 0.0f64;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = interval.tick() => {}
            }
            let now = Instant::now();
            let gap = now - last;
            last = now;
            let late = gap.saturating_sub(TICK);
            self.stats.worst_late_ms.fetch_max(late.as_millis() as u64, Ordering::Relaxed);
            if late > STALL {
                self.stats.stalls.fetch_add(1, Ordering::Relaxed);
            }
            // What fell due while the dispatcher was late is shed, not sent in a burst.
            let due = f64::from(rate) * gap.as_secs_f64();
            let allowed = f64::from(rate) * 2.0 * TICK.as_secs_f64();
            if due > allowed {
                self.stats.shed.fetch_add((due - allowed) as u64, Ordering::Relaxed);
            }
            owed += due.min(allowed);
            while owed >= 1.0 {
                owed -= 1.0;
                let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                    self.stats.shed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if let Some(fresh) = self.pool.take_fresh() {
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.fresh(fresh).await;
                        drop(permit);
                    });
                    continue;
                }
                let Some(planned) = self.plan(&mut rng) else { continue };
                let this = self.clone();
                tokio::spawn(async move {
                    this.check(planned).await;
                    drop(permit);
                });
            }
        }
    }

    /// Draws a kind and builds its request (`None` before there is any token).
    fn plan(&self, rng: &mut SmallRng) -> Option<Planned> {
        let region = if rng.random() { "eu" } else { "us" };
        let kind = Kind::draw(rng);
        let live = self.pool.live(rng)?;
        let planned = |bundle: String, resource, family| Planned { kind, region, bundle, resource, family };
        Some(match kind {
            Kind::Exact | Kind::Fresh => planned(live.token.clone(), "", Some(live)),
            Kind::Descendant => {
                let v = &live.variants[rng.random_range(0..live.variants.len())];
                planned(v.token.clone(), v.resource, Some(live.clone()))
            }
            Kind::Forged => planned(live.forged.clone(), "", Some(live)),
            Kind::UnknownForgery => planned(unknown_forgery(live.key_id, rng), "", None),
            Kind::Garbage if rng.random() => planned(live.token[..live.token.len() / 2].to_owned(), "", None),
            Kind::Garbage => {
                const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let len = 40 + rng.random_range(0..120);
                let text: String =
                    (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect();
                planned(format!("tly_{text}"), "", None)
            }
            Kind::Revoked => {
                let gone = self.pool.revoked(rng)?;
                planned(gone.token.clone(), "", Some(gone))
            }
        })
    }

    /// A family just minted: checked at both verifiers (a miss at each), then live.
    async fn fresh(&self, family: Arc<Family>) {
        for region in ["eu", "us"] {
            let planned = Planned {
                kind: Kind::Fresh,
                region,
                bundle: family.token.clone(),
                resource: "",
                family: Some(family.clone()),
            };
            self.check(planned).await;
        }
        self.pool.add_live(family);
    }

    async fn check(&self, p: Planned) {
        let mut client = if p.region == "eu" { self.eu.clone() } else { self.us.clone() };
        let req = pb::CheckRequest {
            bundle: p.bundle,
            action: "read".into(),
            resource: p.resource.into(),
            ..Default::default()
        };
        let started = Instant::now();
        let answer = match tokio::time::timeout(CHECK_TIMEOUT, client.check(req)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(format!("{:?}", status.code())),
            Err(_) => Err("timeout".to_owned()),
        };
        self.stats.done.fetch_add(1, Ordering::Relaxed);
        if let (Ok(r), Some(f)) = (&answer, &p.family)
            && r.allowed
        {
            self.safety.allowed(&f.family, p.region, started);
        }
        let (label, wrong) = self.judge(p.kind, p.family.as_deref(), &answer);
        let mut tally = self.stats.tally.lock().unwrap_or_else(|e| e.into_inner());
        if wrong {
            tally.wrong += 1;
            if tally.described.len() < DESCRIBED {
                let detail = answer.as_ref().map(|r| r.detail.clone()).unwrap_or_default();
                tally.described.push(format!("{} at {}: {label} ({detail})", p.kind.name(), p.region));
            }
        }
        *tally.counts.entry((p.kind, label)).or_default() += 1;
    }

    /// The answer's label, and whether it is wrong for its kind. RPC errors
    /// and timeouts are counted, not judged wrong (none is expected but
    /// garbage's INVALID_ARGUMENT; the totals report them).
    fn judge(&self, kind: Kind, family: Option<&Family>, answer: &Result<pb::CheckResponse, String>) -> (String, bool) {
        let r = match answer {
            Err(code) => {
                return (format!("error {code}"), false);
            }
            Ok(r) => r,
        };
        if r.allowed {
            // A revoked token allowed is the safety check's business (it may be within the bound).
            return ("allowed".into(), !(kind.valid() || kind == Kind::Revoked));
        }
        let reason = r.reason();
        let label = format!("denied {}", reason_name(reason));
        let wrong = kind.valid()
            && match reason {
                Reason::AuthorityUnavailable => false,
                Reason::Revoked => !family.is_some_and(|f| self.pool.is_gone(&f.family)),
                _ => true,
            };
        (label, wrong)
    }
}

/// `REASON_AUTHORITY_UNAVAILABLE` → `authority_unavailable`.
pub(crate) fn reason_name(reason: Reason) -> String {
    reason.as_str_name().trim_start_matches("REASON_").to_ascii_lowercase()
}
