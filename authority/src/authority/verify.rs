//! Verification: a bundle's signatures under the key ring, its revocation
//! ids against the log, its expiry by the authority's clock; for verifiers,
//! the chain signatures they may cache; introspection for operators.

use tally_token::{DecodedBundle, Error as TokenError, FamilyId, KeyId, Predicate, Signature, TallyId};

use super::Authority;
use crate::authorizer::Role;
use crate::error::{Error, Result};
use crate::keys::SYSTEM_ORG;

/// Why a bundle is or is not valid (request-independent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Ok,
    Forged,
    UnknownKey,
    RetiredKey,
    Revoked,
    Expired,
    CaveatFailed,
    DischargeInvalid,
}

/// The answer to Verify.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub reason: Reason,
    pub detail: String,
    pub org: Option<String>,
    pub key_id: Option<KeyId>,
    pub family: Option<FamilyId>,
    pub expires_at_ms: Option<i64>,
    /// Genuine root chain signatures, when valid (secret): element i is the
    /// signature after `chain_from + i` caveats, up to the whole token.
    pub chain: Vec<Signature>,
    /// The position of `chain`'s first element (0 until [`Authority::verify`]
    /// trims the chain to what a verifier may hold).
    pub chain_from: usize,
    /// Log position as of which the token was not revoked.
    pub as_of_seq: u64,
    pub epoch: String,
    /// First-party caveats of the root token (for introspection).
    pub caveats: Vec<String>,
    /// From `subject = …`.
    pub subject: Option<String>,
    /// Earliest `expires` of the root token itself (not its discharges, which
    /// can be renewed): how long a revocation of it must be kept.
    pub root_expires_at_ms: Option<i64>,
}

impl Authority {
    /// Verifies a bundle, request-independently. `Err` only for malformed input.
    pub fn verify_bundle(&self, text: &str) -> Result<Verdict> {
        self.metrics.verify.inc();
        let malformed = |e: TokenError| Error::InvalidArgument(format!("malformed bundle: {e}"));
        let decoded = DecodedBundle::decode(text, self.limits()).map_err(malformed)?;
        let bundle = decoded.view(self.limits()).map_err(malformed)?;
        // Read the head before the revoked set: the verdict holds as of it.
        let head = self.head();
        let mut v = Verdict {
            reason: Reason::Ok,
            detail: String::new(),
            org: None,
            key_id: None,
            family: None,
            expires_at_ms: None,
            chain: Vec::new(),
            chain_from: 0,
            as_of_seq: head.seq,
            epoch: self.epoch().to_owned(),
            caveats: Vec::new(),
            subject: None,
            root_expires_at_ms: None,
        };
        if let Ok(id) = TallyId::decode(bundle.root.identifier) {
            v.key_id = Some(id.key_id);
            v.family = Some(id.family);
            v.org = self.keys.org_of(id.key_id);
        }
        let verified = match self.keys.verify(&bundle, self.limits()) {
            Ok(verified) => verified,
            Err(e) => {
                v.reason = match e {
                    TokenError::UnknownKey(_) | TokenError::ForeignIdentifier(_) => Reason::UnknownKey,
                    TokenError::RetiredKey(_) => Reason::RetiredKey,
                    TokenError::BadSignature => Reason::Forged,
                    TokenError::TooLarge { .. } => return Err(Error::InvalidArgument(e.to_string())),
                    _ => Reason::DischargeInvalid,
                };
                v.detail = e.to_string();
                return Ok(v);
            }
        };
        v.caveats = bundle
            .root
            .caveats
            .iter()
            .filter(|c| !c.is_third_party())
            .map(|c| String::from_utf8_lossy(c.id).into_owned())
            .collect();
        if self.is_revoked(&verified.revocation_ids()) {
            v.reason = Reason::Revoked;
            v.detail = "token revoked".into();
            return Ok(v);
        }
        let now_ms = self.clock.now_ms();
        let skew_ms = self.settings.skew.as_millis() as i64;
        // On Tally's own API tokens (system key) `org = X` narrows an operator
        // to org X; it is not the token's org, so it is not compared.
        let api_token = v.org.as_deref() == Some(SYSTEM_ORG);
        // The root token's own first-party caveats come first in `first_party`.
        let root_caveats = bundle.root.caveats.iter().filter(|c| !c.is_third_party()).count();
        for (i, c) in verified.first_party.iter().enumerate() {
            match Predicate::parse_bytes(c) {
                Ok(Predicate::Org(org)) if !api_token && v.org.as_deref() != Some(org.as_str()) => {
                    v.reason = Reason::CaveatFailed;
                    v.detail = format!("caveat `org = {org}` does not match the key's org");
                    return Ok(v);
                }
                Ok(Predicate::Expires(t)) => {
                    let t_ms = (t / 1_000_000) as i64;
                    v.expires_at_ms = Some(v.expires_at_ms.map_or(t_ms, |e| e.min(t_ms)));
                    if i < root_caveats {
                        v.root_expires_at_ms = Some(v.root_expires_at_ms.map_or(t_ms, |e| e.min(t_ms)));
                    }
                }
                Ok(Predicate::Subject(s)) if v.subject.is_none() => v.subject = Some(s),
                _ => {}
            }
        }
        if v.expires_at_ms.is_some_and(|e| now_ms >= e + skew_ms) {
            v.reason = Reason::Expired;
            v.detail = "token expired".into();
            return Ok(v);
        }
        v.chain = verified.chain;
        Ok(v)
    }

