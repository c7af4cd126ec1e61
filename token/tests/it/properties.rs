//! Property tests of the token library: encodings round-trip, attenuation never
//! widens, any flipped byte breaks a token, and the verifier cache's prefix
//! binding (an entry answers only for the exact prefix it was verified with)
//! holds against forged tails.
//!
//! Generated tokens are realistic: Tally identifiers (sometimes foreign ones),
//! up to 8 caveats of the language drawn from small alphabets (plus sometimes
//! arbitrary bytes), up to two third-party caveats with discharges. Requests
//! draw from the same alphabets so that caveats often hold:
//! `generators_accept_often` checks that the properties are not vacuous.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use tally_token::{
    Bundle, Caveat, CompiledCaveats, Context, DecodedBundle, KeyId, Limits, Macaroon, PrefixKey, RootKey, Signature,
    TallyId, continue_chain, evaluate, format_rfc3339, prefix_keys, verify_with_key,
};

const SECOND: i128 = 1_000_000_000;
const HOUR: i128 = 3600 * SECOND;
/// Requests happen around 2030-01-01T00:00:00Z (unix nanoseconds).
const NOW: i128 = 1_893_456_000 * SECOND;

const ORGS: &[&str] = &["acme", "globex"];
const ACTIONS: &[&str] = &["read", "write", "list"];
const GLOBS: &[&str] = &["*", "apps/*", "apps/web*", "apps/web/*", "apps/?eb/x", "apps/db/*"];
const RESOURCES: &[&str] = &["apps/web/x", "apps/web/y/z", "apps/db/t", "apps/web"];
const SERVICES: &[&str] = &["web", "api"];
const SUBJECTS: &[&str] = &["alice", "bob"];
const ROLES: &[&str] = &["operator", "verifier"];
const CIDRS: &[&str] = &["10.0.0.0/8", "10.1.0.0/16", "192.168.1.0/24", "0.0.0.0/0", "2001:db8::/32", "10.1.2.3"];
const IPS: &[&str] = &["10.1.2.3", "10.9.9.9", "192.168.1.7", "2001:db8::1"];
/// `""` is in the list on purpose: an empty location means none.
const LOCATIONS: &[&str] = &["https://tally.example", "https://idp.example", "x", ""];
/// Instants in caveats, relative to `NOW`; requests are at `NOW` ± 2h. Most hold.
const EXPIRES_OFFSETS: &[i128] = &[-HOUR, HOUR, 24 * HOUR, 240 * HOUR];
const NOT_BEFORE_OFFSETS: &[i128] = &[-240 * HOUR, -24 * HOUR, -HOUR, HOUR];
const REQUEST_OFFSETS: &[i128] = &[-2 * HOUR, 0, 2 * HOUR];

// --- generators --------------------------------------------------------------

/// A valid predicate of the caveat language.
fn predicate() -> impl Strategy<Value = String> {
    let instant = |offsets| select(offsets).prop_map(|o| format_rfc3339(NOW + o));
    prop_oneof![
        3 => select(ORGS).prop_map(|o| format!("org = {o}")),
        3 => subsequence(ACTIONS, 2..=3).prop_map(|a| format!("action in {}", a.join(","))),
        3 => select(GLOBS).prop_map(|g| format!("resource = {g}")),
        3 => select(SERVICES).prop_map(|s| format!("service = {s}")),
        3 => select(SUBJECTS).prop_map(|s| format!("subject = {s}")),
        3 => subsequence(CIDRS, 1..=3).prop_map(|c| format!("client-ip in {}", c.join(","))),
        3 => instant(EXPIRES_OFFSETS).prop_map(|t| format!("expires < {t}")),
        3 => instant(NOT_BEFORE_OFFSETS).prop_map(|t| format!("not-before > {t}")),
        1 => select(ROLES).prop_map(|r| format!("role = {r}")),
    ]
}

/// Arbitrary bytes: rarely a predicate, often not even UTF-8.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..24)
}

/// A first-party caveat: mostly valid predicates, sometimes garbage.
fn caveat() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![30 => predicate().prop_map(String::into_bytes), 1 => garbage()]
}

/// 0 to 8 caveats, fewer more often (each one may deny).
fn caveats() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![2 => prop::collection::vec(caveat(), 0..=3), 1 => prop::collection::vec(caveat(), 4..=8)]
}

