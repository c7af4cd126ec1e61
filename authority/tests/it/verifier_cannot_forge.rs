//! Property: whatever a verifier learns from Verify, it cannot
//! build a token the authority accepts unless that token is an attenuation
//! of the minted form of a token presented to it. Random tokens are minted
//! (user tokens of two orgs and Tally's own API tokens), holders attenuate
//! them, a verifier presents a random sequence of them to the real authority
//! (a real SQLite file) and keeps every signature handed back, at the
//! position Verify says it holds, plus the presented tokens themselves. The
//! attacker then continues chains from every signature it knows: at the
//! right position and at every other position a signature could be passed
//! off for, under the right identifier and under another family's, with
//! extra caveats that would widen (`role = operator`, more actions) or none.
//! Every candidate the authority accepts must start with its family's minted
//! caveats.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use tally_authority::{Authority, Kek, MintSpec, Reason, Settings, SystemClock};
use tally_token::{Caveat, Limits, Macaroon, Signature, continue_chain};

/// One authority for every case (minting is what the cases vary).
struct Fixture {
    rt: tokio::runtime::Runtime,
    authority: Arc<Authority>,
    bootstrap: String,
    verifier: String,
    _db: tally_tests::TestDb,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = tally_tests::TestDb::new(dir.path());
        let kek = || Kek::from_hex(&"6b".repeat(32)).unwrap();
        let (authority, bootstrap, verifier) = rt.block_on(async {
            let bootstrap = Authority::init(db.authority_db(), kek(), Arc::new(SystemClock)).await.unwrap();
            let authority =
                Authority::open(db.authority_db(), kek(), Arc::new(SystemClock), Settings::default()).await.unwrap();
            for org in ["acme", "beta"] {
                authority.create_org(Some(&bootstrap), org).await.unwrap();
            }
            let spec =
                MintSpec { org: "system".into(), caveats: vec!["role = verifier".into()], ..MintSpec::default() };
            let verifier = authority.mint(Some(&bootstrap), spec).await.unwrap().token;
            (authority, bootstrap, verifier)
        });
        Fixture { rt, authority, bootstrap, verifier, _db: db, _dir: dir }
    })
}

/// Caveats a mint or a holder may add.
fn caveat() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("action in read".to_owned()),
        Just("action in read,write".to_owned()),
        Just("resource = apps/*".to_owned()),
        Just("resource = apps/web/*".to_owned()),
        Just("service = web".to_owned()),
        Just("client-ip in 10.0.0.0/8".to_owned()),
    ]
}

/// Caveats an attacker appends: attenuations, and claims it would like to hold.
fn extra() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![Just("role = operator".to_owned()), Just("action in read,write,delete".to_owned()), caveat()],
        0..3,
    )
}

/// A token to mint: its org (`system` for an API token) and caveats, then
/// the attenuations its holders make (each adds caveats to the one before).
#[derive(Debug, Clone)]
struct Minting {
    org: &'static str,
    caveats: Vec<String>,
    attenuations: Vec<Vec<String>>,
}

fn minting() -> impl Strategy<Value = Minting> {
    (
        prop_oneof![Just("acme"), Just("beta"), Just("system")],
        prop::collection::vec(caveat(), 0..3),
        prop::collection::vec(prop::collection::vec(caveat(), 1..3), 0..3),
    )
        .prop_map(|(org, caveats, attenuations)| Minting { org, caveats, attenuations })
}

/// What the verifier can know: the identifier, the caveats up to a
/// position, and the signature there.
#[derive(Debug, Clone)]
struct Known {
    identifier: Vec<u8>,
    caveats: Vec<Caveat>,
    sig: Signature,
}

