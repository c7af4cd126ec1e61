//! Interop with pymacaroons 0.13.0 in both directions: pymacaroons reads,
//! verifies, attenuates and discharges Tally tokens, Tally verifies what
//! pymacaroons makes, and both produce the same bytes from the same inputs.
//!
//! The Python side is `tests/interop/pymac.py`, run under `$TALLY_PYTHON`
//! (set by `cargo xtask test`), else `python3`. Without pymacaroons 0.13.0
//! every test here fails: interop is a requirement, not an optional extra.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use serde_json::{Value, json};
use tally_token::{
    Bundle, Caveat, Context, DenialKind, DerivedKey, Error, KeyId, Limits, Macaroon, RootKey, RootKeyProvider,
    SECRETBOX_NONCE_LEN, Signature, TallyId, evaluate, verify, verify_with_key,
};

const MISSING_PYMACAROONS: &str = "pymacaroons 0.13.0 not found: run `cargo xtask test`, or set TALLY_PYTHON to a \
                                   python that has it (pip install pymacaroons==0.13.0)";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pymac.py");
/// The script's exit status when it cannot import pymacaroons 0.13.0.
const SCRIPT_EXIT_MISSING: i32 = 3;

const KEY_ID: KeyId = KeyId(7);
const FAMILY: [u8; 16] = [0xa5; 16];
const LOCATION: &str = "https://tally.example";
const TP_LOCATION: &str = "https://idp.example";
const TP_CID: &[u8] = b"login:alice";
const TP_NONCE: [u8; SECRETBOX_NONCE_LEN] = [0x5c; SECRETBOX_NONCE_LEN];
const FIVE_CAVEATS: [&str; 5] =
    ["org = acme", "action in read,list", "resource = apps/web/*", "service = web", "expires < 2100-01-01T00:00:00Z"];

fn root_key() -> RootKey {
    RootKey::from_bytes([0x11; 32])
}

fn tp_key() -> RootKey {
    RootKey::from_bytes([0x22; 32])
}

fn tally_id() -> Vec<u8> {
    TallyId::new(KEY_ID, FAMILY).encode()
}

/// The authority's key store, reduced to the one test key.
struct Keys;

impl RootKeyProvider for Keys {
    fn derived_key(&self, key_id: KeyId) -> Result<DerivedKey, Error> {
        if key_id == KEY_ID { Ok(root_key().derive()) } else { Err(Error::UnknownKey(key_id)) }
    }
}

/// A Tally token with a Tally identifier, a location and the five caveats.
fn tally_token() -> Macaroon {
    let mut m = Macaroon::mint(&root_key(), tally_id(), Some(LOCATION.into()));
    for c in FIVE_CAVEATS {
        m.add_first_party(c);
    }
    m
}

/// A Tally root token with a third-party caveat (index 1) and its unbound discharge.
fn tally_root_and_discharge() -> (Macaroon, Macaroon) {
    let mut root = Macaroon::mint(&root_key(), tally_id(), Some(LOCATION.into()));
    root.add_first_party("org = acme");
    root.add_third_party(Some(TP_LOCATION.into()), &tp_key(), TP_CID, TP_NONCE);
    let mut discharge = Macaroon::mint(&tp_key(), TP_CID, Some(TP_LOCATION.into()));
    discharge.add_first_party("subject = alice");
    (root, discharge)
}

/// The same shape made by pymacaroons (random secretbox nonce): root, unbound
/// discharge, discharge bound with `prepare_for_request`.
fn py_root_and_discharge() -> (String, String, String) {
    let made = pymac(&[
        mint_op(&root_key(), &tally_id(), Some(LOCATION), json!(["org = acme", third_party(&tp_key(), None)])),
        mint_op(&tp_key(), TP_CID, Some(TP_LOCATION), json!(["subject = alice"])),
    ]);
    let (root, discharge) = (token_of(&made[0]), token_of(&made[1]));
    let bound = token_of(&pymac(&[json!({"op": "bind", "root": root, "discharge": discharge})])[0]);
    (root, discharge, bound)
}