fn location(with_locations: bool) -> BoxedStrategy<Option<String>> {
    if with_locations { prop::option::of(select(LOCATIONS).prop_map(String::from)).boxed() } else { Just(None).boxed() }
}

fn tally_id() -> impl Strategy<Value = TallyId> {
    (0u64..300, any::<[u8; 16]>()).prop_map(|(k, nonce)| TallyId::new(KeyId(k), nonce))
}

/// The inputs of a token and its discharges (kept as inputs so tests can
/// attenuate and re-bind, as a holder would).
#[derive(Debug, Clone)]
struct Spec {
    root_key: [u8; 32],
    identifier: Vec<u8>,
    location: Option<String>,
    caveats: Vec<Vec<u8>>,
    third_party: Vec<ThirdParty>,
}

#[derive(Debug, Clone)]
struct ThirdParty {
    key: [u8; 32],
    location: Option<String>,
    nonce: [u8; 24],
    /// Where it goes among the first-party caveats.
    position: Index,
    /// The first-party caveats of its discharge.
    discharge_caveats: Vec<Vec<u8>>,
}

/// A minted token and its discharges, not yet bound.
#[derive(Debug, Clone)]
struct Minted {
    root: Macaroon,
    discharges: Vec<Macaroon>,
}

impl Minted {
    fn bundle(&self) -> Bundle {
        Bundle { root: self.root.clone(), discharges: self.discharges.iter().map(|d| self.root.bind(d)).collect() }
    }
}

fn spec(with_locations: bool) -> impl Strategy<Value = Spec> {
    let identifier = prop_oneof![
        9 => tally_id().prop_map(|id| id.encode()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ];
    let third_party = (
        any::<[u8; 32]>(),
        location(with_locations),
        any::<[u8; 24]>(),
        any::<Index>(),
        prop::collection::vec(caveat(), 0..=3),
    )
        .prop_map(|(key, location, nonce, position, discharge_caveats)| ThirdParty {
            key,
            location,
            nonce,
            position,
            discharge_caveats,
        });
    (any::<[u8; 32]>(), identifier, location(with_locations), caveats(), prop::collection::vec(third_party, 0..=2))
        .prop_map(|(root_key, identifier, location, caveats, third_party)| Spec {
            root_key,
            identifier,
            location,
            caveats,
            third_party,
        })
}

impl Spec {
    fn root_key(&self) -> RootKey {
        RootKey::from_bytes(self.root_key)
    }

    fn mint(&self) -> Minted {
        let mut root = Macaroon::mint(&self.root_key(), self.identifier.clone(), self.location.clone());
        let mut discharges = Vec::new();
        for i in 0..=self.caveats.len() {
            for (n, tp) in self.third_party.iter().enumerate() {
                if tp.position.index(self.caveats.len() + 1) != i {
                    continue;
                }
                // Distinct caveat ids: a discharge is matched to its caveat by id.
                let cid = format!("cav-{n}");
                let key = RootKey::from_bytes(tp.key);
                root.add_third_party(tp.location.clone(), &key, cid.clone(), tp.nonce);
                let mut discharge = Macaroon::mint(&key, cid, tp.location.clone());
                for c in &tp.discharge_caveats {
                    discharge.add_first_party(c.clone());
                }
                discharges.push(discharge);
            }
            if let Some(c) = self.caveats.get(i) {
                root.add_first_party(c.clone());
            }
        }
        Minted { root, discharges }
    }
}

/// A request; `None` fields are not supplied by it.
#[derive(Debug, Clone)]
struct Request {
    now: i128,
    action: Option<&'static str>,
    resource: Option<&'static str>,
    service: Option<&'static str>,
    subject: Option<&'static str>,
    org: Option<&'static str>,
    role: Option<&'static str>,
    client_ip: Option<IpAddr>,
}

impl Request {
    fn context(&self) -> Context<'static> {
        let mut ctx = Context::at(UNIX_EPOCH);
        ctx.now_unix_nanos = self.now;
        ctx.action = self.action;
        ctx.resource = self.resource;
        ctx.service = self.service;
        ctx.subject = self.subject;
        ctx.org = self.org;
        ctx.role = self.role;
        ctx.client_ip = self.client_ip;
        ctx
    }
}

