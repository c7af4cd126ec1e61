//! Fuzzes the verifier's in-process Check path. Each input (see
//! `src/check_input.rs`) names a token — one the verifier has cached, edited,
//! or literal text — and a request; it runs on a fresh `Verifier` whose cache
//! holds the tokens below, as the authority path would have left it (so a run
//! does not depend on the inputs before it), synced, with an upstream on a
//! closed loopback port that is never dialled: `check_local` is synchronous,
//! and the async `check` is called only where it cannot reach the authority
//! (malformed bundles, and bundles `check_local` has just answered).
//!
//! Properties:
//! - malformed text is refused by `check` as `InvalidArgument`;
//! - a foreign identifier is denied locally (`UnknownKey`); a token with
//!   discharges or third-party caveats, of an unknown family, or of a family
//!   whose entries expired, goes to the authority (`None`); a token of a
//!   cached family is answered from the cache (`Some`), as an exact hit when
//!   its whole prefix is cached, else as a descendant;
//! - a cache answer is `Forged` exactly when the token's chain does not verify
//!   under its root key: nothing forged is ever allowed;
//! - otherwise the answer is the reference evaluation of its caveats (for the
//!   cached org, the request's fields, now): allowed with the claims when they
//!   hold at the instants before and after the check, denied when one fails
//!   whatever the time;
//! - answering again through `check` gives the same verdict, from the cache;
//! - a verifier that is not synced never answers from its cache;
//! - `CheckRequest`'s `Debug` does not depend on the bundle.

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use tally_fuzz::bundle_text::write_part;
use tally_fuzz::check_input::{self, Base, Recipe};
use tally_fuzz::{prefix, reference};
use tally_token::{
    Bundle, BundleRef, DecodedBundle, DerivedKey, KeyId, Limits, Macaroon, PrefixKey, Reason, RootKey, TallyId,
    verify_view_with_key, verify_with_key,
};
use tally_verifier::{CheckRequest, Outcome, Settings, Source, Upstream, Verified, Verifier};
use tokio::runtime::Runtime;

const EPOCH: &str = "fuzz";
/// 2099-01-01, and 2001-09-09 for the family whose entries have expired.
const LIVE_MS: i64 = 4_070_908_800_000;
const EXPIRED_MS: i64 = 1_000_000_000_000;

/// A cached token, and what the authority said about it.
struct Fixture {
    token: Macaroon,
    org: &'static str,
    expires_at_ms: i64,
    /// The authority's Verify answer (valid, with the genuine chain).
    verified: Verified,
}

/// Everything built once per process.
struct World {
    runtime: Runtime,
    upstream: Upstream,
    fixtures: Vec<Fixture>,
    /// Prefix keys the fill leaves live in the cache: each live fixture's
    /// minted prefix (the whole fixture), never a shorter one.
    cached_keys: Vec<PrefixKey>,
    /// A verifier that never synced.
    unsynced: Verifier,
}

fn root_key(key_id: KeyId) -> Option<RootKey> {
    match key_id.0 {
        1 => Some(RootKey::from_bytes([7; 32])),
        2 => Some(RootKey::from_bytes([9; 32])),
        _ => None,
    }
}

fn derived(key_id: KeyId) -> Option<DerivedKey> {
    root_key(key_id).map(|k| k.derive())
}

fn fixture(key: u64, nonce: u8, caveats: &[&str], org: &'static str, expires_at_ms: i64) -> Fixture {
    let key_id = KeyId(key);
    let root = root_key(key_id).expect("fixture keys exist");
    let mut token = Macaroon::mint(&root, TallyId::new(key_id, [nonce; 16]).encode(), Some("https://tally".into()));
    for c in caveats {
        token.add_first_party(*c);
    }
    let chain = verify_with_key(&Bundle::single(token.clone()), &root.derive(), &Limits::default())
        .expect("fixture verifies")
        .chain;
    // As the authority answers a token presented as minted (a verifier gets
    // only what a presenter could compute from the minted token): its own
    // signature alone, from the minted length; none for the system org.
    let minted = if org == "system" { Vec::new() } else { vec![chain[caveats.len()].clone()] };
    let verified = Verified {
        org: org.into(),
        family: None,
        expires_at_ms: Some(expires_at_ms).filter(|&t| t != 0),
        epoch: EPOCH.into(),
        chain_from: caveats.len(),
        chain: minted,
    };
    Fixture { token, org, expires_at_ms, verified }
}