    /// [`Self::verify_bundle`], reading through to the database when the
    /// token's key is unknown here and other replicas write it: a key
    /// another replica just made verifies at once. Only callers already
    /// authorized or rate-limited get here; the writer reads the keys once
    /// per batch however many ask.
    pub(crate) async fn verify_bundle_fresh(&self, text: &str) -> Result<Verdict> {
        self.log.current()?;
        let verdict = self.verify_bundle(text)?;
        if verdict.reason != Reason::UnknownKey || verdict.key_id.is_none() || !self.log.shared() {
            return Ok(verdict);
        }
        self.log.follow().await?;
        self.verify_bundle(text)
    }

    /// Verify, for verifiers (and operators). A verifier gets the chain
    /// signatures of a valid token from the position it was minted at on:
    /// whoever holds the signature at position k can append any caveats
    /// from there, so a signature below the minted length would let a
    /// verifier strip minted caveats (from the identifier alone it could
    /// build the family with none). Operators get no signatures, nor
    /// does anyone for Tally's own API tokens: those are never cached, and
    /// their chain would let a verifier extend its own credential.
    pub async fn verify(&self, bearer: Option<&str>, bundle: &str) -> Result<Verdict> {
        let caller = self.authorize(bearer, "verify", None, &[Role::Verifier, Role::Operator])?;
        let mut verdict = self.verify_bundle_fresh(bundle).await?;
        let from = match caller.role {
            Role::Verifier if !verdict.chain.is_empty() => self.cacheable_from(&verdict).await,
            _ => None,
        };
        match from {
            Some(from) => {
                verdict.chain.drain(..from);
                verdict.chain_from = from;
            }
            None => verdict.chain.clear(),
        }
        Ok(verdict)
    }

    /// Where a verifier's share of a valid token's chain starts: the number
    /// of caveats it was minted with, from the registry. A token whose count
    /// is not recorded (minted before it was) gets its presented signature
    /// only, which its presenter holds anyway: it is then cached as an exact
    /// token, with no descendant coverage. `None` for API tokens.
    async fn cacheable_from(&self, v: &Verdict) -> Option<usize> {
        let (family, org) = (v.family?, v.org.as_deref()?);
        if org == SYSTEM_ORG {
            return None;
        }
        let presented = v.chain.len() - 1;
        let minted = match self.registered(&family).await {
            Ok(Some(row)) if &*row.org == org => row.minted_caveats,
            Ok(_) => None,
            Err(e) => {
                // The verdict stands; only the cache's share shrinks.
                tracing::warn!(error = %e, %family, "registry read failed: handing out the presented signature only");
                None
            }
        };
        Some(minted.map_or(presented, usize::from).min(presented))
    }

    /// Introspection (RFC 7662-like), for operators of the token's org and verifiers.
    pub fn introspect(&self, bearer: Option<&str>, bundle: &str) -> Result<Verdict> {
        if bearer.is_none() {
            // No work at all for anonymous callers (the scope check needs the token's org).
            self.authorize(None, "introspect", None, &[Role::Operator, Role::Verifier])?;
        }
        self.log.current()?;
        let verdict = self.verify_bundle(bundle)?;
        self.authorize(bearer, "introspect", verdict.org.as_deref(), &[Role::Operator, Role::Verifier])?;
        Ok(verdict)
    }
}
