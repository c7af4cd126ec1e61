//! Reading the audit log: who did what, newest last. Rows are written by the
//! log's writer together with the change they describe (`log/writer.rs`);
//! they hold family ids, key ids and org names, never a token or key material.

use super::Authority;
use super::admin::check_org_syntax;
use crate::authorizer::Role;
use crate::error::{Error, Result};
use crate::store::AuditEntry;

/// Entries returned when the request names no limit.
pub const DEFAULT_AUDIT_LIMIT: u32 = 100;
/// Most entries one call returns.
pub const MAX_AUDIT_LIMIT: u32 = 1000;

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this org's entries (None: every org, for unscoped operators).
    pub org: Option<String>,
    /// Entries after this id, oldest first; None: the newest `limit`.
    pub after_id: Option<u64>,
    /// Most entries (0: [`DEFAULT_AUDIT_LIMIT`]).
    pub limit: u32,
}

impl Authority {
    /// Reads audit entries, oldest first. Operators only; an org-scoped
    /// operator must name its org.
    pub async fn list_audit(&self, bearer: Option<&str>, query: AuditQuery) -> Result<Vec<AuditEntry>> {
        if let Some(org) = &query.org {
            check_org_syntax(org)?;
        }
        let limit = match query.limit {
            0 => DEFAULT_AUDIT_LIMIT,
            n if n > MAX_AUDIT_LIMIT => {
                return Err(Error::InvalidArgument(format!("limit must be at most {MAX_AUDIT_LIMIT}")));
            }
            n => n,
        };
        let after = match query.after_id {
            Some(id) => Some(i64::try_from(id).map_err(|_| Error::InvalidArgument("after_id out of range".into()))?),
            None => None,
        };
        self.authorize(bearer, "audit.read", query.org.as_deref(), &[Role::Operator])?;
        self.reads.audit(query.org.as_deref(), after, i64::from(limit)).await
    }
}