fn settings() -> Settings {
    Settings {
        cache_capacity: 256,
        // No stream here: stay "in contact" for the whole run.
        fail_closed_after: Duration::from_secs(24 * 3600),
        ..Settings::default()
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        // The lazy channel spawns its worker on the runtime it is made in.
        let upstream = {
            let _in = runtime.enter();
            Upstream::new("http://127.0.0.1:9", "unused", Duration::from_millis(200)).expect("upstream")
        };
        let fixtures = vec![
            fixture(
                1,
                1,
                &[
                    "org = acme",
                    "expires < 2099-01-01T00:00:00Z",
                    "action in read,write",
                    "resource = apps/*",
                    "service = web",
                ],
                "acme",
                LIVE_MS,
            ),
            fixture(1, 2, &[], "acme", 0),
            fixture(
                1,
                3,
                &["client-ip in 10.0.0.0/8,::1", "subject = alice", "not-before > 2001-09-09T01:46:40Z"],
                "",
                LIVE_MS,
            ),
            fixture(2, 4, &["role = operator", "action in verify"], "system", LIVE_MS),
            fixture(1, 5, &["service = web"], "acme", EXPIRED_MS),
        ];
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64;
        let cached_keys = fixtures
            .iter()
            .filter(|f| (f.expires_at_ms == 0 || f.expires_at_ms > now_ms) && f.org != "system")
            .map(|f| prefix::key(f.token.identifier(), f.token.caveats()))
            .collect();
        let unsynced = Verifier::new(upstream.clone(), settings());
        World { runtime, upstream, fixtures, cached_keys, unsynced }
    })
}

/// A fresh synced verifier with every fixture remembered.
fn verifier(w: &World) -> Verifier {
    let v = Verifier::new(w.upstream.clone(), settings());
    v.assume_synced(EPOCH);
    for f in &w.fixtures {
        v.remember(&BundleRef { root: f.token.view(), discharges: Vec::new() }, &f.verified);
    }
    v
}

/// The bundle text an input describes.
fn bundle_text(w: &World, recipe: &Recipe<'_>) -> String {
    let limits = Limits::default();
    let (mut token, mut discharges) = match recipe.base {
        Some(Base::Cached(n)) => (w.fixtures[n % w.fixtures.len()].token.clone(), Vec::new()),
        Some(Base::Literal(text)) => match Bundle::parse(text, &limits) {
            Ok(_) if recipe.edits.is_empty() => return text.to_owned(),
            Ok(b) => (b.root, b.discharges.iter().map(Macaroon::to_text).collect::<Vec<_>>()),
            Err(_) => return text.to_owned(),
        },
        None => return String::new(),
    };
    let mut extra = Vec::new();
    for &edit in &recipe.edits {
        check_input::apply(&mut token, &mut extra, edit);
    }
    discharges.extend(extra.into_iter().map(str::to_owned));
    std::iter::once(write_part(&token, recipe.flavour)).chain(discharges).collect::<Vec<_>>().join(",")
}

/// What the verifier should say about a decoded bundle.
enum Expect {
    UnknownKey,
    Authority,
    /// Answered from the cache: an exact hit or not, genuine or not.
    Cache {
        exact: bool,
        genuine: bool,
        id: TallyId,
        org: &'static str,
    },
}

fn expect(w: &World, bundle: &BundleRef<'_>, limits: &Limits) -> Expect {
    let root = &bundle.root;
    let Ok(id) = TallyId::decode(root.identifier) else { return Expect::UnknownKey };
    if !bundle.discharges.is_empty() || root.caveats.iter().any(|c| c.is_third_party()) {
        return Expect::Authority;
    }
    let owned = root.to_owned();
    let Some(f) = w.fixtures.iter().find(|f| f.token.identifier() == root.identifier) else {
        return Expect::Authority;
    };
    // Only the minted prefix is cached: a token is answered locally when it
    // starts with the fixture's minted caveats (and that entry is live).
    let minted = f.token.caveats().len();
    let presented = owned.caveats();
    if presented.len() < minted || !w.cached_keys.contains(&prefix::key(root.identifier, &presented[..minted])) {
        return Expect::Authority; // a shorter prefix, other caveats, an expired entry, or never cached
    }
    let exact = presented.len() == minted;
    let genuine = derived(id.key_id).is_some_and(|k| verify_view_with_key(bundle, &k, limits).is_ok());
    Expect::Cache { exact, genuine, id, org: f.org }
}

/// The reference evaluation's verdict.
type Verdict = Result<reference::Claims, (usize, reference::Fail)>;

