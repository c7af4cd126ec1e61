//! What the revocation stream says, in the verifier's terms (read from the
//! wire's `tally.v1.SubscribeEvent` in convert.rs).

use tally_token::{FamilyId, KeyId};

/// One message of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamMessage {
    /// When the authority sent it, by its clock (unix ms; 0 or less: unknown).
    pub(crate) sent_at_ms: i64,
    /// `None`: an event this side does not know (a newer authority).
    pub(crate) event: Option<StreamEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    Revocation(Revocation),
    /// The seq of the last event in the log, in its epoch.
    Heartbeat {
        head_seq: u64,
        epoch: String,
    },
    /// Flush everything: the log is replayed after `replay_after`.
    Reset {
        epoch: String,
        head_seq: u64,
        replay_after: u64,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revocation {
    pub(crate) seq: u64,
    pub(crate) target: Target,
    /// The log's running digest after this event.
    pub(crate) digest: Vec<u8>,
    /// When every token it covers has expired (unix ms; 0: never).
    pub(crate) expires_at_ms: i64,
}

/// What a revocation revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Family(FamilyId),
    /// A branch of a family: the token whose signature hashes to `branch`, and its descendants.
    Branch {
        family: FamilyId,
        branch: [u8; 16],
    },
    /// Every token under a root key (retired).
    Key(KeyId),
    /// Missing or malformed: it may concern anything cached.
    Unknown,
}