fn request() -> impl Strategy<Value = Request> {
    let often = |values: &'static [&'static str]| prop::option::weighted(0.95, select(values));
    let rarely = |values: &'static [&'static str]| prop::option::weighted(0.3, select(values));
    (
        select(REQUEST_OFFSETS).prop_map(|o| NOW + o),
        (often(ACTIONS), often(RESOURCES), often(SERVICES)),
        (rarely(SUBJECTS), rarely(ORGS), often(ROLES)),
        often(IPS).prop_map(|ip| ip.map(|ip| ip.parse::<IpAddr>().expect("valid test address"))),
    )
        .prop_map(|(now, (action, resource, service), (subject, org, role), client_ip)| Request {
            now,
            action,
            resource,
            service,
            subject,
            org,
            role,
            client_ip,
        })
}

// --- helpers ---------------------------------------------------------------

fn verifies(bundle: &Bundle, key: &RootKey) -> bool {
    verify_with_key(bundle, &key.derive(), &Limits::default()).is_ok()
}

/// What a verifier answers: the chain holds and every first-party caveat holds.
fn accepted(bundle: &Bundle, key: &RootKey, ctx: &Context<'_>) -> bool {
    verify_with_key(bundle, &key.derive(), &Limits::default())
        .is_ok_and(|v| evaluate(v.first_party.iter().copied(), ctx).is_ok())
}

// --- 1. encodings round-trip ---------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// V2 binary and text forms of every macaroon, and the bundle text, decode
    /// to what was encoded; the V2 encoding is canonical.
    #[test]
    fn encodings_round_trip(spec in spec(true)) {
        let bundle = spec.mint().bundle();
        let limits = Limits::default();
        for m in std::iter::once(&bundle.root).chain(&bundle.discharges) {
            let bytes = m.encode_v2();
            let decoded = Macaroon::decode_v2(&bytes, &limits);
            prop_assert_eq!(decoded.as_ref(), Ok(m));
            prop_assert_eq!(decoded.map(|d| d.encode_v2()), Ok(bytes));
            prop_assert_eq!(Macaroon::from_text(&m.to_text(), &limits), Ok(m.clone()));
        }
        // The borrowed path, into a buffer that held something else before
        // (a failed decode, then a longer bundle), views the same bundle.
        let text = bundle.to_text();
        let mut reused = DecodedBundle::default();
        prop_assert!(reused.decode_into("tly_!not base64!", &limits).is_err());
        prop_assert!(reused.view(&limits).is_err(), "a failed decode leaves nothing to view");
        let _ = reused.decode_into(&format!("{text},{text}"), &limits);
        prop_assert_eq!(reused.decode_into(&text, &limits), Ok(()));
        prop_assert_eq!(reused.view(&limits), Ok(bundle.view()));
        prop_assert_eq!(Bundle::parse(&text, &limits), Ok(bundle));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Caveats compiled once (the verifier's token memo keeps them so)
    /// evaluate exactly as the raw caveats do, for any request: same claims,
    /// same denial, same caveat reported.
    #[test]
    fn compiled_caveats_evaluate_as_raw_ones(caveats in caveats(), req in request()) {
        let ctx = req.context();
        let compiled = CompiledCaveats::compile(caveats.iter().map(Vec::as_slice));
        prop_assert_eq!(compiled.evaluate(&ctx), evaluate(caveats.iter().map(Vec::as_slice), &ctx));
    }
}

// --- 2. attenuation never widens -------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Appending a caveat X (valid or garbage) to the token or to a discharge,
    /// then re-binding as a holder does: if the narrower bundle is accepted for
    /// a request, the original is too.
    #[test]
    fn attenuation_never_widens(
        spec in spec(true),
        request in request(),
        extra in prop_oneof![4 => predicate().prop_map(String::into_bytes), 1 => garbage()],
        on_discharge in any::<bool>(),
    ) {
        let key = spec.root_key();
        let ctx = request.context();
        let wide = spec.mint();
        let mut narrow = wide.clone();
        match (on_discharge, narrow.discharges.first_mut()) {
            (true, Some(discharge)) => discharge.add_first_party(extra),
            _ => narrow.root.add_first_party(extra),
        }
        let (wide, narrow) = (wide.bundle(), narrow.bundle());
        // Both are genuine: attenuation by a holder needs no key.
        prop_assert!(verifies(&wide, &key));
        prop_assert!(verifies(&narrow, &key));
        if accepted(&narrow, &key, &ctx) {
            prop_assert!(accepted(&wide, &key, &ctx), "T+X accepted but T denied for {:?}", request);
        }
    }
}

