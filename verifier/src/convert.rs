//! Wire ⇄ core conversions for the verifier: the Check answer it sends and
//! the Verify answer it reads. The rest of the crate speaks its own types.

use tally_proto::v1 as pb;
use tally_token::{FamilyId, Signature};

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
}
