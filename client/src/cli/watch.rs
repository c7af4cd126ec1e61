//! `tally watch`: follows the revocation stream and prints one line per
//! event, as text or JSON Lines. Heartbeats are hidden unless asked for.

use clap::Args;
use serde_json::{Value, json};
use tally_client::{Event, Position, Revoked};

use super::conn::{self, Server};
use super::output::{json, json_time, text_time};
use super::{CliError, Global};

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Skip revocations up to and including this seq (the replay starts at
    /// the oldest retained one).
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Exit (0) after this many revocations.
    #[arg(long)]
    count: Option<u64>,
    /// Also print heartbeats.
    #[arg(long)]
    heartbeats: bool,
}

pub(crate) async fn run(g: &Global, a: WatchArgs) -> Result<(), CliError> {
    let client = conn::authority(g)?;
    let fail = |e| conn::failed(g, Server::Authority, e);
    if a.count == Some(0) {
        return Ok(());
    }
    let mut stream = client.subscribe(&Position::default()).await.map_err(fail)?;
    let mut last = a.after;
    let mut seen = 0;
    loop {
        let event = match stream.next().await {
            Ok(Some(event)) => event,
            Ok(None) => {
                return Err(CliError::unavailable(format!(
                    "the authority ended the stream (shutting down?); resume with `tally watch --after {last}`"
                )));
            }
            Err(e) => {
                let e = fail(e);
                return Err(CliError {
                    code: e.code,
                    message: format!("{}; resume with `tally watch --after {last}`", e.message),
                });
            }
        };
        match &event {
            Event::Revocation { seq, .. } if *seq <= a.after => continue,
            Event::Revocation { seq, .. } => {
                last = *seq;
                seen += 1;
            }
            Event::Heartbeat { .. } if !a.heartbeats => continue,
            _ => {}
        }
        if g.json {
            json(&to_json(&event))
        } else {
            println!("{}", to_text(&event))
        }
        if a.count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
    }
}

fn to_json(e: &Event) -> Value {
    match e {
        Event::Revocation { seq, target, expires_at_unix_ms, .. } => {
            let mut v = json!({ "event": "revocation", "seq": seq, "expires_at": json_time(*expires_at_unix_ms) });
            match target {
                Revoked::Family(f) => {
                    v["kind"] = json!("family");
                    v["family"] = json!(f);
                }
                Revoked::Branch { family, branch } => {
                    v["kind"] = json!("branch");
                    v["family"] = json!(family);
                    v["branch"] = json!(branch);
                }
                Revoked::Key(k) => {
                    v["kind"] = json!("key");
                    v["key_id"] = json!(k);
                }
            }
            v
        }
        Event::Heartbeat { head_seq, epoch } => json!({ "event": "heartbeat", "head_seq": head_seq, "epoch": epoch }),
        Event::Reset { epoch, head_seq, replay_after, reason } => json!({
            "event": "reset",
            "epoch": epoch,
            "head_seq": head_seq,
            "replay_after": replay_after,
            "reason": reason,
        }),
    }
}

fn to_text(e: &Event) -> String {
    match e {
        Event::Revocation { seq, target, expires_at_unix_ms, .. } => {
            let what = match target {
                Revoked::Family(f) => format!("revoked family {f}"),
                Revoked::Branch { family, branch } => format!("revoked branch {branch} of family {family}"),
                Revoked::Key(k) => format!("retired key {k}"),
            };
            match expires_at_unix_ms {
                Some(_) => format!("seq {seq}  {what}  (moot after {})", text_time(*expires_at_unix_ms)),
                None => format!("seq {seq}  {what}"),
            }
        }
        Event::Heartbeat { head_seq, epoch } => format!("heartbeat  head {head_seq}  epoch {epoch}"),
        Event::Reset { epoch, head_seq, replay_after, reason } => {
            format!("reset  epoch {epoch}  head {head_seq}  replaying after {replay_after}: {reason}")
        }
    }
}
