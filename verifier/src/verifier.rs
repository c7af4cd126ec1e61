//! The verifier's domain: `check` a bundle for a request. Local first (deny
//! lists, then the cache: exact prefix or a cached ancestor whose chain is
//! continued here), then the negative cache, then the authority. Caveats are
//! evaluated on every request, whatever answered.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tally_token::{
    BundleRef, Claims, Context, DecodedBundle, Denial, DenialKind, FamilyId, FieldLimits, Limits, Predicate,
    PrefixKeys, Reason, RequestFields, Signature, TallyId, chain_step_ref, evaluate,
};

use crate::breaker::{Admit, Breaker, Ticket};
use crate::cache::{Cache, Cached};
use crate::clock::{Clock, Now, SystemClock};
use crate::error::Error;
use crate::memo::{Memo, Vouched};
use crate::metrics::Metrics;
use crate::negative::{Denied, NegativeCache};
use crate::outcome::{Outcome, Source};
use crate::revoked::{Denied as RevokedDenial, Revoked};
use crate::sync::SyncState;
use crate::upstream::Upstream;
use crate::verdict::{Verdict, Verified};
use tracing::Instrument;

/// Tunables.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Region name, for operators.
    pub region: String,
    /// Silence after which the cache is dropped and unused.
    pub fail_closed_after: Duration,
    /// Most cached prefixes.
    pub cache_capacity: usize,
    /// Slots of the token memo (texts answered as exact cache hits; 0: off).
    pub memo_capacity: usize,
    /// How long a negative answer is reused.
    pub negative_ttl: Duration,
    /// Most negative answers remembered.
    pub negative_capacity: usize,
    /// Clock skew allowed on `expires` / `not-before`.
    pub skew: Duration,
    /// Verify calls to the authority in flight at most; a check that would
    /// need one more is denied at once (`authority unavailable`).
    pub max_authority_calls: usize,
    /// Verify calls failing in a row for want of the authority (unreachable,
    /// timed out, overloaded) after which checks that need it are denied at
    /// once, one probe call let through per `breaker_cool_down`; the
    /// stream's silence opens it too (breaker.rs). 0: it never opens.
    pub breaker_failures: u32,
    /// How long the breaker stays open between probes.
    pub breaker_cool_down: Duration,
    /// Token size limits.
    pub limits: Limits,
    /// Bounds on a check's request fields (what a caveat is evaluated against).
    pub field_limits: FieldLimits,
    /// Cache a descendant once its chain was continued, so it is an exact hit
    /// next time (off only to measure the descendant path itself).
    pub remember_descendants: bool,
    /// The org the services behind this verifier belong to, for checks
    /// that name none: only tokens of that org are allowed.
    pub org: Option<String>,
    /// Following a less preferred authority (of several) this long, the
    /// stream tries the preferred ones again.
    pub failback_after: Duration,
}

/// Default of [`Settings::cache_capacity`] (`--cache-capacity`).
pub const DEFAULT_CACHE_CAPACITY: usize = 1_000_000;
/// Default of [`Settings::memo_capacity`] (`--memo-capacity`).
pub const DEFAULT_MEMO_CAPACITY: usize = 1024;
/// Default of [`Settings::max_authority_calls`] (`--max-authority-calls`).
pub const DEFAULT_MAX_AUTHORITY_CALLS: usize = 128;
/// Default of [`Settings::breaker_failures`] (`--breaker-failures`).
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;

impl Default for Settings {
    fn default() -> Self {
        Self {
            region: "default".into(),
            fail_closed_after: Duration::from_secs(10),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            memo_capacity: DEFAULT_MEMO_CAPACITY,
            negative_ttl: Duration::from_secs(5),
            negative_capacity: 100_000,
            skew: tally_token::DEFAULT_SKEW,
            max_authority_calls: DEFAULT_MAX_AUTHORITY_CALLS,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_cool_down: Duration::from_secs(1),
            limits: Limits::default(),
            field_limits: FieldLimits::default(),
            remember_descendants: true,
            org: None,
            failback_after: Duration::from_secs(30),
        }
    }
}

