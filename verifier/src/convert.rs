//! Wire ⇄ core conversions for the verifier: the Check answer it sends, the
//! Verify answer and the revocation stream's messages it reads. The rest of
//! the crate speaks its own types.

use tally_proto::v1 as pb;
use tally_token::{FamilyId, KeyId, Signature};

use crate::event::{Revocation, StreamEvent, StreamMessage, Target};
use crate::outcome::{Outcome, Source};
use crate::verdict::{Verdict, Verified};

pub(crate) fn source(s: Source) -> pb::Source {
    match s {
        Source::Cache => pb::Source::Cache,
        Source::Descendant => pb::Source::Descendant,
        Source::Authority => pb::Source::Authority,
        Source::NegativeCache => pb::Source::NegativeCache,
        Source::Local => pb::Source::Local,
    }
}

pub(crate) fn check_response(o: Outcome) -> pb::CheckResponse {
    pb::CheckResponse {
        allowed: o.allowed,
        reason: pb::Reason::from(o.reason) as i32,
        detail: o.detail,
        failed_caveat: o.failed_caveat,
        org: o.org.to_string(),
        subject: o.subject,
        family: o.family.map(|f| f.to_hex()).unwrap_or_default(),
        source: source(o.source) as i32,
        expires_at_unix_ms: o.expires_at_ms,
    }
}

/// The authority's Verify answer. A reason this side does not know is
/// `Unspecified`; a chain with a signature of the wrong length is dropped
/// whole (the answer stands, nothing of it is cached).
pub(crate) fn verdict(resp: pb::VerifyResponse) -> Verdict {
    let family = <[u8; 16]>::try_from(resp.family.as_slice()).ok().map(FamilyId);
    if !resp.valid {
        let reason = tally_proto::reason_from_wire(resp.reason);
        return Verdict::Refused { reason, detail: resp.detail, family };
    }
    let chain: Option<Vec<Signature>> =
        resp.chain.iter().map(|s| <[u8; 32]>::try_from(s.as_slice()).ok().map(Signature::from_bytes)).collect();
    Verdict::Verified(Verified {
        org: resp.org.into(),
        family,
        expires_at_ms: Some(resp.expires_at_unix_ms).filter(|&t| t != 0),
        epoch: resp.epoch,
        chain_from: resp.chain_from as usize,
        chain: chain.unwrap_or_default(),
    })
}

/// A message of the revocation stream. An event this side does not know is
/// `None`; a target it cannot read is `Unknown`.
pub(crate) fn stream_message(m: pb::SubscribeEvent) -> StreamMessage {
    use pb::subscribe_event::Event;
    let event = m.event.map(|e| match e {
        Event::Revocation(r) => StreamEvent::Revocation(Revocation {
            seq: r.seq,
            target: target(r.target),
            digest: r.digest,
            expires_at_ms: r.expires_at_unix_ms,
        }),
        Event::Heartbeat(hb) => StreamEvent::Heartbeat { head_seq: hb.head_seq, epoch: hb.epoch },
        Event::Reset(rs) => StreamEvent::Reset {
            epoch: rs.epoch,
            head_seq: rs.head_seq,
            replay_after: rs.replay_after,
            reason: rs.reason,
        },
    });
    StreamMessage { sent_at_ms: m.sent_at_unix_ms, event }
}

