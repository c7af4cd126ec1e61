//! `cargo xtask golden`: the token golden vectors. The case inputs live here;
//! their outputs are computed with tally-token and written to
//! `token/golden/vectors.json`, or compared with it (`--check`).
//! `token/tests/it/golden.rs` recomputes them on its own on every `cargo test`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use anyhow::{Context as _, anyhow, bail};
use serde::Serialize;
use tally_token::{
    Bundle, Context, KeyId, Limits, Macaroon, Predicate, RootKey, SECRETBOX_NONCE_LEN, TallyId, evaluate, prefix_keys,
    verify_with_key,
};

// TEST keys, public on purpose (see token/golden/README.md).
const ROOT_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const IDP_KEY: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const MFA_KEY: &str = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
const NONCE: &str = "101112131415161718191a1b1c1d1e1f";
const IDP_BOX_NONCE: &str = "404142434445464748494a4b4c4d4e4f5051525354555657";
const MFA_BOX_NONCE: &str = "606162636465666768696a6b6c6d6e6f7071727374757677";
const LOCATION: Option<&str> = Some("https://tally.example");
const IDP: Option<&str> = Some("https://idp.example");
const NOW: &str = "2030-01-01T00:00:00Z";

/// One vector: what goes in and what comes out.
#[derive(Debug, Serialize)]
struct Case {
    name: &'static str,
    about: &'static str,
    inputs: Inputs,
    outputs: Outputs,
}