/// The request context of a check (empty: not supplied). `Debug` omits the bundle.
#[derive(Clone, Copy, Default)]
pub struct CheckRequest<'a> {
    pub bundle: &'a str,
    pub action: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub service: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    /// The org the checking service belongs to (else the verifier's default).
    pub org: Option<&'a str>,
}

impl<'a> CheckRequest<'a> {
    /// A check of `bundle` for request fields that were bounded and parsed
    /// ([`RequestFields::parse`], with [`Settings::field_limits`]).
    pub fn new(bundle: &'a str, f: RequestFields<'a>) -> Self {
        let RequestFields { action, resource, service, subject, client_ip, org } = f;
        Self { bundle, action, resource, service, subject, client_ip, org }
    }
}

impl std::fmt::Debug for CheckRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckRequest")
            .field("bundle", &"<redacted>")
            .field("action", &self.action)
            .field("resource", &self.resource)
            .field("service", &self.service)
            .field("subject", &self.subject)
            .field("client_ip", &self.client_ip)
            .field("org", &self.org)
            .finish()
    }
}

/// The verifier.
#[derive(Debug)]
pub struct Verifier {
    pub(crate) cache: Cache,
    pub(crate) memo: Memo,
    pub(crate) negative: NegativeCache,
    pub(crate) revoked: Revoked,
    pub(crate) sync: SyncState,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) settings: Settings,
    pub(crate) metrics: Metrics,
    /// Held while checking the deny lists and inserting into the cache, and
    /// while applying a revocation (add to deny list, prune): so an entry
    /// verified before a revocation can never be inserted after its pruning.
    pub(crate) apply: Mutex<()>,
    /// Permits for Verify calls in flight (`Settings::max_authority_calls`).
    authority_calls: Arc<tokio::sync::Semaphore>,
    /// Denies at once while the authority is out of reach (breaker.rs).
    pub(crate) breaker: Arc<Breaker>,
    /// Every reading of the time (clock.rs): the system's, or a test's.
    pub(crate) clock: Arc<dyn Clock>,
}

/// What a check reads first: the cache's generation, then the clock, and
/// whether the cache may answer then.
#[derive(Debug, Clone, Copy)]
struct Start {
    generation: u64,
    now: Now,
    usable: bool,
}

/// Decodes `text` into `decoded` (no copy of its buffer) and views it.
fn decode<'d>(decoded: &'d mut DecodedBundle, text: &str, limits: &Limits) -> Result<BundleRef<'d>, Error> {
    let malformed = |e| Error::InvalidArgument(format!("malformed bundle: {e}"));
    decoded.decode_into(text, limits).map_err(malformed)?;
    decoded.view(limits).map_err(malformed)
}

impl Verifier {
    /// A verifier talking to `upstream`, on the system clock.
    pub fn new(upstream: Upstream, settings: Settings) -> Self {
        Self::with_clock(upstream, settings, Arc::new(SystemClock))
    }

    /// A verifier talking to `upstream`, on `clock`.
    pub(crate) fn with_clock(upstream: Upstream, settings: Settings, clock: Arc<dyn Clock>) -> Self {
        let breaker = Breaker::new(settings.breaker_failures, settings.breaker_cool_down, upstream.timeout()).into();
        Self {
            cache: Cache::new(settings.cache_capacity),
            memo: Memo::new(settings.memo_capacity),
            negative: NegativeCache::new(settings.negative_ttl, settings.negative_capacity),
            revoked: Revoked::default(),
            sync: SyncState::new(clock.clone()),
            clock,
            upstream: Arc::new(upstream),
            metrics: Metrics::default(),
            apply: Mutex::new(()),
            authority_calls: Arc::new(tokio::sync::Semaphore::new(settings.max_authority_calls)),
            breaker,
            settings,
        }
    }

