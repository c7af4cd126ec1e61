//! Operator commands against the authority: orgs, keys, mint, revoke,
//! introspect. Each needs the operator token from `--token-file`, except
//! revoking a token one holds (possession is the credential).

use clap::{Args, Subcommand};
use serde_json::json;
use tally_client::{MintSpec, RevokeTarget};

use super::conn::{self, Server};
use super::output::{fields, json, json_time, table, text_time};
use super::{CliError, Global, input};

#[derive(Debug, Subcommand)]
pub(crate) enum OrgCommand {
    /// Create an org and its first root key.
    Create {
        /// Lowercase letters, digits, '-', '_' and '.', 1 to 64 characters.
        org: String,
    },
    /// List the orgs the token may see.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Give an org a new current key (old keys keep verifying until retired).
    Rotate { org: String },
    /// Retire a key: tokens under it stop verifying everywhere.
    Retire { key_id: u64 },
    /// List an org's keys (ids and state, never key material).
    List { org: String },
}

#[derive(Debug, Args)]
pub(crate) struct MintArgs {
    /// The org the token belongs to.
    #[arg(long)]
    org: String,
    /// A first-party caveat, e.g. "action in read" (repeatable).
    #[arg(long = "caveat")]
    caveats: Vec<String>,
    /// Adds `subject = SUBJECT`.
    #[arg(long)]
    subject: Option<String>,
    /// Lifetime, e.g. 15m, 12h, 30d (default: the authority's).
    #[arg(long)]
    ttl: Option<humantime::Duration>,
    /// Location hint written into the token.
    #[arg(long)]
    location: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RevokeCommand {
    /// A token and its descendants, not its siblings. Needs no --token-file:
    /// holding the token is enough.
    Token {
        /// The token, or - for stdin.
        token: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// A whole family, by its hex id (`tally token inspect` shows it as "nonce").
    Family {
        family: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Every token under a root key (retires the key; rotates first when current).
    Key {
        key_id: u64,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Every token of an org so far (retires its keys, makes a fresh one).
    Org {
        org: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct IntrospectArgs {
    /// The token or bundle, or - for stdin.
    token: String,
}

pub(crate) async fn org(g: &Global, cmd: OrgCommand) -> Result<(), CliError> {
    let client = conn::authority(g)?;
    let fail = |e| conn::failed(g, Server::Authority, e);
    match cmd {
        OrgCommand::Create { org } => {
            let key_id = client.create_org(&org).await.map_err(fail)?;
            if g.json {
                json(&json!({ "org": org, "key_id": key_id }));
            } else {
                println!("created org {org} with key {key_id}");
            }
        }
        OrgCommand::List => {
            let orgs = client.list_orgs().await.map_err(fail)?;
            if g.json {
                let orgs: Vec<_> = orgs
                    .iter()
                    .map(|o| {
                        json!({
                            "org": o.org,
                            "current_key_id": o.current_key_id,
                            "created_at": json_time(Some(o.created_at_unix_ms)),
                        })
                    })
                    .collect();
                json(&json!({ "orgs": orgs }));
            } else {
                let mut rows = vec![vec!["ORG".into(), "KEY".into(), "CREATED".into()]];
                rows.extend(
                    orgs.iter().map(|o| {
                        vec![o.org.clone(), o.current_key_id.to_string(), text_time(Some(o.created_at_unix_ms))]
                    }),
                );
                table(&rows);
            }
        }
    }
    Ok(())
}

pub(crate) async fn key(g: &Global, cmd: KeyCommand) -> Result<(), CliError> {
    let client = conn::authority(g)?;
    let fail = |e| conn::failed(g, Server::Authority, e);
    match cmd {
        KeyCommand::Rotate { org } => {
            let key_id = client.rotate_key(&org).await.map_err(fail)?;
            if g.json {
                json(&json!({ "org": org, "key_id": key_id }));
            } else {
                println!("org {org} now mints with key {key_id}");
            }
        }
        KeyCommand::Retire { key_id } => {
            let seq = client.retire_key(key_id).await.map_err(fail)?;
            if g.json {
                json(&json!({ "key_id": key_id, "seq": seq }));
            } else {
                println!("retired key {key_id} (revocation seq {seq})");
            }
        }
        KeyCommand::List { org } => {
            let keys = client.list_keys(&org).await.map_err(fail)?;
            if g.json {
                let keys: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "key_id": k.key_id,
                            "org": k.org,
                            "current": k.current,
                            "created_at": json_time(Some(k.created_at_unix_ms)),
                            "retired_at": json_time(k.retired_at_unix_ms),
                        })
                    })
                    .collect();
                json(&json!({ "keys": keys }));
            } else {
                let mut rows = vec![vec!["KEY".into(), "STATE".into(), "CREATED".into(), "RETIRED".into()]];
                rows.extend(keys.iter().map(|k| {
                    let state = match (k.current, k.retired_at_unix_ms) {
                        (_, Some(_)) => "retired",
                        (true, None) => "current",
                        (false, None) => "active",
                    };
                    vec![
                        k.key_id.to_string(),
                        state.into(),
                        text_time(Some(k.created_at_unix_ms)),
                        text_time(k.retired_at_unix_ms),
                    ]
                }));
                table(&rows);
            }
        }
    }
    Ok(())
}

pub(crate) async fn mint(g: &Global, a: MintArgs) -> Result<(), CliError> {
    // A typo would otherwise mint a token that can never be used.
    input::caveats(&a.caveats)?;
    let client = conn::authority(g)?;
    let spec = MintSpec {
        org: a.org,
        caveats: a.caveats,
        ttl: a.ttl.map(Into::into),
        subject: a.subject,
        location: a.location,
    };
    let minted = client.mint(&spec).await.map_err(|e| conn::failed(g, Server::Authority, e))?;
    if g.json {
        json(&json!({
            "token": minted.token,
            "family": minted.family,
            "key_id": minted.key_id,
            "expires_at": json_time(minted.expires_at_unix_ms),
        }));
    } else {
        // Only the token on stdout, so `TOKEN=$(tally mint …)` works.
        println!("{}", minted.token);
    }
    Ok(())
}

pub(crate) async fn revoke(g: &Global, cmd: RevokeCommand) -> Result<(), CliError> {
    let (client, target, reason) = match cmd {
        RevokeCommand::Token { token, reason } => {
            (conn::anonymous_authority(g)?, RevokeTarget::Token(input::token_text(&token)?), reason)
        }
        RevokeCommand::Family { family, reason } => (conn::authority(g)?, RevokeTarget::Family(family), reason),
        RevokeCommand::Key { key_id, reason } => (conn::authority(g)?, RevokeTarget::Key(key_id), reason),
        RevokeCommand::Org { org, reason } => (conn::authority(g)?, RevokeTarget::Org(org), reason),
    };
    let seq = client.revoke(&target, &reason).await.map_err(|e| conn::failed(g, Server::Authority, e))?;
    // Never echo the token itself: name the target by kind.
    let (kind, value) = match &target {
        RevokeTarget::Token(_) => ("token", json!(null)),
        RevokeTarget::Family(f) => ("family", json!(f)),
        RevokeTarget::Key(k) => ("key", json!(k)),
        RevokeTarget::Org(o) => ("org", json!(o)),
    };
    if g.json {
        json(&json!({ "revoked": kind, "target": value, "seq": seq }));
    } else {
        let what = match &target {
            RevokeTarget::Token(_) => "the token and its descendants".to_owned(),
            RevokeTarget::Family(f) => format!("family {f}"),
            RevokeTarget::Key(k) => format!("every token under key {k}"),
            RevokeTarget::Org(o) => format!("every token of org {o}"),
        };
        println!("revoked {what} (revocation seq {seq})");
    }
    Ok(())
}

pub(crate) async fn introspect(g: &Global, a: IntrospectArgs) -> Result<(), CliError> {
    let bundle = input::token_text(&a.token)?;
    let client = conn::authority(g)?;
    let i = client.introspect(&bundle).await.map_err(|e| conn::failed(g, Server::Authority, e))?;
    if g.json {
        json(&json!({
            "active": i.active,
            "reason": i.reason.as_str(),
            "org": i.org,
            "subject": i.subject,
            "key_id": i.key_id,
            "family": i.family,
            "expires_at": json_time(i.expires_at_unix_ms),
            "caveats": i.caveats,
        }));
    } else if i.active {
        let none = || "-".to_owned();
        fields(&[
            ("active", "yes".into()),
            ("org", i.org.clone().unwrap_or_else(none)),
            ("subject", i.subject.clone().unwrap_or_else(none)),
            ("key", i.key_id.map_or_else(none, |k| k.to_string())),
            ("family", i.family.clone().unwrap_or_else(none)),
            ("expires", text_time(i.expires_at_unix_ms)),
            ("caveats", if i.caveats.is_empty() { none() } else { i.caveats.join("; ") }),
        ]);
    } else {
        println!("inactive ({})", i.reason);
    }
    if i.active { Ok(()) } else { Err(CliError::invalid("")) }
}