/// An attack: a known signature (by index), passed off as the chain value
/// after `claim` caveats of its token under the identifier of token
/// `identifier_of`, continued with `extra`.
#[derive(Debug, Clone)]
struct Attempt {
    known: prop::sample::Index,
    claim: prop::sample::Index,
    identifier_of: prop::sample::Index,
    extra: Vec<String>,
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<prop::sample::Index>(), extra())
        .prop_map(|(known, claim, identifier_of, extra)| Attempt { known, claim, identifier_of, extra })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn only_attenuations_of_minted_tokens_verify(
        mintings in prop::collection::vec(minting(), 1..4),
        presented in prop::collection::vec(any::<prop::sample::Index>(), 1..8),
        attempts in prop::collection::vec(attempt(), 1..64),
    ) {
        let f = fixture();
        f.rt.block_on(async {
            // Mint, and let holders attenuate: (minted caveats, every token of the family).
            let mut families: Vec<(Macaroon, Vec<Macaroon>)> = Vec::new();
            for m in &mintings {
                let caveats = if m.org == "system" {
                    // API tokens carry their role; minting one is the operator's.
                    std::iter::once("role = verifier".to_owned()).chain(m.caveats.clone()).collect()
                } else {
                    m.caveats.clone()
                };
                let spec = MintSpec { org: m.org.into(), caveats, ..MintSpec::default() };
                let minted = f.authority.mint(Some(&f.bootstrap), spec).await.unwrap();
                let minted = Macaroon::from_text(&minted.token, &Limits::default()).unwrap();
                let mut tokens = vec![minted.clone()];
                for extra in &m.attenuations {
                    let mut t = tokens.last().unwrap().clone();
                    for c in extra {
                        t.add_first_party(c.as_bytes());
                    }
                    tokens.push(t);
                }
                families.push((minted, tokens));
            }
            let all: Vec<&Macaroon> = families.iter().flat_map(|(_, tokens)| tokens).collect();

            // The verifier presents tokens and keeps what comes back.
            let mut known: Vec<Known> = Vec::new();
            for i in &presented {
                let token = all[i.index(all.len())];
                known.push(Known {
                    identifier: token.identifier().to_vec(),
                    caveats: token.caveats().to_vec(),
                    sig: token.signature().clone(),
                });
                let v = f.authority.verify(Some(&f.verifier), &token.to_text()).await.unwrap();
                prop_assert_eq!(v.reason, Reason::Ok, "a genuine token verifies");
                if v.org.as_deref() == Some("system") {
                    prop_assert!(v.chain.is_empty(), "signatures of an API token were handed out");
                }
                for (i, sig) in v.chain.iter().enumerate() {
                    let k = v.chain_from + i;
                    known.push(Known {
                        identifier: token.identifier().to_vec(),
                        caveats: token.caveats()[..k].to_vec(),
                        sig: sig.clone(),
                    });
                }
            }

            // Continue chains from what is known, at right and wrong positions.
            for a in &attempts {
                let k = &known[a.known.index(known.len())];
                let claim = a.claim.index(k.caveats.len() + 1);
                let identifier = all[a.identifier_of.index(all.len())].identifier();
                let identifier = if a.identifier_of.index(2) == 0 { &k.identifier } else { identifier };
                let extra: Vec<Caveat> = a.extra.iter().map(|c| Caveat::first_party(c.as_bytes())).collect();
                let mut caveats = k.caveats[..claim].to_vec();
                caveats.extend_from_slice(&extra);
                let forged = Macaroon::from_parts(None, identifier.to_vec(), caveats, continue_chain(&k.sig, &extra));
                let v = f.authority.verify(Some(&f.verifier), &forged.to_text()).await.unwrap();
                if v.reason != Reason::Ok {
                    continue;
                }
                let (minted, _) = families
                    .iter()
                    .find(|(m, _)| m.identifier() == forged.identifier())
                    .expect("a token that verifies belongs to a family minted here");
                prop_assert!(
                    forged.caveats().starts_with(minted.caveats()),
                    "accepted a token that is no attenuation of its minted form: {:?} (minted with {:?})",
                    forged.caveats().iter().map(|c| String::from_utf8_lossy(&c.id).into_owned()).collect::<Vec<_>>(),
                    minted.caveats().iter().map(|c| String::from_utf8_lossy(&c.id).into_owned()).collect::<Vec<_>>(),
                );
            }
            Ok(())
        })?;
    }
}
