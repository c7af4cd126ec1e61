//! The golden vectors in `golden/vectors.json` against the library: every
//! output is recomputed from the recorded inputs, and every recorded text
//! decodes and verifies. Independent of `cargo xtask golden` (which writes the
//! file), so a change to the format fails `cargo test` too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use serde_json::{Value, json};
use tally_token::{
    Bundle, Context, KeyId, Limits, Macaroon, Predicate, RootKey, TallyId, evaluate, prefix_keys, verify_with_key,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/vectors.json");
const REGENERATE: &str = "if the change is intended, run `cargo xtask golden` and review the diff";

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("cannot read {VECTORS}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{VECTORS} is not a JSON list: {e}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, found {v}"))
}

fn list(v: &Value) -> &[Value] {
    v.as_array().unwrap_or_else(|| panic!("expected a list, found {v}"))
}

fn bytes<const N: usize>(v: &Value) -> [u8; N] {
    hex::decode(text(v)).expect("hex").try_into().unwrap_or_else(|_| panic!("{v} is not {N} bytes"))
}

fn key(v: &Value) -> RootKey {
    RootKey::from_hex(text(v)).expect("a 32-byte hex key")
}

/// Appends recorded caveats: `{"first_party": TEXT}` or `{"third_party": {key, cid, location, nonce}}`.
fn add_caveats(m: &mut Macaroon, caveats: &Value) {
    for c in list(caveats) {
        if let Some(predicate) = c.get("first_party") {
            m.add_first_party(text(predicate));
        } else {
            let tp = &c["third_party"];
            let location = tp["location"].as_str().map(String::from);
            m.add_third_party(location, &key(&tp["key"]), text(&tp["cid"]), bytes(&tp["nonce"]));
        }
    }
}

/// The bundle the inputs describe: discharges minted under the key of the
/// third-party caveat (of the token or another discharge) with their cid, bound to the token.
fn build(inputs: &Value) -> Bundle {
    let identifier = match (&inputs["identifier"]["tally"], &inputs["identifier"]["foreign"]) {
        (tally, Value::Null) => {
            TallyId::new(KeyId(tally["key_id"].as_u64().expect("key id")), bytes(&tally["nonce"])).encode()
        }
        (_, foreign) => text(foreign).as_bytes().to_vec(),
    };
    let mut root = Macaroon::mint(&key(&inputs["root_key"]), identifier, inputs["location"].as_str().map(String::from));
    add_caveats(&mut root, &inputs["caveats"]);

    let discharges = list(&inputs["discharges"]);
    let keys: HashMap<&str, RootKey> = std::iter::once(&inputs["caveats"])
        .chain(discharges.iter().map(|d| &d["caveats"]))
        .flat_map(list)
        .filter_map(|c| c.get("third_party"))
        .map(|tp| (text(&tp["cid"]), key(&tp["key"])))
        .collect();
    let discharges = discharges
        .iter()
        .map(|d| {
            let cid = text(&d["cid"]);
            let mut discharge = Macaroon::mint(&keys[cid], cid, d["location"].as_str().map(String::from));
            add_caveats(&mut discharge, &d["caveats"]);
            root.bind(&discharge)
        })
        .collect();
    Bundle { root, discharges }
}

/// A recorded request: `now` (RFC 3339) and the fields it supplies.
fn context(request: &Value) -> Context<'_> {
    let Ok(Predicate::Expires(now)) = Predicate::parse(&format!("expires < {}", text(&request["now"]))) else {
        panic!("bad instant in {request}");
    };
    let field = |name: &str| request.get(name).map(text);
    let mut ctx = Context::at(UNIX_EPOCH);
    ctx.now_unix_nanos = now;
    ctx.action = field("action");
    ctx.resource = field("resource");
    ctx.service = field("service");
    ctx.subject = field("subject");
    ctx.org = field("org");
    ctx.role = field("role");
    ctx.client_ip = field("client_ip").map(|ip| ip.parse::<IpAddr>().expect("an IP address"));
    ctx
}

/// Every output, from the inputs alone.
fn compute(inputs: &Value) -> Value {
    let bundle = build(inputs);
    let verified = verify_with_key(&bundle, &key(&inputs["root_key"]).derive(), &Limits::default())
        .unwrap_or_else(|e| panic!("the recorded inputs make an invalid bundle: {e}"));
    let outcomes: Vec<String> = list(&inputs["requests"])
        .iter()
        .map(|r| match evaluate(verified.first_party.iter().copied(), &context(r)) {
            Ok(_) => "allowed".to_owned(),
            Err(denial) => format!("denied: {denial}"),
        })
        .collect();
    let prefix_keys: Vec<String> =
        prefix_keys(bundle.root.identifier(), bundle.root.caveats()).iter().map(|k| hex::encode(k.0)).collect();
    let revocation_ids: Vec<String> = verified.revocation_ids().iter().map(|id| hex::encode(id.bytes())).collect();
    json!({
        "token": bundle.root.to_text(),
        "discharges": bundle.discharges.iter().map(Macaroon::to_text).collect::<Vec<_>>(),
        "bundle": bundle.to_text(),
        "signature": hex::encode(bundle.root.signature().as_bytes()),
        "prefix_keys": prefix_keys,
        "revocation_ids": revocation_ids,
        "outcomes": outcomes,
    })
}

#[test]
fn vectors_cover_every_kind_of_token() {
    let names: Vec<String> = cases().iter().map(|c| text(&c["name"]).to_owned()).collect();
    for wanted in [
        "bare",
        "location",
        "five-caveats",
        "every-caveat-kind",
        "third-party",
        "nested-discharge",
        "foreign-identifier",
    ] {
        assert!(names.iter().any(|n| n == wanted), "no golden case `{wanted}` in {VECTORS}");
    }
}

#[test]
fn outputs_match_the_library() {
    for case in cases() {
        let name = text(&case["name"]);
        let computed = compute(&case["inputs"]);
        let recorded = case["outputs"].as_object().expect("outputs is an object");
        let fields: Vec<_> = computed.as_object().expect("object").keys().collect();
        assert_eq!(recorded.keys().collect::<Vec<_>>(), fields, "case `{name}`: output fields differ; {REGENERATE}");
        for field in fields {
            assert_eq!(computed[field], recorded[field], "case `{name}`: `{field}` differs; {REGENERATE}");
        }
    }
}

#[test]
fn recorded_texts_decode_and_verify() {
    let limits = Limits::default();
    for case in cases() {
        let name = text(&case["name"]);
        let outputs = &case["outputs"];
        let bundle = Bundle::parse(text(&outputs["bundle"]), &limits).unwrap_or_else(|e| panic!("`{name}`: {e}"));
        assert_eq!(Macaroon::from_text(text(&outputs["token"]), &limits).as_ref(), Ok(&bundle.root), "`{name}`");
        let discharges: Vec<Macaroon> = list(&outputs["discharges"])
            .iter()
            .map(|d| Macaroon::from_text(text(d), &limits).expect("discharge"))
            .collect();
        assert_eq!(discharges, bundle.discharges, "`{name}`: discharges");
        assert_eq!(hex::encode(bundle.root.signature().as_bytes()), text(&outputs["signature"]), "`{name}`");
        let key = key(&case["inputs"]["root_key"]).derive();
        verify_with_key(&bundle, &key, &limits).unwrap_or_else(|e| panic!("`{name}` does not verify: {e}"));
    }
}