/// The reference verdict at `now` for the verifier's context.
fn reference_at(now: SystemTime, caveats: &[Option<reference::Pred>], req: &CheckRequest<'_>, org: &str) -> Verdict {
    let mut ctx = tally_token::Context::at(now);
    ctx.skew_nanos = settings().skew.as_nanos() as i128;
    ctx.action = req.action;
    ctx.resource = req.resource;
    ctx.service = req.service;
    ctx.subject = req.subject;
    ctx.client_ip = req.client_ip;
    ctx.org = Some(org).filter(|o| !o.is_empty());
    reference::evaluate(caveats, &ctx)
}

/// A cache answer against the reference verdicts before and after it.
fn check_answer(o: &Outcome, id: &TallyId, org: &str, before: &Verdict, after: &Verdict) {
    assert_ne!(o.reason, Reason::Forged, "genuine token called forged: {o:?}");
    assert_eq!(o.family, Some(id.family));
    assert_eq!(&*o.org, org);
    match (before, after) {
        (Ok(claims), Ok(_)) => {
            assert!(o.allowed && o.reason == Reason::Ok, "reference allows, verifier says {o:?}");
            assert_eq!(o.subject, claims.subject.clone().unwrap_or_default());
            assert_eq!(o.expires_at_ms, claims.expires.map_or(0, |t| (t / 1_000_000) as i64));
        }
        (Err((_, reference::Fail::Unsatisfied | reference::Fail::Invalid)), _) => {
            assert!(!o.allowed, "a caveat fails whatever the time, verifier allows: {o:?}");
        }
        _ => {} // a time bound crossed during the check: either answer is right
    }
    if !o.allowed {
        assert_ne!(o.reason, Reason::Ok);
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let input = String::from_utf8_lossy(data);
    let recipe = Recipe::read(&input);
    let text = bundle_text(w, &recipe);
    let req = CheckRequest {
        bundle: &text,
        action: recipe.action,
        resource: recipe.resource,
        service: recipe.service,
        subject: recipe.subject,
        client_ip: recipe.client_ip,
        org: recipe.org,
    };
    let without_bundle = CheckRequest { bundle: "", ..req };
    assert_eq!(format!("{req:?}"), format!("{without_bundle:?}"), "CheckRequest's Debug shows the bundle");

    let v = verifier(w);
    let limits = Limits::default();
    let decoded = DecodedBundle::decode(&text, &limits);
    let bundle = match decoded.as_ref().map_err(Clone::clone).and_then(|d| d.view(&limits)) {
        Ok(bundle) => bundle,
        Err(_) => {
            let answer = w.runtime.block_on(v.check(&req));
            assert!(matches!(answer, Err(tally_verifier::Error::InvalidArgument(_))), "{answer:?}");
            return;
        }
    };

    let unsynced = w.unsynced.check_local(&bundle, &req);
    assert!(unsynced.as_ref().is_none_or(|o| o.reason == Reason::UnknownKey), "unsynced cache answered: {unsynced:?}");

    let caveats: Vec<Option<reference::Pred>> = bundle.root.caveats.iter().map(|c| reference::parse(c.id)).collect();
    let t0 = SystemTime::now();
    let first = v.check_local(&bundle, &req);
    match expect(w, &bundle, &limits) {
        Expect::UnknownKey => {
            let o = first.expect("a foreign identifier is answered locally");
            assert_eq!((o.allowed, o.reason, o.source), (false, Reason::UnknownKey, Source::Local));
        }
        Expect::Authority => assert!(first.is_none(), "answered without the authority: {first:?}"),
        Expect::Cache { exact, genuine, id, org } => {
            let first = first.expect("a cached family is answered from the cache");
            let source = if exact { Source::Cache } else { Source::Descendant };
            assert_eq!(first.source, source, "{first:?}");
            // Once more through the async path: answered by the cache again
            // (the descendant now remembered), so nothing is dialled.
            let again = w.runtime.block_on(v.check(&req)).expect("a decodable bundle");
            assert!(matches!(again.source, Source::Cache | Source::Descendant), "{again:?}");
            let t1 = SystemTime::now();
            if !genuine {
                for o in [&first, &again] {
                    assert_eq!((o.allowed, o.reason), (false, Reason::Forged), "forgery not caught: {o:?}");
                }
                return;
            }
            let before = reference_at(t0, &caveats, &req, org);
            let after = reference_at(t1, &caveats, &req, org);
            check_answer(&first, &id, org, &before, &after);
            check_answer(&again, &id, org, &before, &after);
        }
    }
});
