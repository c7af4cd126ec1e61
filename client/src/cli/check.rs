//! `tally check` and `tally status`: a verifier's answer for a request, and
//! its view of the revocation stream.

use clap::Args;
use serde_json::json;
use tally_client::Check;

use super::conn::{self, Server};
use super::output::{fields, json, json_time};
use super::{CliError, Global, input};

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The token or bundle, or - for stdin.
    bundle: String,
    #[command(flatten)]
    request: input::RequestArgs,
    /// The org the checking service belongs to: only tokens of that org are allowed (default: the verifier's
    /// --org, if it has one).
    #[arg(long)]
    org: Option<String>,
}

pub(crate) async fn check(g: &Global, a: CheckArgs) -> Result<(), CliError> {
    let check = Check {
        bundle: input::token_text(&a.bundle)?.trim().to_owned(),
        action: a.request.action,
        resource: a.request.resource,
        service: a.request.service,
        subject: a.request.subject,
        client_ip: a.request.client_ip,
        org: a.org,
    };
    let d = conn::verifier(g)?.check(&check).await.map_err(|e| conn::failed(g, Server::Verifier, e))?;
    if g.json {
        json(&json!({
            "allowed": d.allowed,
            "reason": d.reason.as_str(),
            "detail": d.detail,
            "failed_caveat": d.failed_caveat,
            "org": d.org,
            "subject": d.subject,
            "family": d.family,
            "source": d.source.as_str(),
            "expires_at": json_time(d.expires_at_unix_ms),
        }));
        return if d.allowed { Ok(()) } else { Err(CliError::invalid("")) };
    }
    if d.allowed {
        let mut who = Vec::new();
        who.extend(d.org.as_ref().map(|o| format!("org {o}")));
        who.extend(d.subject.as_ref().map(|s| format!("subject {s}")));
        let who = if who.is_empty() { String::new() } else { format!(" for {}", who.join(", ")) };
        println!("allowed{who} (from {})", d.source);
        return Ok(());
    }
    let mut why = d.reason.to_string();
    if let Some(c) = &d.failed_caveat {
        why.push_str(&format!(": `{c}` does not hold"));
    } else if !d.detail.is_empty() {
        why.push_str(&format!(": {}", d.detail));
    }
    Err(CliError::invalid(format!("denied: {why}")))
}

/// `tally status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Whose status: the verifier (`--verifier`), or the authority (`--authority`, an operator token).
    #[arg(long, value_enum, default_value_t = Of::Verifier)]
    of: Of,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Of {
    Verifier,
    Authority,
}

pub(crate) async fn status(g: &Global, a: StatusArgs) -> Result<(), CliError> {
    match a.of {
        Of::Verifier => verifier_status(g).await,
        Of::Authority => authority_status(g).await,
    }
}

/// An authority replica: serving while it vouches for the log.
async fn authority_status(g: &Global) -> Result<(), CliError> {
    let s = conn::authority(g)?.status().await.map_err(|e| conn::failed(g, Server::Authority, e))?;
    if g.json {
        json(&json!({
            "serving": s.vouching,
            "replica": s.replica,
            "database": s.database,
            "epoch": s.epoch,
            "head_seq": s.head_seq,
            "retained_from": s.retained_from,
            "head_read_age_ms": s.head_read_age_ms,
            "vouching": s.vouching,
            "subscribers": s.subscribers,
        }));
    } else {
        let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
        fields(&[
            ("replica", s.replica.clone()),
            ("database", s.database.clone()),
            ("vouching", yes(s.vouching)),
            ("epoch", s.epoch.clone()),
            ("log", format!("seqs {} to {}", s.retained_from, s.head_seq)),
            ("head read", format!("{} ms ago", s.head_read_age_ms)),
            ("subscribers", s.subscribers.to_string()),
        ]);
    }
    if s.vouching {
        Ok(())
    } else {
        Err(CliError::invalid(if g.json { "" } else { "the authority cannot read its database" }))
    }
}

async fn verifier_status(g: &Global) -> Result<(), CliError> {
    let s = conn::verifier(g)?.status().await.map_err(|e| conn::failed(g, Server::Verifier, e))?;
    let serving = s.synced && !s.fail_closed;
    if g.json {
        json(&json!({
            "serving": serving,
            "region": s.region,
            "epoch": s.epoch,
            "applied_seq": s.applied_seq,
            "head_seq": s.head_seq,
            "cache_entries": s.cache_entries,
            "last_contact_age_ms": s.last_contact_age_ms,
            "synced": s.synced,
            "fail_closed": s.fail_closed,
            "resets": s.resets,
            "authority_verifies": s.authority_verifies,
            "authority": s.authority,
        }));
    } else {
        let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
        fields(&[
            ("region", s.region.clone()),
            ("serving", yes(serving)),
            ("synced", yes(s.synced)),
            ("fail closed", yes(s.fail_closed)),
            ("epoch", s.epoch.clone()),
            ("applied seq", format!("{} of {}", s.applied_seq, s.head_seq)),
            ("cache", format!("{} entries", s.cache_entries)),
            ("last contact", s.last_contact_age_ms.map_or_else(|| "never".into(), |ms| format!("{ms} ms ago"))),
            ("resets", s.resets.to_string()),
            ("authority verifies", s.authority_verifies.to_string()),
            ("authority", s.authority.clone()),
        ]);
    }
    if serving { Ok(()) } else { Err(CliError::invalid(if g.json { "" } else { "the verifier is not serving" })) }
}