fn target(t: Option<pb::RevocationTarget>) -> Target {
    use pb::revocation_target::Target as T;
    let id = |b: &[u8]| <[u8; 16]>::try_from(b).ok();
    match t.and_then(|t| t.target) {
        Some(T::Family(f)) => id(&f).map_or(Target::Unknown, |f| Target::Family(FamilyId(f))),
        Some(T::Branch(b)) => match (id(&b.family), id(&b.branch)) {
            (Some(family), Some(branch)) => Target::Branch { family: FamilyId(family), branch },
            _ => Target::Unknown,
        },
        Some(T::KeyId(k)) => Target::Key(KeyId(k)),
        None => Target::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use tally_token::Reason;

    use super::*;

    #[test]
    fn a_verify_answer_reads_as_a_verdict() {
        let valid = pb::VerifyResponse {
            valid: true,
            reason: pb::Reason::Ok as i32,
            org: "acme".into(),
            family: vec![7; 16],
            expires_at_unix_ms: 1_000,
            chain: vec![vec![1; 32], vec![2; 32]],
            chain_from: 3,
            epoch: "e".into(),
            ..Default::default()
        };
        let Verdict::Verified(v) = verdict(valid.clone()) else { panic!("valid") };
        assert_eq!((&*v.org, v.family, v.expires_at_ms), ("acme", Some(FamilyId([7; 16])), Some(1_000)));
        assert_eq!((v.epoch.as_str(), v.chain_from), ("e", 3));
        assert_eq!(v.chain, [Signature::from_bytes([1; 32]), Signature::from_bytes([2; 32])]);
        // No expiry, no family, a signature cut short: the answer stands, its chain goes.
        let odd = pb::VerifyResponse {
            expires_at_unix_ms: 0,
            family: vec![7; 3],
            chain: vec![vec![1; 32], vec![2; 31]],
            ..valid.clone()
        };
        let Verdict::Verified(v) = verdict(odd) else { panic!("valid") };
        assert_eq!((v.expires_at_ms, v.family, v.chain.len()), (None, None, 0));

        let refused =
            pb::VerifyResponse { valid: false, reason: pb::Reason::Revoked as i32, detail: "no".into(), ..valid };
        let family = Some(FamilyId([7; 16]));
        assert_eq!(verdict(refused.clone()), Verdict::Refused { reason: Reason::Revoked, detail: "no".into(), family });
        let newer = pb::VerifyResponse { reason: 999, ..refused };
        assert!(matches!(verdict(newer), Verdict::Refused { reason: Reason::Unspecified, .. }));
    }

    #[test]
    fn an_outcome_reads_as_a_check_response() {
        let o = Outcome {
            allowed: false,
            reason: Reason::WrongOrg,
            detail: "d".into(),
            failed_caveat: "c".into(),
            org: "acme".into(),
            subject: "alice".into(),
            family: Some(FamilyId([0xab; 16])),
            source: Source::Descendant,
            expires_at_ms: 5,
        };
        let r = check_response(o);
        assert_eq!((r.allowed, r.reason(), r.source()), (false, pb::Reason::WrongOrg, pb::Source::Descendant));
        assert_eq!((r.detail.as_str(), r.failed_caveat.as_str(), r.org.as_str()), ("d", "c", "acme"));
        assert_eq!((r.subject.as_str(), r.family, r.expires_at_unix_ms), ("alice", "ab".repeat(16), 5));
        for s in [Source::Cache, Source::Descendant, Source::Authority, Source::NegativeCache, Source::Local] {
            assert_ne!(source(s), pb::Source::Unspecified, "{s:?}");
        }
    }

    #[test]
    fn stream_messages_read_as_events_and_unreadable_targets_as_unknown() {
        use pb::revocation_target::Target as T;
        use pb::subscribe_event::Event;
        let revocation = |target: Option<T>| {
            let r = pb::Revocation {
                seq: 7,
                target: Some(pb::RevocationTarget { target }),
                digest: vec![1, 2],
                expires_at_unix_ms: 9,
            };
            let m = stream_message(pb::SubscribeEvent { event: Some(Event::Revocation(r)), sent_at_unix_ms: 5 });
            assert_eq!(m.sent_at_ms, 5);
            match m.event {
                Some(StreamEvent::Revocation(r)) => {
                    assert_eq!((r.seq, r.digest.as_slice(), r.expires_at_ms), (7, &[1u8, 2][..], 9));
                    r.target
                }
                other => panic!("not a revocation: {other:?}"),
            }
        };
        assert_eq!(revocation(Some(T::Family(vec![3; 16]))), Target::Family(FamilyId([3; 16])));
        assert_eq!(revocation(Some(T::Family(vec![3; 15]))), Target::Unknown);
        let branch = |family, branch| Some(T::Branch(pb::BranchTarget { family, branch }));
        assert_eq!(
            revocation(branch(vec![3; 16], vec![4; 16])),
            Target::Branch { family: FamilyId([3; 16]), branch: [4; 16] }
        );
        assert_eq!(revocation(branch(vec![3; 16], vec![4; 17])), Target::Unknown);
        assert_eq!(revocation(Some(T::KeyId(8))), Target::Key(KeyId(8)));
        assert_eq!(revocation(None), Target::Unknown);

        let hb = pb::Heartbeat { head_seq: 3, epoch: "e".into() };
        let m = stream_message(pb::SubscribeEvent { event: Some(Event::Heartbeat(hb)), sent_at_unix_ms: 0 });
        assert_eq!(m.event, Some(StreamEvent::Heartbeat { head_seq: 3, epoch: "e".into() }));
        let rs = pb::Reset { epoch: "f".into(), head_seq: 4, replay_after: 2, reason: "r".into() };
        let m = stream_message(pb::SubscribeEvent { event: Some(Event::Reset(rs)), sent_at_unix_ms: 0 });
        let reset = StreamEvent::Reset { epoch: "f".into(), head_seq: 4, replay_after: 2, reason: "r".into() };
        assert_eq!(m.event, Some(reset));
        assert_eq!(stream_message(pb::SubscribeEvent::default()).event, None, "an event this side does not know");
    }
}