fn request(now: SystemTime) -> Context<'static> {
    let mut ctx = Context::at(now);
    ctx.action = Some("read");
    ctx.resource = Some("apps/web/index.html");
    ctx.service = Some("web");
    ctx.org = Some("acme");
    ctx
}

fn parse(text: &str) -> Macaroon {
    Macaroon::from_text(text, &Limits::default()).unwrap_or_else(|e| panic!("Tally cannot parse {text}: {e}"))
}

// --- the Python side -------------------------------------------------------

/// Runs `ops` in one pymac.py process and returns its results, in order.
fn pymac(ops: &[Value]) -> Vec<Value> {
    let python = std::env::var("TALLY_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into());
    let mut child = Command::new(&python)
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{MISSING_PYMACAROONS} (cannot run {python:?}: {e})"));
    let input = serde_json::to_vec(ops).expect("ops are JSON");
    child.stdin.take().expect("stdin is piped").write_all(&input).expect("write to pymac.py");
    let out = child.wait_with_output().expect("wait for pymac.py");
    if out.status.code() == Some(SCRIPT_EXIT_MISSING) {
        let why = serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["fatal"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stdout).into_owned());
        panic!("{MISSING_PYMACAROONS} ({why})");
    }
    assert!(out.status.success(), "pymac.py under {python:?} failed ({}): {}", out.status, stderr(&out.stderr));
    let results: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("pymac.py printed no JSON list ({e}): {}", stderr(&out.stdout)));
    assert_eq!(results.len(), ops.len(), "one result per operation");
    results
}

