//! Address allowlists for the workspace, its users and its API keys. A sign-in
//! or request is let in only from an address that the workspace's list and the
//! user's or key's own list both allow (an empty list allows any). A refusal
//! answers 403 and is audited. Setting a list that would shut out the address
//! the change itself comes from needs an explicit confirmation;
//! `consentry security allowlist clear` on the server is the way back in.

use super::{Vault, VaultError, VaultResult};
use crate::access::allowlist::Allowlist;
use crate::access::{Permission, Principal};
use crate::audit::{AuditDraft, Outcome};
use crate::store::AllowlistSubject;
use std::net::IpAddr;
use uuid::Uuid;

/// Whose list refused an address, for the refusal and its audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBy {
    Workspace,
    User,
    Key,
}

impl RefusedBy {
    /// What the refusal names: `workspace`, `user` or `API key`.
    pub fn as_str_public(self) -> &'static str {
        match self {
            RefusedBy::Key => "API key",
            other => other.as_str(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RefusedBy::Workspace => "workspace",
            RefusedBy::User => "user",
            RefusedBy::Key => "key",
        }
    }
}

/// The lists an address must pass: the workspace's and the user's or key's own.
pub(crate) struct AddressLists<'a> {
    pub workspace: &'a [String],
    pub own: &'a [String],
    pub own_kind: RefusedBy,
}

impl Vault {
    /// Lets `ip` through when the workspace's allowlist and the own list of the
    /// user or key named by `subject` both allow it; otherwise records
    /// `auth.address_refused` and refuses. The caller has read both lists.
    pub(crate) async fn check_address(
        &self,
        workspace_id: &str,
        subject: &str,
        lists: AddressLists<'_>,
        ip: Option<IpAddr>,
        ip_hash: Option<&String>,
    ) -> VaultResult<()> {
        if !allows(lists.workspace, ip) {
            return Err(self.refuse_address(workspace_id, subject, RefusedBy::Workspace, ip_hash).await);
        }
        if !allows(lists.own, ip) {
            return Err(self.refuse_address(workspace_id, subject, lists.own_kind, ip_hash).await);
        }
        Ok(())
    }

    /// The workspace's part of `check_address` alone, reading its list.
    pub(crate) async fn check_workspace_address(
        &self,
        workspace_id: &str,
        subject: &str,
        ip: Option<IpAddr>,
        ip_hash: Option<&String>,
    ) -> VaultResult<()> {
        if !allows(&self.store.workspace_allowlist(workspace_id).await?, ip) {
            return Err(self.refuse_address(workspace_id, subject, RefusedBy::Workspace, ip_hash).await);
        }
        Ok(())
    }

    /// Records `auth.address_refused` and answers the refusal (or the audit
    /// failure, which refuses too).
    pub(crate) async fn refuse_address(&self, workspace_id: &str, subject: &str, by: RefusedBy, ip_hash: Option<&String>) -> VaultError {
        let draft = AuditDraft::new(workspace_id, "anonymous", "auth.address_refused")
            .target(subject.to_string())
            .outcome(Outcome::Denied)
            .ip_hash(ip_hash.cloned())
            .details(serde_json::json!({ "allowlist": by.as_str() }));
        match self.store.record_audit(draft).await {
            Ok(_) => VaultError::AddressRefused(by),
            Err(e) => e.into(),
        }
    }

    /// The workspace's allowlist (`security:manage`).
    pub async fn workspace_allowlist(&self, p: &Principal) -> VaultResult<Vec<String>> {
        p.require(Permission::SecurityManage)?;
        Ok(Allowlist::from_stored(&self.store.workspace_allowlist(&p.workspace_id).await?).entries())
    }

    /// Replaces the workspace's allowlist (`security:manage`); empty clears it.
    pub async fn set_workspace_allowlist(&self, p: &Principal, entries: &[String], confirm_lockout: bool) -> VaultResult<Vec<String>> {
        p.require(Permission::SecurityManage)?;
        p.require_recent_factor(self.now())?;
        let list = parse(entries)?;
        refuse_lockout(p, &list, confirm_lockout, "the workspace's allowlist")?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "security.allowlist_changed")
            .target("workspace")
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "allowlist": list.entries() }));
        self.store
            .set_allowlist(&p.workspace_id, AllowlistSubject::Workspace, list.entries(), self.now(), draft)
            .await?;
        Ok(list.entries())
    }

    /// Replaces a user's allowlist (`users:manage`); empty clears it.
    pub async fn set_user_allowlist(
        &self,
        p: &Principal,
        user: &str,
        entries: &[String],
        confirm_lockout: bool,
    ) -> VaultResult<Vec<String>> {
        p.require(Permission::UsersManage)?;
        let id = Uuid::parse_str(user.trim()).map_err(|_| VaultError::NotFound("user"))?;
        self.user_in_reach(p, &id.to_string(), true).await?;
        let list = parse(entries)?;
        if p.actor == format!("user:{id}") {
            refuse_lockout(p, &list, confirm_lockout, "your own allowlist")?;
        }
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.allowlist_changed")
            .target(format!("user:{id}"))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "allowlist": list.entries() }));
        self.store
            .set_allowlist(&p.workspace_id, AllowlistSubject::User(id), list.entries(), self.now(), draft)
            .await?;
        Ok(list.entries())
    }

    /// Replaces an API key's allowlist (`keys:manage`); empty clears it.
    pub async fn set_api_key_allowlist(
        &self,
        p: &Principal,
        key: &str,
        entries: &[String],
        confirm_lockout: bool,
    ) -> VaultResult<Vec<String>> {
        p.require(Permission::KeysManage)?;
        if p.actor != format!("key:{key}") {
            self.managed_key(p, key).await?;
        }
        let list = parse(entries)?;
        if p.actor == format!("key:{key}") {
            refuse_lockout(p, &list, confirm_lockout, "the allowlist of the key making this request")?;
        }
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "api_key.allowlist_changed")
            .target(format!("key:{key}"))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "allowlist": list.entries() }));
        self.store
            .set_allowlist(
                &p.workspace_id,
                AllowlistSubject::Key(key.to_string()),
                list.entries(),
                self.now(),
                draft,
            )
            .await?;
        Ok(list.entries())
    }
}

/// Whether a stored list allows `ip`.
pub(crate) fn allows(stored: &[String], ip: Option<IpAddr>) -> bool {
    stored.is_empty() || Allowlist::from_stored(stored).permits(ip)
}

/// Parses a list given by a client; the field errors name the entry.
pub(crate) fn parse(entries: &[String]) -> VaultResult<Allowlist> {
    Allowlist::parse(entries).map_err(|m| VaultError::invalid("allowlist", m))
}

/// Refuses a list that would shut out the address of the request setting it,
/// unless confirmed. The operator at the server's CLI has no address to lose.
fn refuse_lockout(p: &Principal, list: &Allowlist, confirmed: bool, what: &str) -> VaultResult<()> {
    if confirmed || p.actor == "cli" || list.permits(p.ip) {
        return Ok(());
    }
    Err(VaultError::Conflict(format!(
        "{what} would not include the address this request comes from, so you would be shut out; \
         send it again with `confirm_lockout: true` to set it anyway (`consentry security allowlist clear` on the server undoes it)"
    )))
}