    /// Settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Checks a bundle for a request. The bundle is decoded once (unless the
    /// memo answers): the local answer and the authority's path share it.
    pub async fn check(&self, req: &CheckRequest<'_>) -> Result<Outcome, Error> {
        let start = self.start();
        let outcome = match self.memoized(req, start) {
            Some(outcome) => outcome,
            None => {
                let mut decoded = DecodedBundle::default();
                let bundle = decode(&mut decoded, req.bundle, &self.settings.limits)?;
                match self.answer_locally(&bundle, req, start.now, start.usable, Some(start.generation)) {
                    Some(outcome) => outcome,
                    None => match self.negative.get(req.bundle, start.now.mono) {
                        Some(d) => Outcome::deny(d.reason, d.detail, Source::NegativeCache),
                        None => self.ask_authority(&bundle, req).await,
                    },
                }
            }
        };
        self.metrics.count(outcome.allowed, outcome.source);
        Ok(outcome)
    }

    /// Answers from the token memo, or else from local state (deny lists,
    /// cache) and memoizes an exact hit; `None` when the authority must be
    /// asked. Malformed bundles are an error.
    pub fn check_cached(&self, req: &CheckRequest<'_>) -> Result<Option<Outcome>, Error> {
        let start = self.start();
        if let Some(outcome) = self.memoized(req, start) {
            return Ok(Some(outcome));
        }
        let mut decoded = DecodedBundle::default();
        let bundle = decode(&mut decoded, req.bundle, &self.settings.limits)?;
        Ok(self.answer_locally(&bundle, req, start.now, start.usable, Some(start.generation)))
    }

    /// What a check reads before anything else.
    fn start(&self) -> Start {
        // Read before anything it vouches for: a revocation applied after
        // this read makes whatever is memoized under it stale (memo.rs).
        let generation = self.cache.generation();
        let now = self.clock.now();
        Start { generation, now, usable: self.sync.usable(now.mono, self.settings.fail_closed_after) }
    }

    /// The token memo's answer, when it holds the text (of this generation,
    /// alive) and the cache may answer.
    fn memoized(&self, req: &CheckRequest<'_>, start: Start) -> Option<Outcome> {
        if !start.usable {
            return None;
        }
        let Start { generation, now, .. } = start;
        let answer = self.memo.with(req.bundle, generation, now.unix_ms(), |m| {
            if let Some(wrong) = self.wrong_org(req, m.org, Some(m.family), Source::Cache) {
                return wrong;
            }
            let evaluated = m.caveats.evaluate(&self.context(now.wall, req, m.org));
            self.outcome(evaluated, m.org.clone(), Some(m.family), Source::Cache)
        })?;
        self.metrics.memo_hits.inc();
        Some(answer)
    }

    /// Answers from local state alone (deny lists, cache; never the memo),
    /// or `None` when the authority must be asked.
    pub fn check_local(&self, bundle: &BundleRef<'_>, req: &CheckRequest<'_>) -> Option<Outcome> {
        let now = self.clock.now();
        let usable = self.sync.usable(now.mono, self.settings.fail_closed_after);
        self.answer_locally(bundle, req, now, usable, None)
    }

