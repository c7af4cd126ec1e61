//! Proto ⇄ SDK type conversions, all in one place.

use tally_proto::v1 as pb;

use crate::types::{
    AuditEntry, AuthorityStatus, Decision, Event, Introspection, Key, Minted, Org, Reason, Revoked, Source,
    VerifierStatus,
};

fn some(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

fn instant(ms: i64) -> Option<i64> {
    (ms != 0).then_some(ms)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn reason(r: i32) -> Reason {
    tally_proto::reason_from_wire(r)
}

fn source(s: i32) -> Source {
    match pb::Source::try_from(s) {
        Ok(pb::Source::Cache) => Source::Cache,
        Ok(pb::Source::Descendant) => Source::Descendant,
        Ok(pb::Source::Authority) => Source::Authority,
        Ok(pb::Source::NegativeCache) => Source::NegativeCache,
        Ok(pb::Source::Local) => Source::Local,
        Ok(pb::Source::Unspecified) | Err(_) => Source::Unspecified,
    }
}

pub(crate) fn decision(r: pb::CheckResponse) -> Decision {
    Decision {
        allowed: r.allowed,
        reason: reason(r.reason),
        detail: r.detail,
        failed_caveat: some(r.failed_caveat),
        org: some(r.org),
        subject: some(r.subject),
        family: some(r.family),
        source: source(r.source),
        expires_at_unix_ms: instant(r.expires_at_unix_ms),
    }
}

pub(crate) fn authority_status(r: pb::AuthorityStatusResponse) -> AuthorityStatus {
    AuthorityStatus {
        replica: r.replica,
        database: r.database,
        epoch: r.epoch,
        head_seq: r.head_seq,
        retained_from: r.retained_from,
        head_read_age_ms: r.head_read_age_ms,
        vouching: r.vouching,
        subscribers: r.subscribers,
    }
}

pub(crate) fn status(r: pb::StatusResponse) -> VerifierStatus {
    VerifierStatus {
        region: r.region,
        epoch: r.epoch,
        applied_seq: r.applied_seq,
        head_seq: r.head_seq,
        cache_entries: r.cache_entries,
        last_contact_age_ms: (r.last_contact_age_ms >= 0).then_some(r.last_contact_age_ms),
        synced: r.synced,
        fail_closed: r.fail_closed,
        resets: r.resets,
        authority_verifies: r.authority_verifies,
        authority: r.authority,
    }
}

pub(crate) fn org(o: pb::OrgInfo) -> Org {
    Org { org: o.org, created_at_unix_ms: o.created_at_unix_ms, current_key_id: o.current_key_id }
}

pub(crate) fn key(k: pb::KeyInfo) -> Key {
    Key {
        key_id: k.key_id,
        org: k.org,
        created_at_unix_ms: k.created_at_unix_ms,
        retired_at_unix_ms: instant(k.retired_at_unix_ms),
        current: k.current,
    }
}

pub(crate) fn audit_entry(e: pb::AuditEntry) -> AuditEntry {
    let text = |s: String| Some(s).filter(|s| !s.is_empty());
    AuditEntry {
        id: e.id,
        at_unix_ms: e.at_unix_ms,
        actor: e.actor,
        action: e.action,
        org: text(e.org),
        target: text(e.target),
        outcome: e.outcome,
        detail: e.detail,
        // An authority from before counts went without them: one event each.
        count: e.count.max(1),
    }
}

pub(crate) fn minted(m: pb::MintResponse) -> Minted {
    Minted { token: m.token, family: m.family, key_id: m.key_id, expires_at_unix_ms: instant(m.expires_at_unix_ms) }
}

pub(crate) fn introspection(r: pb::IntrospectResponse) -> Introspection {
    Introspection {
        active: r.active,
        reason: reason(r.reason),
        org: some(r.org),
        subject: some(r.subject),
        expires_at_unix_ms: instant(r.expires_at_unix_ms),
        caveats: r.caveats,
        family: some(r.family),
        key_id: (r.key_id != 0).then_some(r.key_id),
    }
}

/// `None` for an event this SDK does not understand (a newer server).
pub(crate) fn event(e: pb::SubscribeEvent) -> Option<Event> {
    use pb::revocation_target::Target as T;
    use pb::subscribe_event::Event as E;
    Some(match e.event? {
        E::Revocation(r) => Event::Revocation {
            seq: r.seq,
            target: match r.target?.target? {
                T::Family(f) => Revoked::Family(hex(&f)),
                T::Branch(b) => Revoked::Branch { family: hex(&b.family), branch: hex(&b.branch) },
                T::KeyId(k) => Revoked::Key(k),
            },
            digest: r.digest,
            expires_at_unix_ms: instant(r.expires_at_unix_ms),
        },
        E::Heartbeat(h) => Event::Heartbeat { head_seq: h.head_seq, epoch: h.epoch },
        E::Reset(r) => {
            Event::Reset { epoch: r.epoch, head_seq: r.head_seq, replay_after: r.replay_after, reason: r.reason }
        }
    })
}
