//! Proto ⇄ domain conversions for the authority service.

use tally_proto::v1 as pb;
use tally_token::KeyId;

use crate::authority::{Reason, Verdict};
use crate::keys::{KeyInfo, OrgInfo};
use crate::log::StreamEvent;
use crate::revocation::{LogEvent, Target};
use crate::store::AuditEntry;

pub(crate) fn reason(r: Reason) -> pb::Reason {
    match r {
        Reason::Ok => pb::Reason::Ok,
        Reason::Forged => pb::Reason::Forged,
        Reason::UnknownKey => pb::Reason::UnknownKey,
        Reason::RetiredKey => pb::Reason::RetiredKey,
        Reason::Revoked => pb::Reason::Revoked,
        Reason::Expired => pb::Reason::Expired,
        Reason::CaveatFailed => pb::Reason::CaveatFailed,
        Reason::DischargeInvalid => pb::Reason::DischargeInvalid,
    }
}

pub(crate) fn verify_response(v: Verdict) -> pb::VerifyResponse {
    pb::VerifyResponse {
        valid: v.reason == Reason::Ok,
        reason: reason(v.reason) as i32,
        detail: v.detail,
        org: v.org.unwrap_or_default(),
        key_id: v.key_id.map_or(0, |k| k.0),
        family: v.family.map(|f| f.0.to_vec()).unwrap_or_default(),
        expires_at_unix_ms: v.expires_at_ms.unwrap_or(0),
        chain: v.chain.iter().map(|s| s.as_bytes().to_vec()).collect(),
        as_of_seq: v.as_of_seq,
        epoch: v.epoch,
        chain_from: v.chain_from as u32,
    }
}

pub(crate) fn introspect_response(v: Verdict, now_ms: i64) -> pb::IntrospectResponse {
    let active = v.reason == Reason::Ok && v.expires_at_ms.is_none_or(|e| now_ms < e);
    if !active {
        // RFC 7662: an inactive token reveals nothing else.
        return pb::IntrospectResponse { active: false, reason: reason(v.reason) as i32, ..Default::default() };
    }
    pb::IntrospectResponse {
        active,
        reason: reason(v.reason) as i32,
        org: v.org.unwrap_or_default(),
        subject: v.subject.unwrap_or_default(),
        expires_at_unix_ms: v.expires_at_ms.unwrap_or(0),
        caveats: v.caveats,
        family: v.family.map(|f| f.to_hex()).unwrap_or_default(),
        key_id: v.key_id.map_or(0, |k| k.0),
    }
}

pub(crate) fn org_info(o: OrgInfo) -> pb::OrgInfo {
    pb::OrgInfo { org: o.org, created_at_unix_ms: o.created_at_ms, current_key_id: o.current_key.0 }
}

pub(crate) fn audit_entry(e: AuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        id: e.id,
        at_unix_ms: e.at_ms,
        actor: e.actor,
        action: e.action,
        org: e.org.unwrap_or_default(),
        target: e.target.unwrap_or_default(),
        outcome: e.outcome,
        detail: e.detail,
        count: e.count,
    }
}

pub(crate) fn key_info(k: KeyInfo) -> pb::KeyInfo {
    pb::KeyInfo {
        key_id: k.key_id.0,
        org: k.org,
        created_at_unix_ms: k.created_at_ms,
        retired_at_unix_ms: k.retired_at_ms.unwrap_or(0),
        current: k.current,
    }
}

fn target(t: Target) -> pb::RevocationTarget {
    use pb::revocation_target::Target as T;
    pb::RevocationTarget {
        target: Some(match t {
            Target::Family(b) => T::Family(b.to_vec()),
            Target::Branch { family, branch } => {
                T::Branch(pb::BranchTarget { family: family.to_vec(), branch: branch.to_vec() })
            }
            Target::Key(KeyId(k)) => T::KeyId(k),
        }),
    }
}

fn revocation(e: LogEvent) -> pb::Revocation {
    pb::Revocation {
        seq: e.seq,
        target: Some(target(e.target)),
        digest: e.digest.to_vec(),
        expires_at_unix_ms: e.expires_at.unwrap_or(0),
    }
}

/// An event for the wire, stamped with the time it is sent (`sent_at_ms`).
pub(crate) fn stream_event(e: StreamEvent, sent_at_ms: i64) -> pb::SubscribeEvent {
    use pb::subscribe_event::Event;
    pb::SubscribeEvent {
        sent_at_unix_ms: sent_at_ms,
        event: Some(match e {
            StreamEvent::Revocation(r) => Event::Revocation(revocation(r)),
            StreamEvent::Heartbeat { head_seq, epoch } => Event::Heartbeat(pb::Heartbeat { head_seq, epoch }),
            StreamEvent::Reset { epoch, head_seq, replay_after, reason } => {
                Event::Reset(pb::Reset { epoch, head_seq, replay_after, reason })
            }
        }),
    }
}