    /// [`Verifier::check_local`] at `now`, with the cache `usable` then (one
    /// clock read for the whole check); memoizes an exact hit under
    /// `memo_generation` when given.
    fn answer_locally(
        &self,
        bundle: &BundleRef<'_>,
        req: &CheckRequest<'_>,
        now: Now,
        usable: bool,
        memo_generation: Option<u64>,
    ) -> Option<Outcome> {
        let root = &bundle.root;
        let Ok(id) = TallyId::decode(root.identifier) else {
            return Some(Outcome::deny(Reason::UnknownKey, "not a Tally token", Source::Local));
        };
        match self.revoked.denies(id.key_id, &id.family) {
            Some(RevokedDenial::KeyRetired) => {
                return Some(Outcome::deny(Reason::RetiredKey, format!("key {} is retired", id.key_id), Source::Local));
            }
            Some(RevokedDenial::Family) => return Some(Outcome::deny(Reason::Revoked, "token revoked", Source::Local)),
            None => {}
        }
        let caveats = &root.caveats;
        if !usable || !bundle.discharges.is_empty() || caveats.iter().any(|c| c.is_third_party()) {
            return None;
        }
        // Prefix keys, longest first: most checks stop at the first (an exact hit).
        let n = caveats.len();
        let mut keys = PrefixKeys::of(root);
        let (k, hit_key, hit) = self.cache.longest(&id.family, n, now.unix_ms(), |k| keys.key(k))?;
        let source = if k == caveats.len() { Source::Cache } else { Source::Descendant };
        let mut sig = hit.sig.clone();
        // The continued chain, kept only to remember the descendant.
        let remember = k < n && self.settings.remember_descendants;
        let mut tail = Vec::with_capacity(if remember { n - k } else { 0 });
        for c in &caveats[k..] {
            sig = chain_step_ref(&sig, c);
            if self.revoked.on_revoked_branch(&sig) {
                return Some(Outcome::deny(Reason::Revoked, "token revoked (branch)", source));
            }
            if remember {
                tail.push(sig.clone());
            }
        }
        if sig != root.signature {
            return Some(Outcome::deny(Reason::Forged, "signature does not match the cached chain", source));
        }
        if let Some(generation) = memo_generation.filter(|_| k == n) {
            let vouched =
                Vouched { family: hit.family, org: hit.org.clone(), expires_at_ms: hit.expires_at_ms, generation };
            self.memo.insert(req.bundle, caveats.iter().map(|c| c.id), vouched);
        }
        if remember {
            // Remember the descendant itself, so it is an exact hit next time.
            let expires = caveats[k..]
                .iter()
                .filter_map(|c| match Predicate::parse_bytes(c.id) {
                    Ok(Predicate::Expires(t)) => Some((t / 1_000_000) as i64),
                    _ => None,
                })
                .fold(hit.expires_at_ms, i64::min);
            let entry = Cached { sig, expires_at_ms: expires, ..hit.clone() };
            let ancestor = (hit_key, &hit.sig);
            self.insert_checked((keys.key(n), n), entry, &tail, Some(ancestor), now);
        }
        let first_party = caveats.iter().map(|c| c.id);
        Some(self.evaluate_at(now.wall, first_party, req, hit.org, Some(hit.family), source))
    }

    /// Inserts unless something it depends on was revoked meanwhile: under the
    /// lock revocations are applied with, it re-checks the deny lists for the
    /// key, the family and every chain position in `chain`, and, for a
    /// descendant, that its ancestor entry is still cached unchanged (a
    /// revocation of a branch at or before the ancestor prunes that entry).
    fn insert_checked(
        &self,
        (key, caveats): (tally_token::PrefixKey, usize),
        entry: Cached,
        chain: &[Signature],
        ancestor: Option<(tally_token::PrefixKey, &Signature)>,
        now: Now,
    ) {
        let now_ms = now.unix_ms();
        let _apply = self.apply.lock().expect("apply lock");
        if !self.sync.usable(now.mono, self.settings.fail_closed_after)
            || self.revoked.denies(entry.key_id, &entry.family).is_some()
            || chain.iter().any(|s| self.revoked.on_revoked_branch(s))
            || ancestor.is_some_and(|(k, sig)| self.cache.get(&k, now_ms).is_none_or(|a| a.sig != *sig))
        {
            return;
        }
        self.cache.insert(key, caveats, entry, now_ms);
    }

