//! Administration: orgs and their keys (create, list, rotate, retire).

use tally_token::KeyId;

use super::{Authority, audit_row};
use crate::authorizer::Role;
use crate::error::{Error, Result};
use crate::keys::{KeyInfo, OrgInfo, SYSTEM_ORG};

impl Authority {
    /// Creates an org with its first root key.
    pub async fn create_org(&self, bearer: Option<&str>, org: &str) -> Result<KeyId> {
        validate_org_name(org)?;
        let caller = self.authorize(bearer, "org.create", None, &[Role::Operator])?;
        let audit = audit_row(&caller.actor(), "org.create", Some(org), None, "");
        self.log.create_org(org, audit).await
    }

    /// Lists orgs (unscoped operators).
    pub async fn list_orgs(&self, bearer: Option<&str>) -> Result<Vec<OrgInfo>> {
        self.authorize(bearer, "org.list", None, &[Role::Operator])?;
        // With replicas: what the others made too.
        self.log.follow().await?;
        Ok(self.keys.orgs())
    }

    /// Gives an org a new current key.
    pub async fn rotate_key(&self, bearer: Option<&str>, org: &str) -> Result<KeyId> {
        check_org_syntax(org)?;
        let caller = self.authorize(bearer, "key.rotate", Some(org), &[Role::Operator])?;
        let audit = audit_row(&caller.actor(), "key.rotate", Some(org), None, "");
        self.log.rotate_key(org, audit).await
    }

    /// Retires a (non-current) key: tokens under it stop verifying everywhere.
    pub async fn retire_key(&self, bearer: Option<&str>, key_id: KeyId) -> Result<u64> {
        let org = self.key_org_fresh(key_id, bearer).await?;
        let caller = self.authorize(bearer, "key.retire", Some(&org), &[Role::Operator])?;
        let audit = audit_row(&caller.actor(), "key.retire", Some(&org), Some(key_id.to_string()), "");
        self.log.retire_key(key_id, false, audit).await
    }

    /// Lists an org's keys.
    pub async fn list_keys(&self, bearer: Option<&str>, org: &str) -> Result<Vec<KeyInfo>> {
        check_org_syntax(org)?;
        self.authorize(bearer, "key.list", Some(org), &[Role::Operator])?;
        self.log.follow().await?;
        self.keys.keys_of(org)
    }
}

/// Org ids: lowercase letters, digits, `-`, `_`, `.`; 1 to 64; not the system org.
/// A name a new org may take: well formed, and not the system org's.
pub(super) fn validate_org_name(org: &str) -> Result<()> {
    check_org_syntax(org)?;
    if org == SYSTEM_ORG {
        return Err(Error::AlreadyExists("org \"system\" is Tally's own".into()));
    }
    Ok(())
}

/// A well-formed org name (checked before an org is looked up, so no request
/// carries an arbitrary string into lookups, logs or error messages).
pub(crate) fn check_org_syntax(org: &str) -> Result<()> {
    let ok = !org.is_empty()
        && org.len() <= 64
        && org.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(Error::InvalidArgument("org must be 1 to 64 characters of a-z, 0-9, '-', '_' and '.'".into()));
    }
    Ok(())
}
