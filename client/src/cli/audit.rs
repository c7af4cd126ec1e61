//! `tally audit tail`: the newest audit entries, and with `--follow` every
//! new one as it is written, as text or JSON Lines.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tally_client::{AuditEntry, AuditQuery};

use super::conn::{self, Server};
use super::output::{json, json_time, text_time};
use super::{CliError, Global};

/// Most entries one request asks for (the authority's maximum).
const PAGE: u32 = 1000;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Print the newest entries (oldest first); `--follow` keeps printing new ones.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Only entries about this org (an org-scoped operator token must name its org).
    #[arg(long)]
    org: Option<String>,
    /// How many of the newest entries to print first (1 to 1000).
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    lines: u32,
    /// Start after this entry id instead of with the newest ones (prints everything after it).
    #[arg(long)]
    after: Option<u64>,
    /// Keep polling for new entries until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// How often `--follow` asks for new entries.
    #[arg(long, default_value = "1s")]
    poll_interval: humantime::Duration,
}

pub(crate) async fn run(g: &Global, cmd: AuditCommand) -> Result<(), CliError> {
    let AuditCommand::Tail(a) = cmd;
    let client = conn::authority(g)?;
    let fail = |e| conn::failed(g, Server::Authority, e);
    let interval: Duration = a.poll_interval.into();
    if a.follow && interval.is_zero() {
        return Err(CliError::usage("--poll-interval must be more than zero"));
    }
    let first =
        AuditQuery { org: a.org.clone(), after_id: a.after, limit: if a.after.is_some() { PAGE } else { a.lines } };
    let mut last = a.after.unwrap_or(0);
    let mut query = first;
    loop {
        let entries = client.list_audit(&query).await.map_err(fail)?;
        let full = entries.len() == query.limit as usize;
        for e in &entries {
            print(g, e);
            last = last.max(e.id);
        }
        // With `--after`, page through everything after it, then stop or follow.
        let more = full && query.after_id.is_some();
        if !more && !a.follow {
            return Ok(());
        }
        if !more {
            tokio::time::sleep(interval).await;
        }
        query = AuditQuery { org: a.org.clone(), after_id: Some(last), limit: PAGE };
    }
}

fn print(g: &Global, e: &AuditEntry) {
    if g.json {
        json(&to_json(e));
    } else {
        println!(
            "{:>6}  {}  {}{}  {}  {}  org={}  target={}{}",
            e.id,
            text_time(Some(e.at_unix_ms)),
            e.outcome,
            if e.count > 1 { format!(" ×{}", e.count) } else { String::new() },
            e.action,
            e.actor,
            e.org.as_deref().unwrap_or("-"),
            e.target.as_deref().unwrap_or("-"),
            if e.detail.is_empty() { String::new() } else { format!("  ({})", e.detail) },
        );
    }
}

fn to_json(e: &AuditEntry) -> Value {
    json!({
        "id": e.id,
        "at": json_time(Some(e.at_unix_ms)),
        "actor": e.actor,
        "action": e.action,
        "org": e.org,
        "target": e.target,
        "outcome": e.outcome,
        "detail": e.detail,
        "count": e.count,
    })
}
