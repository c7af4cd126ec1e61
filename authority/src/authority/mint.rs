//! Minting: a token for an org, under the org's current key, with the
//! caller's caveats after the ones Mint adds (`org`, `expires`, `subject`),
//! recorded in the registry before it is handed out.

use std::time::Duration;

use tally_token::{FamilyId, KeyId, Macaroon, Predicate, TallyId, format_rfc3339};

use super::admin::validate_org_name;
use super::{Authority, audit_row};
use crate::authorizer::Role;
use crate::clock::unix_ms;
use crate::error::{Error, Result};
use crate::keys::SYSTEM_ORG;
use crate::store::TokenRow;

/// Most caveats a Mint request may add.
const MAX_MINT_CAVEATS: usize = 32;

/// What Mint is asked for.
#[derive(Debug, Clone, Default)]
pub struct MintSpec {
    pub org: String,
    pub caveats: Vec<String>,
    pub ttl: Option<Duration>,
    pub subject: Option<String>,
    pub location: Option<String>,
}

/// A minted token. `Debug` omits the token.
#[derive(Clone)]
pub struct Minted {
    /// The token text (secret: for the caller only).
    pub token: String,
    pub family: FamilyId,
    pub key_id: KeyId,
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"<redacted>")
            .field("family", &self.family)
            .field("key_id", &self.key_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

impl Authority {
    /// Mints a token for an org.
    pub async fn mint(&self, bearer: Option<&str>, spec: MintSpec) -> Result<Minted> {
        validate_org_name(&spec.org).or_else(|e| if spec.org == SYSTEM_ORG { Ok(()) } else { Err(e) })?;
        // A token of the system org is a credential for Tally's own API: minting
        // one is its own action, so `action in mint` cannot mint an operator.
        let action = if spec.org == SYSTEM_ORG { "mint.system" } else { "mint" };
        let caller = self.authorize(bearer, action, Some(&spec.org), &[Role::Operator])?;
        self.mint_unchecked(&caller.actor(), spec).await
    }

    pub(super) async fn mint_unchecked(&self, actor: &str, spec: MintSpec) -> Result<Minted> {
        let ttl = spec.ttl.unwrap_or(self.settings.default_ttl);
        if ttl.is_zero() || ttl > self.settings.max_ttl {
            return Err(Error::InvalidArgument(format!(
                "ttl must be between 1 s and {} s",
                self.settings.max_ttl.as_secs()
            )));
        }
        if spec.caveats.len() > MAX_MINT_CAVEATS {
            return Err(Error::InvalidArgument(format!("at most {MAX_MINT_CAVEATS} caveats")));
        }
        // Nothing is minted that Verify would refuse as malformed.
        let field_max = self.limits().max_field_bytes;
        let too_long = |what: &str| Error::InvalidArgument(format!("{what} longer than {field_max} bytes"));
        if spec.caveats.iter().any(|c| c.len() > field_max) {
            return Err(too_long("a caveat is"));
        }
        if spec.subject.as_ref().is_some_and(|s| s.len() + "subject = ".len() > field_max) {
            return Err(too_long("subject is"));
        }
        if spec.location.as_ref().is_some_and(|l| l.len() > field_max) {
            return Err(too_long("location is"));
        }
        for c in &spec.caveats {
            match Predicate::parse(c) {
                Err(e) => return Err(Error::InvalidArgument(format!("invalid caveat {c:?}: {e}"))),
                Ok(Predicate::Org(_)) if spec.org != SYSTEM_ORG => {
                    return Err(Error::InvalidArgument("the org caveat is added by Mint; do not pass one".into()));
                }
                Ok(_) => {}
            }
        }
        let (key_id, derived) = match self.keys.signing_key(&spec.org) {
            // An org another replica made: read through, once.
            Err(Error::NotFound(_)) if self.log.shared() => {
                self.log.follow().await?;
                self.keys.signing_key(&spec.org)?
            }
            signing => signing?,
        };
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce)?;
        let id = TallyId::new(key_id, nonce);
        let mut m = Macaroon::mint_with_derived(&derived, id.encode(), spec.location.filter(|l| !l.is_empty()));
        // System tokens carry no org caveat: for Tally's API an `org = X`
        // caveat narrows an operator to org X (see `authorizer/`).
        if spec.org != SYSTEM_ORG {
            m.add_first_party(format!("org = {}", spec.org));
        }
        let expires = self.clock.now() + ttl;
        let expires_ms = unix_ms(expires);
        let expires_secs = expires_ms.div_euclid(1000);
        m.add_first_party(format!("expires < {}", format_rfc3339(i128::from(expires_secs) * 1_000_000_000)));
        if let Some(subject) = spec.subject.as_deref().filter(|s| !s.is_empty()) {
            let caveat = format!("subject = {subject}");
            Predicate::parse(&caveat).map_err(|_| Error::InvalidArgument("subject must be one word".into()))?;
            m.add_first_party(caveat);
        }
        for c in &spec.caveats {
            m.add_first_party(c.as_bytes());
        }
        let size = m.encode_v2().len();
        if size > self.limits().max_token_bytes {
            return Err(Error::InvalidArgument(format!(
                "the token would be {size} bytes, more than {}",
                self.limits().max_token_bytes
            )));
        }
        // At most MAX_MINT_CAVEATS + 3, so it fits.
        let minted_caveats = m.caveats().len() as u16;
        let row = TokenRow {
            family: nonce,
            org: spec.org.clone(),
            key_id,
            subject: spec.subject.clone(),
            expires_at: Some(expires_secs * 1000),
            minted_caveats,
        };
        let audit = audit_row(actor, "mint", Some(&spec.org), Some(id.family.to_hex()), &format!("key {key_id}"));
        self.log.record_mint(row, audit).await?;
        let expires_at = Some(expires_secs * 1000);
        self.registry.insert(id.family, &spec.org, expires_at, Some(minted_caveats));
        self.metrics.mint.inc();
        Ok(Minted { token: m.to_text(), family: id.family, key_id, expires_at_ms: Some(expires_secs * 1000) })
    }
}
