//! `tally token …`: offline commands for developers and tests. They work on
//! token text and key files only; nothing here talks to an authority.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use serde_json::{Value, json};
use tally_token::{Bundle, Context, KeyId, Limits, Macaroon, TallyId, evaluate, format_rfc3339, verify_with_key};

use super::{CliError, input};

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Mint a new token under a root key (prints the token).
    Mint {
        /// File holding the root key: 64 hex characters.
        #[arg(long)]
        root_key_file: PathBuf,
        /// The key id to write into the identifier.
        #[arg(long)]
        key_id: u64,
        /// Location hint.
        #[arg(long)]
        location: Option<String>,
        /// A first-party caveat, e.g. "action in read" (repeatable).
        #[arg(long = "caveat")]
        caveats: Vec<String>,
    },
    /// Append caveats to a token (anyone holding it may).
    Attenuate {
        /// The token, or - for stdin.
        token: String,
        /// A first-party caveat to append (repeatable).
        #[arg(long = "caveat")]
        caveats: Vec<String>,
        /// Location of a third-party caveat to append (after the first-party ones).
        #[arg(long = "third-party", requires_all = ["third_party_key_file", "third_party_id"])]
        third_party: Option<String>,
        /// File holding the key shared with the third party (64 hex characters).
        #[arg(long, requires = "third_party")]
        third_party_key_file: Option<PathBuf>,
        /// Caveat id the third party will recognise.
        #[arg(long, requires = "third_party")]
        third_party_id: Option<String>,
    },
    /// Make a discharge for a third-party caveat (unbound: bind it with `bundle`).
    Discharge {
        /// File holding the third party's caveat key (64 hex characters).
        #[arg(long)]
        root_key_file: PathBuf,
        /// The caveat id being discharged.
        #[arg(long)]
        id: String,
        /// Location hint.
        #[arg(long)]
        location: Option<String>,
        /// A first-party caveat on the discharge (repeatable).
        #[arg(long = "caveat")]
        caveats: Vec<String>,
    },
    /// Bind discharges to a token and print the bundle TOKEN,DISCHARGE,…
    Bundle {
        /// The token, or - for stdin.
        token: String,
        /// Discharges to bind to it.
        #[arg(required = true)]
        discharges: Vec<String>,
    },
    /// Show a token's contents as JSON (never its signature).
    Inspect {
        /// The token or bundle, or - for stdin.
        token: String,
    },
    /// Verify a bundle with its root key and evaluate its caveats for a request.
    /// Exits 0 when valid, 1 when invalid, 2 on usage or parse errors.
    Verify {
        /// The token or bundle, or - for stdin.
        bundle: String,
        /// File holding the root key (64 hex characters).
        #[arg(long)]
        root_key_file: PathBuf,
        #[command(flatten)]
        request: input::RequestArgs,
        /// Evaluate at this instant (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
    },
}

pub(crate) fn run(cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Mint { root_key_file, key_id, location, caveats } => {
            input::caveats(&caveats)?;
            let key = input::root_key_file(&root_key_file)?;
            let id = TallyId::new(KeyId(key_id), input::random()?);
            let mut m = Macaroon::mint(&key, id.encode(), location);
            caveats.iter().for_each(|c| m.add_first_party(c.as_bytes()));
            println!("{}", m.to_text());
        }
        TokenCommand::Attenuate { token, caveats, third_party, third_party_key_file, third_party_id } => {
            input::caveats(&caveats)?;
            let mut m = input::macaroon(&token)?;
            caveats.iter().for_each(|c| m.add_first_party(c.as_bytes()));
            if let (Some(loc), Some(file), Some(cid)) = (third_party, third_party_key_file, third_party_id) {
                let key = input::root_key_file(&file)?;
                m.add_third_party(Some(loc), &key, cid.into_bytes(), input::random()?);
            }
            println!("{}", m.to_text());
        }
        TokenCommand::Discharge { root_key_file, id, location, caveats } => {
            input::caveats(&caveats)?;
            let key = input::root_key_file(&root_key_file)?;
            let mut m = Macaroon::mint(&key, id.into_bytes(), location);
            caveats.iter().for_each(|c| m.add_first_party(c.as_bytes()));
            println!("{}", m.to_text());
        }
        TokenCommand::Bundle { token, discharges } => {
            let root = input::macaroon(&token)?;
            let discharges =
                discharges.iter().map(|d| input::macaroon(d).map(|d| root.bind(&d))).collect::<Result<_, _>>()?;
            println!("{}", Bundle { root, discharges }.to_text());
        }
        TokenCommand::Inspect { token } => {
            let bundle = input::bundle(&token)?;
            let mut out = describe(&bundle.root);
            if !bundle.discharges.is_empty() {
                out["discharges"] = bundle.discharges.iter().map(describe).collect();
            }
            println!("{}", serde_json::to_string_pretty(&out).expect("JSON values serialise"));
        }
        TokenCommand::Verify { bundle, root_key_file, request, at } => {
            let bundle = input::bundle(&bundle)?;
            let key = input::root_key_file(&root_key_file)?;
            let now = match at {
                Some(at) => parse_instant(&at)?,
                None => SystemTime::now(),
            };
            let verified = verify_with_key(&bundle, &key.derive(), &Limits::default())
                .map_err(|e| CliError::invalid(format!("invalid: {e}")))?;
            let mut ctx = Context::at(now);
            ctx.action = request.action.as_deref();
            ctx.resource = request.resource.as_deref();
            ctx.service = request.service.as_deref();
            ctx.subject = request.subject.as_deref();
            ctx.client_ip = request.client_ip;
            let claims = evaluate(verified.first_party.iter().copied(), &ctx)
                .map_err(|d| CliError::invalid(format!("invalid: {d}")))?;
            let out = json!({
                "valid": true,
                "key_id": verified.id.map(|id| id.key_id.0),
                "family": verified.id.map(|id| id.family.to_hex()),
                "org": claims.org,
                "subject": claims.subject,
                "expires": claims.expires_unix_nanos.map(format_rfc3339),
            });
            println!("{out}");
        }
    }
    Ok(())
}

/// JSON view of one macaroon: everything but the signature.
fn describe(m: &Macaroon) -> Value {
    let (first, third): (Vec<_>, Vec<_>) = m.caveats().iter().partition(|c| !c.is_third_party());
    let mut out = json!({
        "format": "libmacaroons-v2",
        "location": m.location(),
        "caveats": first.iter().map(|c| String::from_utf8_lossy(&c.id)).collect::<Vec<_>>(),
        "third_party_caveats": third.iter().map(|c| json!({
            "location": c.location,
            "id": String::from_utf8_lossy(&c.id),
        })).collect::<Vec<_>>(),
    });
    match TallyId::decode(m.identifier()) {
        Ok(id) => {
            out["version"] = json!(tally_token::IDENTIFIER_VERSION);
            out["key_id"] = json!(id.key_id.0);
            out["nonce"] = json!(id.family.to_hex());
        }
        Err(_) => out["identifier"] = json!(String::from_utf8_lossy(m.identifier())),
    }
    out
}

fn parse_instant(text: &str) -> Result<SystemTime, CliError> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| CliError::usage(format!("--at {text:?} is not an RFC 3339 timestamp")))?;
    let nanos = t.unix_timestamp_nanos();
    let since = Duration::from_nanos(nanos.unsigned_abs().min(u128::from(u64::MAX)) as u64);
    Ok(if nanos >= 0 { UNIX_EPOCH + since } else { UNIX_EPOCH - since })
}