// --- 3. any flipped byte breaks the token ----------------------------------------

/// A byte mask: single bits often, any non-zero pattern otherwise.
fn flip_mask() -> impl Strategy<Value = u8> {
    prop_oneof![(0..8u32).prop_map(|bit| 1u8 << bit), 1u8..=255]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every byte of the V2 encoding of the token and of each bound discharge,
    /// xored with a non-zero mask, makes decoding or verification fail.
    ///
    /// The tokens carry no location hints: libmacaroons does not cover
    /// locations by the signature (they are hints), so flipping a byte of one
    /// legitimately leaves the token valid.
    #[test]
    fn any_flipped_byte_breaks_the_token(spec in spec(false), mask in flip_mask()) {
        let key = spec.root_key().derive();
        let limits = Limits::default();
        let bundle = spec.mint().bundle();
        prop_assert!(verify_with_key(&bundle, &key, &limits).is_ok());
        // Part 0 is the token, part i the discharge i - 1.
        for part in 0..=bundle.discharges.len() {
            let bytes = if part == 0 { &bundle.root } else { &bundle.discharges[part - 1] }.encode_v2();
            for i in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[i] ^= mask;
                let Ok(m) = Macaroon::decode_v2(&flipped, &limits) else { continue };
                let mut tampered = bundle.clone();
                *(if part == 0 { &mut tampered.root } else { &mut tampered.discharges[part - 1] }) = m;
                prop_assert!(
                    verify_with_key(&tampered, &key, &limits).is_err(),
                    "part {} byte {} xor {:#04x} still verifies", part, i, mask
                );
            }
        }
    }
}

// --- 4. prefix binding of the verifier's cache -------------------------------------

/// The verifier's cache: prefix key of (identifier, first k caveats) to the
/// genuine chain signature after those k caveats.
type Cache = HashMap<PrefixKey, Signature>;

/// The verifier's algorithm for a descendant of a cached token: find the longest cached prefix of the presented token, continue
/// the chain from its signature over the remaining caveats, compare with the
/// presented signature. A miss would go to the authority; here it is `false`.
fn cache_accepts(cache: &Cache, token: &Macaroon) -> bool {
    let keys = prefix_keys(token.identifier(), token.caveats());
    let Some(j) = (0..keys.len()).rev().find(|&j| cache.contains_key(&keys[j])) else { return false };
    continue_chain(&cache[&keys[j]], &token.caveats()[j..]) == *token.signature()
}

/// How an attacker rewrites the first k caveats of a cached token (or its identifier).
#[derive(Debug, Clone)]
enum Tamper {
    Change(Index, Vec<u8>),
    Drop(Index),
    Swap(Index, Index),
    /// Before one of the first k caveats: inserting after them all would make a genuine descendant.
    Insert(Index, Vec<u8>),
    /// Same caveats under another family's identifier.
    Family([u8; 16]),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<Index>(), caveat()).prop_map(|(i, c)| Tamper::Change(i, c)),
        any::<Index>().prop_map(Tamper::Drop),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Tamper::Swap(a, b)),
        (any::<Index>(), caveat()).prop_map(|(i, c)| Tamper::Insert(i, c)),
        any::<[u8; 16]>().prop_map(Tamper::Family),
    ]
}