fn stderr(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mint_op(key: &RootKey, identifier: &[u8], location: Option<&str>, caveats: Value) -> Value {
    json!({
        "op": "mint",
        "key": hex::encode(key.as_bytes()),
        "identifier": hex::encode(identifier),
        "location": location,
        "caveats": caveats,
    })
}

/// A third-party caveat to the test's third party; `None` lets PyNaCl pick the nonce.
fn third_party(key: &RootKey, nonce: Option<[u8; SECRETBOX_NONCE_LEN]>) -> Value {
    json!({
        "location": TP_LOCATION,
        "key": hex::encode(key.as_bytes()),
        "cid": hex::encode(TP_CID),
        "nonce": nonce.map(hex::encode),
    })
}

fn verify_op(root: &str, discharges: &[&str], key: &RootKey, satisfy: &[&str]) -> Value {
    json!({
        "op": "verify",
        "token": root,
        "discharges": discharges,
        "key": hex::encode(key.as_bytes()),
        "satisfy": satisfy,
    })
}

fn ok(result: &Value) -> &Value {
    assert_eq!(result["ok"], true, "pymacaroons operation failed: {}", result["error"]);
    result
}

fn token_of(result: &Value) -> String {
    ok(result)["token"].as_str().expect("token is text").to_owned()
}

/// pymacaroons' verdict: `Err` holds "ExceptionClass: message".
fn verdict(result: &Value) -> Result<(), String> {
    if ok(result)["verified"] == true { Ok(()) } else { Err(result["error"].as_str().unwrap_or_default().to_owned()) }
}

fn assert_py_rejects(result: &Value, exception: &str, what: &str) {
    match verdict(result) {
        Ok(()) => panic!("pymacaroons accepted {what}"),
        Err(e) => assert!(e.starts_with(exception), "pymacaroons rejected {what} with {e:?}, expected {exception}"),
    }
}

// --- the cases -------------------------------------------------------------

/// Case 1: a Tally token as pymacaroons sees it, and its verdicts.
#[test]
fn pymacaroons_reads_and_verifies_tally_tokens() {
    let token = tally_token();
    let text = token.to_text();
    let four = &FIVE_CAVEATS[..4];
    let results = pymac(&[
        json!({"op": "inspect", "token": text}),
        verify_op(&text, &[], &root_key(), &FIVE_CAVEATS),
        verify_op(&text, &[], &root_key(), four),
        verify_op(&text, &[], &tp_key(), &FIVE_CAVEATS),
    ]);

    let seen = ok(&results[0]);
    assert_eq!(seen["version"], 2);
    assert_eq!(seen["location"], LOCATION);
    assert_eq!(seen["identifier"], hex::encode(tally_id()), "binary Tally identifier read as bytes");
    let caveats: Vec<Value> =
        FIVE_CAVEATS.iter().map(|c| json!({"cid": hex::encode(c), "vid": null, "location": null})).collect();
    assert_eq!(seen["caveats"], json!(caveats));
    assert_eq!(seen["signature"], hex::encode(token.signature().as_bytes()));

    assert_eq!(verdict(&results[1]), Ok(()), "pymacaroons verifies a Tally token");
    // pymacaroons reports an unmet first-party caveat as a signature mismatch.
    assert_py_rejects(&results[2], "MacaroonInvalidSignatureException", "a token with an unsatisfied caveat");
    assert_py_rejects(&results[3], "MacaroonInvalidSignatureException", "a token under the wrong key");
}

/// Case 2: Tally mints, pymacaroons attenuates, Tally verifies and evaluates.
#[test]
fn tally_verifies_tokens_attenuated_by_pymacaroons() {
    let mut minted = Macaroon::mint(&root_key(), tally_id(), Some(LOCATION.into()));
    minted.add_first_party("org = acme");
    let added = ["action in read", "resource = apps/web/*"];
    let result = pymac(&[json!({"op": "attenuate", "token": minted.to_text(), "caveats": added})]);
    let py_text = token_of(&result[0]);

    let narrowed = parse(&py_text);
    assert_eq!(narrowed.identifier(), minted.identifier());
    assert_eq!(narrowed.location(), Some(LOCATION));
    assert_eq!(narrowed.caveats().len(), 3);
    assert_eq!(narrowed.encode_v2(), hex::decode(result[0]["v2"].as_str().unwrap()).unwrap());

    let bundle = Bundle::parse(&py_text, &Limits::default()).unwrap();
    let with_key = verify_with_key(&bundle, &root_key().derive(), &Limits::default()).expect("verify_with_key");
    let verified = verify(&bundle, &Keys, &Limits::default()).expect("verify through the key provider");
    assert_eq!(verified.id, Some(TallyId::new(KEY_ID, FAMILY)));
    let expected: Vec<&[u8]> = vec![b"org = acme", b"action in read", b"resource = apps/web/*"];
    assert_eq!(with_key.first_party, expected);
    assert_eq!(verified.first_party, expected);

    let now = SystemTime::now();
    let claims = evaluate(verified.first_party.iter().copied(), &request(now)).expect("read on apps/web is allowed");
    assert_eq!(claims.org, Some("acme"));
    let mut write = request(now);
    write.action = Some("write");
    let denial = evaluate(verified.first_party.iter().copied(), &write).unwrap_err();
    assert_eq!((denial.kind, denial.index, denial.caveat.as_str()), (DenialKind::Unsatisfied, 1, "action in read"));
    let mut elsewhere = request(now);
    elsewhere.resource = Some("apps/db/x");
    assert_eq!(evaluate(verified.first_party.iter().copied(), &elsewhere).unwrap_err().index, 2);

    // The attenuation is not a copy of the original: the original's chain does not verify it.
    let forged = Macaroon::from_parts(
        narrowed.location().map(str::to_owned),
        narrowed.identifier().to_vec(),
        narrowed.caveats().to_vec(),
        minted.signature().clone(),
    );
    assert_eq!(verify(&Bundle::single(forged), &Keys, &Limits::default()).unwrap_err(), Error::BadSignature);
}

/// Case 3: same key, identifier and caveats (a third-party one with a fixed
/// nonce included) give the same signature and the same V2 bytes.
#[test]
fn same_inputs_give_identical_signatures_and_bytes() {
    let (mut root, discharge) = tally_root_and_discharge();
    root.add_first_party("action in read");
    let bound = root.bind(&discharge);
    let mut bare = Macaroon::mint(&root_key(), tally_id(), None);
    bare.add_first_party("org = acme");

    let results = pymac(&[
        mint_op(
            &root_key(),
            &tally_id(),
            Some(LOCATION),
            json!(["org = acme", third_party(&tp_key(), Some(TP_NONCE)), "action in read"]),
        ),
        mint_op(&tp_key(), TP_CID, Some(TP_LOCATION), json!(["subject = alice"])),
        json!({"op": "bind", "root": root.to_text(), "discharge": discharge.to_text()}),
        mint_op(&root_key(), &tally_id(), None, json!(["org = acme"])),
    ]);
    for (result, tally, what) in
        [(&results[0], &root, "root"), (&results[1], &discharge, "discharge"), (&results[2], &bound, "bound")]
    {
        let result = ok(result);
        assert_eq!(result["signature"], hex::encode(tally.signature().as_bytes()), "{what}: signature");
        assert_eq!(result["v2"], hex::encode(tally.encode_v2()), "{what}: V2 bytes");
        // Both print unpadded base64url; Tally adds its prefix.
        assert_eq!(Some(result["token"].as_str().unwrap()), tally.to_text().strip_prefix("tly_"), "{what}: text");
    }

    // Without a location, pymacaroons still writes an empty location field
    // (0x01 0x00) where Tally writes none: same signature and meaning, two
    // more bytes. Tally reads it as no location.
    let no_location = ok(&results[3]);
    assert_eq!(no_location["signature"], hex::encode(bare.signature().as_bytes()));
    let mut expected = bare.encode_v2();
    expected.splice(1..1, [0x01, 0x00]);
    assert_eq!(no_location["v2"], hex::encode(&expected));
    let read = parse(no_location["token"].as_str().unwrap());
    assert_eq!(read, bare);
    assert!(verify(&Bundle::single(read), &Keys, &Limits::default()).is_ok());
}

/// Case 4a: a Tally root token and its bound discharge verify in pymacaroons.
#[test]
fn pymacaroons_verifies_tally_discharges() {
    let (root, discharge) = tally_root_and_discharge();
    let bound = root.bind(&discharge).to_text();
    let results = pymac(&[verify_op(&root.to_text(), &[&bound], &root_key(), &["org = acme", "subject = alice"])]);
    assert_eq!(verdict(&results[0]), Ok(()));
}

/// Case 4b: a pymacaroons root token with a discharge bound by
/// `prepare_for_request` verifies in Tally, discharge caveats included.
#[test]
fn tally_verifies_pymacaroons_discharges() {
    let (root, _, bound) = py_root_and_discharge();
    let bundle = Bundle::parse(&format!("{root},{bound}"), &Limits::default()).unwrap();
    assert!(bundle.root.caveats()[1].is_third_party());
    let verified = verify(&bundle, &Keys, &Limits::default()).expect("pymacaroons bundle verifies");
    assert_eq!(verified.first_party, vec![b"org = acme".as_slice(), b"subject = alice"]);
    let claims = evaluate(verified.first_party.iter().copied(), &request(SystemTime::now())).unwrap();
    assert_eq!(claims.subject, Some("alice"));
    assert!(verify_with_key(&bundle, &root_key().derive(), &Limits::default()).is_ok());
}

/// Case 5a: pymacaroons refuses Tally bundles whose discharge is unbound,
/// bound to another token, or missing.
#[test]
fn pymacaroons_rejects_unbound_or_missing_discharges() {
    let (root, discharge) = tally_root_and_discharge();
    let other = tally_token();
    let (root_text, unbound, elsewhere) = (root.to_text(), discharge.to_text(), other.bind(&discharge).to_text());
    let satisfy = ["org = acme", "subject = alice"];
    let results = pymac(&[
        verify_op(&root_text, &[&unbound], &root_key(), &satisfy),
        verify_op(&root_text, &[&elsewhere], &root_key(), &satisfy),
        verify_op(&root_text, &[], &root_key(), &satisfy),
    ]);
    assert_py_rejects(&results[0], "MacaroonInvalidSignatureException", "an unbound discharge");
    assert_py_rejects(&results[1], "MacaroonInvalidSignatureException", "a discharge bound to another token");
    assert_py_rejects(&results[2], "MacaroonUnmetCaveatException", "a missing discharge");
}

/// Case 5b: Tally refuses pymacaroons bundles whose discharge is unbound or missing.
#[test]
fn tally_rejects_unbound_or_missing_discharges() {
    let (root, unbound, _) = py_root_and_discharge();
    let limits = Limits::default();
    let bundle = Bundle::parse(&format!("{root},{unbound}"), &limits).unwrap();
    assert_eq!(verify(&bundle, &Keys, &limits).unwrap_err(), Error::BadDischarge(1));
    let bundle = Bundle::parse(&root, &limits).unwrap();
    assert_eq!(verify(&bundle, &Keys, &limits).unwrap_err(), Error::MissingDischarge(1));
    assert_eq!(verify_with_key(&bundle, &root_key().derive(), &limits).unwrap_err(), Error::MissingDischarge(1));
}

/// Case 6: forged and tampered tokens are rejected by both libraries.
#[test]
fn forged_tokens_rejected_by_both() {
    let genuine = tally_token();
    let caveats = genuine.caveats().to_vec();
    let with = |caveats: Vec<Caveat>, identifier: Vec<u8>, signature: Signature| {
        Macaroon::from_parts(Some(LOCATION.into()), identifier, caveats, signature)
    };
    let sig = genuine.signature().clone();

    let mut widened = caveats.clone();
    widened[1] = Caveat::first_party("action in read,list,write");
    let mut flipped = *sig.as_bytes();
    flipped[0] ^= 1;
    let mut other_key = Macaroon::mint(&RootKey::from_bytes([0x66; 32]), tally_id(), Some(LOCATION.into()));
    for c in FIVE_CAVEATS {
        other_key.add_first_party(c);
    }
    let forgeries = [
        ("last caveat dropped", with(caveats[..4].to_vec(), tally_id(), sig.clone())),
        ("caveat widened", with(widened, tally_id(), sig.clone())),
        ("signature bit flipped", with(caveats.clone(), tally_id(), Signature::from_bytes(flipped))),
        ("family changed", with(caveats.clone(), TallyId::new(KEY_ID, [0x5a; 16]).encode(), sig.clone())),
        ("minted under another key", other_key),
    ];

    // Satisfy every predicate a forgery carries, so only the chain can fail.
    let satisfy = [&FIVE_CAVEATS[..], &["action in read,list,write"]].concat();
    let ops: Vec<Value> = forgeries.iter().map(|(_, m)| verify_op(&m.to_text(), &[], &root_key(), &satisfy)).collect();
    let results = pymac(&ops);
    for ((what, forged), result) in forgeries.iter().zip(&results) {
        assert_py_rejects(result, "MacaroonInvalidSignatureException", what);
        let bundle = Bundle::single(forged.clone());
        assert_eq!(verify(&bundle, &Keys, &Limits::default()).unwrap_err(), Error::BadSignature, "{what}");
    }

    // And a pymacaroons-made forgery: the right identifier under a guessed key.
    let made = pymac(&[mint_op(&RootKey::from_bytes([0x66; 32]), &tally_id(), Some(LOCATION), json!(FIVE_CAVEATS))]);
    let bundle = Bundle::parse(&token_of(&made[0]), &Limits::default()).unwrap();
    assert_eq!(verify(&bundle, &Keys, &Limits::default()).unwrap_err(), Error::BadSignature);
}
