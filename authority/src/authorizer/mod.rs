//! Who may call what, for which org. Tally dogfoods macaroons: callers
//! present a token minted under the **system** org's key, carrying
//! `role = operator` or `role = verifier`, optionally narrowed by `org = X`
//! (acts only on org X) and `action in …` (only those RPCs). The token's
//! caveats are evaluated with the RPC's action and target org as the
//! request. Tokens whose signatures verified are remembered (`bearers.rs`);
//! what can change (the key retired, the token revoked, the time) is checked
//! on every call.

mod bearers;

use std::sync::Arc;
use std::time::Duration;

use tally_token::{CompiledCaveats, Context, DecodedBundle, DenialKind, FamilyId, Limits, Predicate};

use crate::clock::Clock;
use crate::error::Error;
use crate::keys::{KeyRing, SYSTEM_ORG};
use crate::log::Revoked;
use crate::store::{AuditRow, DENIED};
use bearers::{Bearers, VerifiedBearer};

/// API tokens whose verification is remembered (operators' and verifiers'
/// tokens: a few in use at a time).
const BEARERS_REMEMBERED: usize = 1024;
/// Longest refusal detail an audit row keeps, in bytes.
const MAX_REFUSAL_DETAIL: usize = 256;

/// The roles of Tally's own API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages orgs and keys, mints, revokes.
    Operator,
    /// Verifies tokens and follows the revocation stream.
    Verifier,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Verifier => "verifier",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Family of the caller's token (for audit; never the token).
    pub family: FamilyId,
    /// Its role.
    pub role: Role,
    /// `Some(org)` when the token is narrowed to one org.
    pub org_scope: Option<String>,
}

impl Caller {
    /// The audit `actor` column.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.name(), self.family)
    }
}

/// Why a bearer was refused: kept apart from [`Error`] until it is audited.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// Unauthenticated (true) or permission denied (false).
    unauthenticated: bool,
    /// Family id of the presented token, or `anonymous`.
    pub(crate) actor: String,
    pub(crate) detail: String,
}

impl Refusal {
    fn new(unauthenticated: bool, actor: &str, detail: &str) -> Self {
        Self { unauthenticated, actor: actor.to_owned(), detail: detail.to_owned() }
    }

    /// Its audit row. Refusals are aggregated per actor, action, org and
    /// minute, so `org` must name an org that exists (made-up names would
    /// add rows), and the detail (which may quote a caveat) is cut short.
    pub(crate) fn audit_row(&self, action: &'static str, org: Option<&str>) -> AuditRow {
        AuditRow {
            actor: self.actor.clone(),
            action,
            org: org.map(str::to_owned),
            target: None,
            outcome: DENIED,
            detail: truncate(&self.detail, MAX_REFUSAL_DETAIL).to_owned(),
        }
    }

    /// The error the caller gets.
    pub(crate) fn into_error(self) -> Error {
        if self.unauthenticated { Error::Unauthenticated(self.detail) } else { Error::PermissionDenied(self.detail) }
    }
}