impl Tamper {
    /// Applies to `prefix` (non-empty) of a token with identifier `id`.
    fn apply(&self, id: TallyId, prefix: &[Caveat]) -> (TallyId, Vec<Caveat>) {
        let mut caveats = prefix.to_vec();
        let mut id = id;
        let n = caveats.len();
        match self {
            Tamper::Change(i, c) => caveats[i.index(n)] = Caveat::first_party(c.clone()),
            Tamper::Drop(i) => {
                caveats.remove(i.index(n));
            }
            Tamper::Swap(a, b) => caveats.swap(a.index(n), b.index(n)),
            Tamper::Insert(i, c) => caveats.insert(i.index(n), Caveat::first_party(c.clone())),
            Tamper::Family(nonce) => id = TallyId::new(id.key_id, *nonce),
        }
        (id, caveats)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A forged token whose first k caveats differ from a cached token's, with
    /// its tail continued from the cached signature after k, misses or fails
    /// the cache; a genuine descendant of the same first k caveats is accepted.
    #[test]
    fn cache_prefix_binding(
        root_key in any::<[u8; 32]>(),
        id in tally_id(),
        genuine in prop::collection::vec(caveat(), 1..=8),
        k in any::<Index>(),
        tamper in tamper(),
        forged_extra in prop::collection::vec(caveat(), 0..=3),
        descendant_extra in prop::collection::vec(caveat(), 0..=3),
    ) {
        let root_key = RootKey::from_bytes(root_key);
        let key = root_key.derive();
        let limits = Limits::default();
        let mint = |id: TallyId, caveats: &[Vec<u8>]| {
            let mut m = Macaroon::mint(&root_key, id.encode(), None);
            for c in caveats {
                m.add_first_party(c.clone());
            }
            m
        };

        // The authority verified the genuine token; the verifier caches every prefix of it.
        let token = mint(id, &genuine);
        let bundle = Bundle::single(token.clone());
        let chain = verify_with_key(&bundle, &key, &limits).expect("genuine").chain;
        let cache: Cache = prefix_keys(token.identifier(), token.caveats()).into_iter().zip(chain.clone()).collect();

        // The attacker rewrites the first k caveats, keeps the rest, appends more,
        // and continues the chain from the cached signature after k.
        let k = k.index(genuine.len()) + 1;
        let (forged_id, forged_prefix) = tamper.apply(id, &token.caveats()[..k]);
        prop_assume!(forged_id != id || forged_prefix != token.caveats()[..k], "the tamper changed nothing");
        let tail: Vec<Caveat> =
            token.caveats()[k..].iter().cloned().chain(forged_extra.iter().map(|c| Caveat::first_party(c.as_slice()))).collect();
        let forged_caveats = [forged_prefix.clone(), tail.clone()].concat();
        let forged = Macaroon::from_parts(None, forged_id.encode(), forged_caveats.clone(), continue_chain(&chain[k], &tail));
        prop_assert!(verify_with_key(&Bundle::single(forged.clone()), &key, &limits).is_err(), "not a forgery");
        prop_assert!(!cache_accepts(&cache, &forged), "forged token accepted ({:?}, k = {})", tamper, k);

        // Whatever cached signature and split point the attacker picks, the
        // cache agrees with full verification under the root key.
        for (from, sig) in chain.iter().enumerate() {
            for at in 0..=forged_caveats.len() {
                let t = Macaroon::from_parts(None, forged_id.encode(), forged_caveats.clone(), continue_chain(sig, &forged_caveats[at..]));
                let valid = verify_with_key(&Bundle::single(t.clone()), &key, &limits).is_ok();
                prop_assert_eq!(cache_accepts(&cache, &t), valid, "from {} at {}", from, at);
            }
        }

        // A genuine descendant: the same first k caveats, then its own.
        let mut descendant = mint(id, &genuine[..k]);
        for c in &descendant_extra {
            descendant.add_first_party(c.clone());
        }
        prop_assert!(cache_accepts(&cache, &descendant), "genuine descendant rejected (k = {})", k);
    }
}

// --- the generators are not vacuous ------------------------------------------------

/// A good share of generated (token, request) pairs is accepted, and of
/// attenuated ones too, so `attenuation_never_widens` tests something.
#[test]
fn generators_accept_often() {
    const N: usize = 2000;
    let mut runner = TestRunner::deterministic();
    let strategy = (spec(true), request(), caveat());
    let (mut wide, mut narrow, mut with_discharges) = (0, 0, 0);
    for _ in 0..N {
        let (spec, request, extra) = strategy.new_tree(&mut runner).expect("generate").current();
        let (key, ctx) = (spec.root_key(), request.context());
        let mut minted = spec.mint();
        if accepted(&minted.bundle(), &key, &ctx) {
            wide += 1;
            with_discharges += usize::from(!minted.discharges.is_empty());
        }
        minted.root.add_first_party(extra);
        narrow += usize::from(accepted(&minted.bundle(), &key, &ctx));
    }
    println!("accepted: {wide}/{N} tokens ({with_discharges} with discharges), {narrow}/{N} attenuated");
    assert!(wide * 5 >= N, "only {wide}/{N} generated tokens are accepted");
    assert!(narrow * 8 >= N, "only {narrow}/{N} attenuated tokens are accepted");
    assert!(with_discharges * 20 >= N, "only {with_discharges}/{N} accepted tokens have discharges");
}
