//! `tally.v1.Reason` on the wire and `tally_token::Reason` in the code:
//! the one conversion both ways, for every gRPC edge.

use tally_token::Reason;

use crate::v1 as pb;

impl From<pb::Reason> for Reason {
    fn from(r: pb::Reason) -> Self {
        match r {
            pb::Reason::Ok => Reason::Ok,
            pb::Reason::Malformed => Reason::Malformed,
            pb::Reason::Forged => Reason::Forged,
            pb::Reason::UnknownKey => Reason::UnknownKey,
            pb::Reason::RetiredKey => Reason::RetiredKey,
            pb::Reason::Revoked => Reason::Revoked,
            pb::Reason::Expired => Reason::Expired,
            pb::Reason::NotYetValid => Reason::NotYetValid,
            pb::Reason::CaveatFailed => Reason::CaveatFailed,
            pb::Reason::DischargeInvalid => Reason::DischargeInvalid,
            pb::Reason::AuthorityUnavailable => Reason::AuthorityUnavailable,
            pb::Reason::WrongOrg => Reason::WrongOrg,
            pb::Reason::Unspecified => Reason::Unspecified,
        }
    }
}

impl From<Reason> for pb::Reason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Ok => pb::Reason::Ok,
            Reason::Malformed => pb::Reason::Malformed,
            Reason::Forged => pb::Reason::Forged,
            Reason::UnknownKey => pb::Reason::UnknownKey,
            Reason::RetiredKey => pb::Reason::RetiredKey,
            Reason::Revoked => pb::Reason::Revoked,
            Reason::Expired => pb::Reason::Expired,
            Reason::NotYetValid => pb::Reason::NotYetValid,
            Reason::CaveatFailed => pb::Reason::CaveatFailed,
            Reason::DischargeInvalid => pb::Reason::DischargeInvalid,
            Reason::AuthorityUnavailable => pb::Reason::AuthorityUnavailable,
            Reason::WrongOrg => pb::Reason::WrongOrg,
            Reason::Unspecified => pb::Reason::Unspecified,
        }
    }
}

/// The reason a wire value stands for; values this side does not know
/// (a newer peer) are `Unspecified`.
pub fn reason_from_wire(value: i32) -> Reason {
    pb::Reason::try_from(value).map_or(Reason::Unspecified, Reason::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_and_names_match() {
        for value in 0..=32 {
            let Ok(wire) = pb::Reason::try_from(value) else {
                assert_eq!(reason_from_wire(value), Reason::Unspecified);
                continue;
            };
            let reason = Reason::from(wire);
            assert_eq!(pb::Reason::from(reason), wire);
            // The wire's enum names, unprefixed and lowercased, are the names Tally prints.
            let name = wire.as_str_name().trim_start_matches("REASON_").to_ascii_lowercase();
            assert_eq!(reason.as_str(), name, "{wire:?}");
        }
    }
}