/// The token of an `authorization` header value `Bearer <token>` (or
/// `bearer`), trimmed; `None` when the value is not of that form.
pub(crate) fn bearer_text(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

/// Decides who may call what.
#[derive(Debug)]
pub(crate) struct Authorizer {
    keys: Arc<KeyRing>,
    revoked: Arc<Revoked>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// Clock skew allowed on `expires`.
    skew: Duration,
    /// API tokens whose signatures verified.
    bearers: Bearers,
}

impl Authorizer {
    /// Authorizes against the key ring and the revoked ids as they are at
    /// each call.
    pub(crate) fn new(
        keys: Arc<KeyRing>,
        revoked: Arc<Revoked>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        skew: Duration,
    ) -> Self {
        Self { keys, revoked, clock, limits, skew, bearers: Bearers::new(BEARERS_REMEMBERED) }
    }

    /// Whether `text` is a live credential of Tally's API: a token of the
    /// system org whose chain verifies, under an active key, not revoked,
    /// not expired. What it may do is decided per call ([`Authorizer::check`]);
    /// admission only needs to know it is no anonymous caller. Nothing is
    /// remembered here.
    pub(crate) fn is_api_credential(&self, text: &str) -> bool {
        let bearer = match self.bearers.get(text) {
            Some(remembered) => remembered,
            None => match self.verify_bearer(text) {
                Ok(verified) => verified,
                Err(_) => return false,
            },
        };
        let skew_ms = self.skew.as_millis() as i64;
        self.keys.is_active(bearer.key_id)
            && !self.revoked.any(&bearer.revocation_ids)
            && bearer.expires_at_ms.is_none_or(|e| self.clock.now_ms() < e + skew_ms)
    }

    /// Checks the bearer for `action` on `target_org` (None: a global action)
    /// by one of `roles`.
    pub(crate) fn check(
        &self,
        bearer: Option<&str>,
        action: &'static str,
        target_org: Option<&str>,
        roles: &[Role],
    ) -> Result<Caller, Refusal> {
        let anonymous = |detail: &str| Refusal::new(true, "anonymous", detail);
        let text = bearer.ok_or_else(|| anonymous("missing bearer token"))?;
        let (bearer, seen) = match self.bearers.get(text) {
            Some(remembered) => (remembered, true),
            None => (self.verify_bearer(text)?, false),
        };
        let who = || bearer.family.to_hex();
        // Every call: the key may have been retired, the token revoked, since it was verified.
        if !self.keys.is_active(bearer.key_id) {
            return Err(anonymous("invalid bearer token"));
        }
        if self.revoked.any(&bearer.revocation_ids) {
            return Err(Refusal::new(true, &who(), "bearer token revoked"));
        }
        // The role the token claims must be one this RPC accepts, and the token
        // must claim it: for `role`, presence is required, unlike other caveats.
        let role = roles.iter().copied().find(|r| bearer.role.as_deref() == Some(r.name())).ok_or_else(|| {
            Refusal::new(false, &who(), &format!("{action} needs a token with role = {}", role_list(roles)))
        })?;
        let mut ctx = Context::at(self.clock.now());
        ctx.action = Some(action);
        ctx.org = target_org;
        ctx.role = Some(role.name());
        let claims = bearer.caveats.evaluate(&ctx).map_err(|d| match d.kind {
            DenialKind::Expired | DenialKind::NotYetValid => Refusal::new(true, &who(), &d.to_string()),
            _ => Refusal::new(false, &who(), &d.to_string()),
        })?;
        if claims.org == Some(SYSTEM_ORG) {
            // System tokens are unscoped by having no org caveat; `org = system`
            // would otherwise reach global powers through the system org.
            return Err(Refusal::new(false, &who(), "`org = system` is not a valid operator scope"));
        }
        if target_org.is_none() && claims.org.is_some() {
            return Err(Refusal::new(false, &who(), &format!("{action} is not allowed to an org-scoped token")));
        }
        let caller = Caller { family: bearer.family, role, org_scope: claims.org.map(str::to_owned) };
        // Only a token that was let in is remembered: a revoked, expired or
        // out-of-scope one is verified again each time it is presented.
        if !seen {
            self.bearers.insert(text, bearer);
        }
        Ok(caller)
    }

    /// Decodes and verifies a bearer not seen before; refuses it unless it
    /// is a token of the system org.
    fn verify_bearer(&self, text: &str) -> Result<Arc<VerifiedBearer>, Refusal> {
        let anonymous = |detail: &str| Refusal::new(true, "anonymous", detail);
        let decoded = DecodedBundle::decode(text, &self.limits).map_err(|_| anonymous("malformed bearer token"))?;
        let bundle = decoded.view(&self.limits).map_err(|_| anonymous("malformed bearer token"))?;
        let verified = self.keys.verify(&bundle, &self.limits).map_err(|_| anonymous("invalid bearer token"))?;
        // A chain that verified under the ring was looked up by its Tally identifier.
        let Some(id) = verified.id else { return Err(anonymous("invalid bearer token")) };
        if self.keys.org_of(id.key_id).as_deref() != Some(SYSTEM_ORG) {
            return Err(Refusal::new(
                false,
                &id.family.to_hex(),
                "not a Tally API token (minted outside the system org)",
            ));
        }
        let role = verified.first_party.iter().find_map(|c| match Predicate::parse_bytes(c) {
            Ok(Predicate::Role(r)) => Some(r),
            _ => None,
        });
        let expires_at_ms = verified
            .first_party
            .iter()
            .filter_map(|c| match Predicate::parse_bytes(c) {
                Ok(Predicate::Expires(t)) => Some((t / 1_000_000) as i64),
                _ => None,
            })
            .min();
        Ok(Arc::new(VerifiedBearer {
            key_id: id.key_id,
            family: id.family,
            revocation_ids: verified.revocation_ids(),
            role,
            expires_at_ms,
            caveats: CompiledCaveats::compile(verified.first_party.iter().copied()),
        }))
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn role_list(roles: &[Role]) -> String {
    roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(" or ")
}