    async fn ask_authority(&self, bundle: &BundleRef<'_>, req: &CheckRequest<'_>) -> Outcome {
        // Shed rather than queue: when the authority is slow or out of reach,
        // calls pile up (each holding its buffers until the timeout) and it
        // would only be sent a storm once it is back.
        let Ok(slot) = self.authority_calls.clone().try_acquire_owned() else {
            self.metrics.authority_shed.inc();
            return Outcome::deny(
                Reason::AuthorityUnavailable,
                format!("authority unavailable ({} Verify calls already in flight)", self.settings.max_authority_calls),
                Source::Authority,
            );
        };
        let asked = self.clock.now().mono;
        let ticket = match self.breaker.admit(asked) {
            Admit::Call(ticket) => ticket,
            Admit::Refuse(wait) => {
                self.metrics.authority_breaker.inc();
                return Outcome::deny(
                    Reason::AuthorityUnavailable,
                    format!(
                        "authority unavailable (breaker open: the authority was out of reach; next try in {} ms)",
                        wait.as_millis()
                    ),
                    Source::Authority,
                );
            }
        };
        self.metrics.authority_verifies.inc();
        let answer = self.call_authority(req.bundle, slot, ticket).await;
        let now = self.clock.now();
        self.metrics.verify_latency.observe(now.mono.saturating_duration_since(asked).as_secs_f64());
        let answer = match answer {
            Ok(answer) => answer,
            Err(status) => {
                tracing::warn!(code = ?status.code(), "authority unavailable for Verify");
                return Outcome::deny(
                    Reason::AuthorityUnavailable,
                    format!("authority unavailable ({:?})", status.code()),
                    Source::Authority,
                );
            }
        };
        match answer {
            Verdict::Refused { reason, detail, family } => {
                self.negative.insert(req.bundle, Denied { reason, detail: detail.clone() }, now.mono);
                let mut out = Outcome::deny(reason, detail, Source::Authority);
                out.family = family;
                out
            }
            Verdict::Verified(verified) => {
                self.remember(bundle, &verified);
                let first_party = std::iter::once(&bundle.root)
                    .chain(&bundle.discharges)
                    .flat_map(|m| &m.caveats)
                    .filter(|c| !c.is_third_party())
                    .map(|c| c.id);
                let Verified { org, family, .. } = verified;
                self.evaluate_at(now.wall, first_party, req, org, family, Source::Authority)
            }
        }
    }

    /// The Verify call, in a task of its own that holds `slot`: it runs to
    /// its deadline even when the check that asked is dropped (its caller
    /// gave up first), so the breaker always learns how it ended and the
    /// in-flight cap counts it until then.
    fn call_authority(
        &self,
        bundle: &str,
        slot: tokio::sync::OwnedSemaphorePermit,
        ticket: Ticket,
    ) -> impl Future<Output = Result<Verdict, tonic::Status>> + use<> {
        let (upstream, breaker, bundle) = (self.upstream.clone(), self.breaker.clone(), bundle.to_owned());
        let clock = self.clock.clone();
        let call = tokio::spawn(
            async move {
                let _slot = slot;
                let answer = upstream.verify(bundle).await;
                breaker.record(clock.now().mono, ticket, answer.as_ref().err().map(tonic::Status::code));
                answer
            }
            .in_current_span(),
        );
        async move { call.await.unwrap_or_else(|e| Err(tonic::Status::internal(format!("the Verify call failed: {e}")))) }
    }

    /// Caches what a valid Verify answer vouches for: the whole token and its
    /// minted prefix (so any attenuation of the minted token, which is every
    /// other token of its family, hits). The authority hands out signatures
    /// from the minted length on only (a verifier may hold only what its
    /// presenters could compute from the minted token), and none for Tally's own
    /// API tokens; an answer that does not line up with the token is ignored.
    pub fn remember(&self, bundle: &BundleRef<'_>, verified: &Verified) {
        let root = &bundle.root;
        let caveats = &root.caveats;
        if !bundle.discharges.is_empty() || caveats.iter().any(|c| c.is_third_party()) {
            return; // third-party tokens always go to the authority (see ARCHITECTURE.md)
        }
        let n = caveats.len();
        let (from, chain) = (verified.chain_from, &verified.chain);
        if verified.epoch != self.sync.position().epoch || from > n || chain.len() != n - from + 1 {
            return;
        }
        let Ok(id) = TallyId::decode(root.identifier) else { return };
        if chain.last() != Some(&root.signature) {
            return;
        }
        let expires_at_ms = verified.expires_at_ms.unwrap_or(i64::MAX);
        // The minted prefix lives as long as its own `expires` caveats allow,
        // not as long as the (possibly shorter-lived) presented token; when
        // it is the presented token, the authority's answer bounds it too.
        let answered = if from == n { expires_at_ms } else { i64::MAX };
        let minted_expiry = caveats[..from]
            .iter()
            .filter_map(|c| match Predicate::parse_bytes(c.id) {
                Ok(Predicate::Expires(t)) => Some((t / 1_000_000) as i64),
                _ => None,
            })
            .fold(answered, i64::min);
        let base = Cached {
            sig: chain[0].clone(),
            family: id.family,
            key_id: id.key_id,
            expires_at_ms: minted_expiry,
            org: verified.org.clone(),
        };
        let now = self.clock.now();
        let mut keys = PrefixKeys::of(root);
        if from < n {
            let full = Cached { sig: chain[n - from].clone(), expires_at_ms, ..base.clone() };
            self.insert_checked((keys.key(n), n), full, chain, None, now);
        }
        self.insert_checked((keys.key(from), from), base, &chain[..1], None, now);
    }