#[derive(Debug, Serialize)]
struct Inputs {
    root_key: &'static str,
    identifier: Identifier,
    location: Option<&'static str>,
    caveats: Vec<Caveat>,
    /// Each is minted under the key of the third-party caveat with its `cid`, then bound to the token.
    discharges: Vec<Discharge>,
    requests: Vec<Request>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Identifier {
    /// `TallyId::new(KeyId(key_id), nonce).encode()`.
    Tally { key_id: u64, nonce: &'static str },
    /// These UTF-8 bytes, as another library would mint.
    Foreign(&'static str),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Caveat {
    FirstParty(&'static str),
    ThirdParty { key: &'static str, cid: &'static str, location: Option<&'static str>, nonce: &'static str },
}

#[derive(Debug, Serialize)]
struct Discharge {
    cid: &'static str,
    location: Option<&'static str>,
    caveats: Vec<Caveat>,
}

/// A request context; absent fields are not supplied. Skew is the library default.
#[derive(Debug, Default, Serialize)]
struct Request {
    now: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Outputs {
    token: String,
    /// Bound discharges, in input order.
    discharges: Vec<String>,
    bundle: String,
    signature: String,
    /// Element k: prefix key of the identifier and the first k caveats.
    prefix_keys: Vec<String>,
    /// Family nonce, then the branch id of each chain position; none for a foreign identifier.
    revocation_ids: Vec<String>,
    /// One per request: `allowed` or `denied: <denial>`.
    outcomes: Vec<String>,
}

fn first(text: &'static str) -> Caveat {
    Caveat::FirstParty(text)
}

fn tally(key_id: u64) -> Identifier {
    Identifier::Tally { key_id, nonce: NONCE }
}

fn at_now() -> Request {
    Request { now: NOW, ..Request::default() }
}

/// The cases: every kind of token the format has.
fn inputs() -> Vec<(&'static str, &'static str, Inputs)> {
    let plain = |identifier, location, caveats, requests| Inputs {
        root_key: ROOT_KEY,
        identifier,
        location,
        caveats,
        discharges: vec![],
        requests,
    };
    let web_read = || Request {
        action: Some("read"),
        resource: Some("apps/web/index.html"),
        service: Some("web"),
        org: Some("acme"),
        ..at_now()
    };
    let everything = || Request {
        action: Some("read"),
        resource: Some("apps/web/x"),
        service: Some("web"),
        subject: Some("alice"),
        client_ip: Some("10.1.2.3"),
        org: Some("acme"),
        role: Some("operator"),
        ..at_now()
    };
    let idp = |cid| Caveat::ThirdParty { key: IDP_KEY, cid, location: IDP, nonce: IDP_BOX_NONCE };
    vec![
        ("bare", "No location, no caveats: the signature is HMAC(derived root key, identifier).", {
            plain(tally(1), None, vec![], vec![at_now()])
        }),
        ("location", "As `bare` with a location hint: same signature, the location is not signed.", {
            plain(tally(1), LOCATION, vec![], vec![at_now()])
        }),
        ("five-caveats", "A typical service token; allowed for a read, denied for a write.", {
            let caveats = vec![
                first("org = acme"),
                first("action in read,list"),
                first("resource = apps/web/*"),
                first("service = web"),
                first("expires < 2100-01-01T00:00:00Z"),
            ];
            plain(tally(7), LOCATION, caveats, vec![web_read(), Request { action: Some("write"), ..web_read() }])
        }),
        ("every-caveat-kind", "Every predicate of the language; key id 300 takes two LEB128 bytes.", {
            let caveats = vec![
                first("org = acme"),
                first("expires < 2031-01-01T00:00:00Z"),
                first("not-before > 2029-01-01T00:00:00Z"),
                first("action in read,write"),
                first("resource = apps/web/*"),
                first("service = web"),
                first("subject = alice"),
                first("client-ip in 10.0.0.0/8,2001:db8::/32"),
                first("role = operator"),
            ];
            let requests = vec![
                everything(),
                Request { client_ip: Some("192.168.1.7"), ..everything() },
                Request { now: "2031-06-01T00:00:00Z", ..everything() },
                Request { now: "2028-06-01T00:00:00Z", ..everything() },
            ];
            plain(tally(300), LOCATION, caveats, requests)
        }),
        ("unknown-caveat", "A caveat outside the language is unsatisfied, never ignored.", {
            let requests = vec![Request { service: Some("web"), ..at_now() }];
            plain(tally(7), None, vec![first("service = web"), first("colour = blue")], requests)
        }),
        ("third-party", "A third-party caveat and its bound discharge, whose caveats are evaluated too.", {
            let alice = || Request { subject: Some("alice"), ..web_read() };
            Inputs {
                caveats: vec![first("org = acme"), idp("login:alice"), first("action in read")],
                discharges: vec![Discharge {
                    cid: "login:alice",
                    location: IDP,
                    caveats: vec![first("subject = alice"), first("expires < 2030-01-02T00:00:00Z")],
                }],
                ..plain(tally(7), LOCATION, vec![], vec![alice(), Request { subject: Some("bob"), ..alice() }])
            }
        }),
        (
            "nested-discharge",
            "The discharge has a third-party caveat of its own; both discharges bind to the token.",
            {
                let mfa = Caveat::ThirdParty { key: MFA_KEY, cid: "mfa:alice", location: None, nonce: MFA_BOX_NONCE };
                let office = || Request { service: Some("web"), client_ip: Some("10.1.2.3"), ..at_now() };
                Inputs {
                    caveats: vec![first("service = web"), idp("login:alice")],
                    discharges: vec![
                        Discharge { cid: "login:alice", location: IDP, caveats: vec![first("subject = alice"), mfa] },
                        Discharge { cid: "mfa:alice", location: None, caveats: vec![first("client-ip in 10.0.0.0/8")] },
                    ],
                    ..plain(
                        tally(7),
                        LOCATION,
                        vec![],
                        vec![office(), Request { client_ip: Some("192.168.1.7"), ..office() }],
                    )
                }
            },
        ),
        ("foreign-identifier", "A macaroon minted elsewhere: verified with an explicit key, no revocation ids.", {
            Inputs {
                root_key: IDP_KEY,
                ..plain(
                    Identifier::Foreign("we used our other secret key"),
                    Some("http://mybank/"),
                    vec![first("action in read")],
                    vec![Request { action: Some("read"), ..at_now() }],
                )
            }
        }),
    ]
}

fn compute(inputs: &Inputs) -> anyhow::Result<Outputs> {
    let root_key = RootKey::from_hex(inputs.root_key)?;
    let identifier = match inputs.identifier {
        Identifier::Tally { key_id, nonce } => TallyId::new(KeyId(key_id), unhex(nonce)?).encode(),
        Identifier::Foreign(text) => text.as_bytes().to_vec(),
    };
    let mut root = Macaroon::mint(&root_key, identifier, inputs.location.map(String::from));
    add_caveats(&mut root, &inputs.caveats)?;

    // A discharge is minted under the key its third-party caveat shares with the third party.
    let all_caveats = inputs.caveats.iter().chain(inputs.discharges.iter().flat_map(|d| &d.caveats));
    let keys: HashMap<&str, &str> = all_caveats
        .filter_map(|c| match c {
            Caveat::ThirdParty { key, cid, .. } => Some((*cid, *key)),
            Caveat::FirstParty(_) => None,
        })
        .collect();
    let mut discharges = Vec::new();
    for d in &inputs.discharges {
        let key = keys.get(d.cid).ok_or_else(|| anyhow!("no third-party caveat has cid {:?}", d.cid))?;
        let mut discharge = Macaroon::mint(&RootKey::from_hex(key)?, d.cid, d.location.map(String::from));
        add_caveats(&mut discharge, &d.caveats)?;
        discharges.push(root.bind(&discharge));
    }
    let bundle = Bundle { root, discharges };

    let verified = verify_with_key(&bundle, &root_key.derive(), &Limits::default()).context("verify")?;
    let outcomes = inputs
        .requests
        .iter()
        .map(|r| {
            let (action, resource, service, subject) = (r.action, r.resource, r.service, r.subject);
            let client_ip = r.client_ip.map(str::parse::<IpAddr>).transpose()?;
            let ctx = Context {
                now_unix_nanos: parse_instant(r.now)?,
                action,
                resource,
                service,
                subject,
                client_ip,
                org: r.org,
                role: r.role,
                ..Context::at(UNIX_EPOCH)
            };
            Ok(match evaluate(verified.first_party.iter().copied(), &ctx) {
                Ok(_) => "allowed".to_owned(),
                Err(denial) => format!("denied: {denial}"),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Outputs {
        token: bundle.root.to_text(),
        discharges: bundle.discharges.iter().map(Macaroon::to_text).collect(),
        bundle: bundle.to_text(),
        signature: hex::encode(bundle.root.signature().as_bytes()),
        prefix_keys: prefix_keys(bundle.root.identifier(), bundle.root.caveats())
            .iter()
            .map(|k| hex::encode(k.0))
            .collect(),
        revocation_ids: verified.revocation_ids().iter().map(|id| hex::encode(id.bytes())).collect(),
        outcomes,
    })
}

fn add_caveats(m: &mut Macaroon, caveats: &[Caveat]) -> anyhow::Result<()> {
    for c in caveats {
        match c {
            Caveat::FirstParty(text) => m.add_first_party(*text),
            Caveat::ThirdParty { key, cid, location, nonce } => {
                let nonce: [u8; SECRETBOX_NONCE_LEN] = unhex(nonce)?;
                m.add_third_party(location.map(String::from), &RootKey::from_hex(key)?, *cid, nonce);
            }
        }
    }
    Ok(())
}

fn unhex<const N: usize>(text: &str) -> anyhow::Result<[u8; N]> {
    hex::decode(text)?.try_into().map_err(|_| anyhow!("{text:?} is not {N} bytes of hex"))
}

/// RFC 3339 to unix nanoseconds, with the parser the caveat language uses.
fn parse_instant(text: &str) -> anyhow::Result<i128> {
    match Predicate::parse(&format!("expires < {text}")) {
        Ok(Predicate::Expires(nanos)) => Ok(nanos),
        _ => bail!("{text:?} is not an RFC 3339 instant"),
    }
}

fn vectors_path() -> PathBuf {
    crate::workspace_root().join("token/golden/vectors.json")
}

pub(crate) fn run(check: bool) -> anyhow::Result<()> {
    let cases = inputs()
        .into_iter()
        .map(|(name, about, inputs)| {
            let outputs = compute(&inputs).with_context(|| format!("golden case `{name}`"))?;
            Ok(Case { name, about, inputs, outputs })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text = serde_json::to_string_pretty(&cases)? + "\n";
    let path = vectors_path();
    if !check {
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} golden cases to {}", cases.len(), path.display());
        return Ok(());
    }
    let committed = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run `cargo xtask golden` to create it)", path.display()))?;
    if committed == text {
        println!("{} golden cases in {} are up to date", cases.len(), path.display());
        return Ok(());
    }
    bail!(
        "{} is stale: {}; run `cargo xtask golden` and review the diff",
        path.display(),
        first_difference(&cases, &committed)
    )
}

/// Names the first case that differs between what the library computes and the committed file.
fn first_difference(cases: &[Case], committed: &str) -> String {
    let Ok(committed) = serde_json::from_str::<Vec<serde_json::Value>>(committed) else {
        return "the committed file is not a JSON list of cases".into();
    };
    for (i, case) in cases.iter().enumerate() {
        let Some(old) = committed.get(i) else { return format!("case `{}` is missing", case.name) };
        let new = serde_json::to_value(case).expect("cases serialise");
        if *old != new {
            let part =
                ["name", "about", "inputs", "outputs"].into_iter().find(|k| old[k] != new[k]).unwrap_or("layout");
            return format!("case `{}` differs (in its {part})", case.name);
        }
    }
    if committed.len() > cases.len() {
        return format!(
            "{} extra case(s) after `{}`",
            committed.len() - cases.len(),
            cases.last().map_or("", |c| c.name)
        );
    }
    "same cases, different formatting".into()
}
