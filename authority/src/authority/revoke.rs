//! Revocation: of a token by whoever holds it (rate-limited per client
//! address when no API credential comes with it), of a family, a key or a
//! whole org by an operator of that org.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tally_token::{FamilyId, KeyId, RevocationId};

use super::admin::check_org_syntax;
use super::{Authority, audit_row};
use crate::authorizer::Role;
use crate::error::{Error, Result};
use crate::keys::SYSTEM_ORG;
use crate::registry::Registered;
use crate::revocation::Target;

/// Revocations of a token by its holder (no API credential) per second from
/// one client address, by default; twice as many in a burst. A holder
/// revokes its own token once; this bounds how fast anyone can grow the log.
pub const DEFAULT_ANONYMOUS_REVOKES_PER_SECOND: u32 = 10;
/// Longest free-text revocation reason.
const MAX_REASON: usize = 256;
/// Client addresses the holders' rate limiter may remember before it forgets
/// those whose allowance has refilled.
const RATE_LIMITED_CLIENTS: usize = 65_536;
/// A holder's burst, in seconds of its rate.
const BURST_SECONDS: NonZeroU32 = NonZeroU32::new(2).unwrap();

/// What Revoke names. `Debug` omits a token's text.
#[derive(Clone)]
pub enum RevokeTarget {
    /// This token (bundle text) and its descendants; its holder may.
    Token(String),
    /// A family, by hex id.
    Family(String),
    /// Every token under a key.
    Key(KeyId),
    /// Every token of an org so far.
    Org(String),
}

impl std::fmt::Debug for RevokeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokeTarget::Token(_) => f.write_str("Token(<redacted>)"),
            RevokeTarget::Family(id) => write!(f, "Family({id})"),
            RevokeTarget::Key(k) => write!(f, "Key({k})"),
            RevokeTarget::Org(o) => write!(f, "Org({o})"),
        }
    }
}

/// The holders' rate limiter: `per_second` revocations (at least 1) from one
/// client address, twice as many in a burst.
pub(super) fn holder_limiter(per_second: u32) -> DefaultKeyedRateLimiter<IpAddr> {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(rate).allow_burst(rate.saturating_mul(BURST_SECONDS)))
}

impl Authority {
    /// holder revoking its token without an API credential is rate-limited
    /// by it. Returns the seq of the (last) log entry written.
    pub async fn revoke(
        &self,
        bearer: Option<&str>,
        client: Option<IpAddr>,
        target: RevokeTarget,
        reason: &str,
    ) -> Result<u64> {
        let seq = self.revoke_target(bearer, client, target, reason).await?;
        self.metrics.revoke.inc();
        Ok(seq)
    }

    /// Refuses a holder's revocation past its address's allowance, unless
    /// the caller holds a valid API credential.
    fn holder_allowance(&self, bearer: Option<&str>, client: Option<IpAddr>) -> Result<()> {
        if bearer.is_some_and(|b| self.is_api_credential(b)) {
            return Ok(());
        }
        if self.holder_revokes.len() > RATE_LIMITED_CLIENTS {
            self.holder_revokes.retain_recent();
        }
        let client = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if self.holder_revokes.check_key(&client).is_err() {
            self.metrics.rate_limited.inc();
            return Err(Error::ResourceExhausted(format!(
                "revocations by token holders are limited to {} a second from one address: retry later, or ask an operator",
                self.settings.anonymous_revokes_per_second
            )));
        }
        Ok(())
    }

    async fn revoke_target(
        &self,
        bearer: Option<&str>,
        client: Option<IpAddr>,
        target: RevokeTarget,
        reason: &str,
    ) -> Result<u64> {
        if reason.len() > MAX_REASON {
            return Err(Error::InvalidArgument(format!("reason longer than {MAX_REASON} bytes")));
        }
        match target {
            RevokeTarget::Token(text) => {
                self.holder_allowance(bearer, client)?;
                // Possession is the credential (RFC 7009): a token that verifies
                // may be revoked by whoever presents it.
                let verdict = self.verify_bundle_fresh(&text).await?;
                // A valid verdict carries the chain up to the presented token.
                let (Some(family), Some(signature)) = (verdict.family, verdict.chain.last()) else {
                    return Err(Error::InvalidArgument(format!(
                        "token does not verify ({}): nothing to revoke",
                        verdict.detail
                    )));
                };
                // The token as minted: every token of the family descends from
                // it, so its branch is the whole family; said so, it takes no
                // part of the family's bound on branch revocations.
                let presented = verdict.chain.len() - 1;
                let minted = match self.registered(&family).await {
                    Ok(row) => row.and_then(|r| r.minted_caveats).map(usize::from),
                    Err(_) => None,
                };
                let target = if presented == 0 || minted == Some(presented) {
                    Target::Family(family.0)
                } else {
                    Target::Branch { family: family.0, branch: RevocationId::branch_bytes(signature) }
                };
                let actor = format!("holder:{family}");
                let audit = audit_row(&actor, "revoke", verdict.org.as_deref(), Some(family.to_hex()), reason);
                self.log.revoke(vec![(target, verdict.root_expires_at_ms)], audit).await
            }
            RevokeTarget::Family(hex_id) => {
                let family = FamilyId::from_hex(&hex_id)
                    .ok_or_else(|| Error::InvalidArgument("family id must be 32 hex characters".into()))?;
                let registered = self.registered(&family).await?;
                let org = registered.as_ref().map(|r| &*r.org);
                let caller = self.authorize(bearer, "revoke", org, &[Role::Operator])?;
                // Only after authorizing: who may not revoke learns nothing of the registry.
                let Some(Registered { expires_at: expires, .. }) = registered else {
                    return Err(Error::NotFound(format!(
                        "family {family} was not minted here, or expired and was pruned: nothing to revoke"
                    )));
                };
                let audit = audit_row(&caller.actor(), "revoke", org, Some(family.to_hex()), reason);
                self.log.revoke(vec![(Target::Family(family.0), expires)], audit).await
            }
            RevokeTarget::Key(key_id) => {
                let org = self.key_org_fresh(key_id, bearer).await?;
                let caller = self.authorize(bearer, "revoke", Some(&org), &[Role::Operator])?;
                let audit = audit_row(&caller.actor(), "revoke", Some(&org), Some(format!("key {key_id}")), reason);
                self.log.retire_key(key_id, true, audit).await
            }
            RevokeTarget::Org(org) => {
                check_org_syntax(&org)?;
                if org == SYSTEM_ORG {
                    return Err(Error::FailedPrecondition("the system org cannot be revoked wholesale".into()));
                }
                let caller = self.authorize(bearer, "revoke", Some(&org), &[Role::Operator])?;
                let audit = audit_row(&caller.actor(), "revoke", Some(&org), Some(format!("org {org}")), reason);
                self.log.revoke_org(&org, audit).await
            }
        }
    }

    /// Registry lookup: (org, expiry, minted caveats) of a minted family.
    /// Rows never change, so a remembered one is as good as the database's.
    pub(super) async fn registered(&self, family: &FamilyId) -> Result<Option<Registered>> {
        if let Some(row) = self.registry.get(family) {
            return Ok(Some(row));
        }
        self.metrics.registry_reads.inc();
        let row = self.reads.registered(family).await?;
        Ok(row.map(|row| {
            let minted = row.minted_caveats.and_then(|m| u16::try_from(m).ok());
            self.registry.insert(*family, &row.org, row.expires_at, minted)
        }))
    }
}