    fn evaluate_at<'c>(
        &self,
        now: SystemTime,
        caveats: impl Iterator<Item = &'c [u8]>,
        req: &CheckRequest<'_>,
        org: Arc<str>,
        family: Option<FamilyId>,
        source: Source,
    ) -> Outcome {
        if let Some(wrong) = self.wrong_org(req, &org, family, source) {
            return wrong;
        }
        let evaluated = evaluate(caveats, &self.context(now, req, &org));
        self.outcome(evaluated, org, family, source)
    }

    /// The denial of a token whose key belongs to another org than the
    /// checking service (the request's org, else the verifier's default);
    /// `None` when no org is required or it is the token's. Checked before
    /// the caveats: the token is not for this service at all.
    fn wrong_org(
        &self,
        req: &CheckRequest<'_>,
        org: &Arc<str>,
        family: Option<FamilyId>,
        source: Source,
    ) -> Option<Outcome> {
        let required = req.org.or(self.settings.org.as_deref())?;
        if **org == *required {
            return None;
        }
        let mut out =
            Outcome::deny(Reason::WrongOrg, format!("the token belongs to another org than {required}"), source);
        out.org = org.clone();
        out.family = family;
        Some(out)
    }

    /// What the caveats are evaluated against: the request at `now`, for a token of `org`.
    fn context<'r>(&self, now: SystemTime, req: &CheckRequest<'r>, org: &'r str) -> Context<'r> {
        let mut ctx = Context::at(now);
        ctx.skew_nanos = self.settings.skew.as_nanos() as i128;
        ctx.action = req.action;
        ctx.resource = req.resource;
        ctx.service = req.service;
        ctx.subject = req.subject;
        ctx.client_ip = req.client_ip;
        ctx.org = Some(org).filter(|o| !o.is_empty());
        ctx
    }

    /// The answer once the caveats were evaluated.
    fn outcome(
        &self,
        evaluated: Result<Claims<'_>, Denial>,
        org: Arc<str>,
        family: Option<FamilyId>,
        source: Source,
    ) -> Outcome {
        match evaluated {
            Ok(claims) => Outcome {
                allowed: true,
                reason: Reason::Ok,
                detail: String::new(),
                failed_caveat: String::new(),
                subject: claims.subject.map(str::to_owned).unwrap_or_default(),
                org,
                family,
                source,
                expires_at_ms: claims.expires_unix_nanos.map_or(0, |t| (t / 1_000_000) as i64),
            },
            Err(d) => {
                let reason = match d.kind {
                    DenialKind::Expired => Reason::Expired,
                    DenialKind::NotYetValid => Reason::NotYetValid,
                    DenialKind::Unsatisfied | DenialKind::Invalid(_) | DenialKind::TooCostly => Reason::CaveatFailed,
                };
                let mut out = Outcome::deny(reason, d.to_string(), source);
                out.failed_caveat = d.caveat;
                out.org = org;
                out.family = family;
                out
            }
        }
    }
}
