//! Custom roles: named sets of permissions from the catalogue, defined per
//! workspace beside the built-in roles, and the role change of a user. A user
//! refers to a role by name, so changing the role changes what its users may do,
//! and ends their sessions (a privilege change); an API key keeps the
//! permissions it was given. Nobody defines or grants a permission they lack.

use super::{Vault, VaultError, VaultResult};
use crate::access::{parse_scopes, parse_scopes_with, Permission, Principal, BUILT_IN_ROLES};
use crate::audit::AuditDraft;
use crate::clock::rfc3339;
use crate::store::{RoleRecord, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A custom role as shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RoleView {
    pub name: String,
    pub permissions: Vec<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&RoleRecord> for RoleView {
    fn from(r: &RoleRecord) -> Self {
        RoleView {
            name: r.name.clone(),
            permissions: r.permissions.clone(),
            created_by: r.created_by.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// Checks a role name: 1-40 lowercase letters, digits and hyphens, starting
/// with a letter, and not a built-in role's name.
fn role_name(raw: &str) -> VaultResult<String> {
    let name = raw.trim();
    let well_formed = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Err(VaultError::invalid(
            "name",
            "a role name is 1-40 lowercase letters, digits and hyphens, starting with a letter",
        ));
    }
    if BUILT_IN_ROLES.contains(&name) {
        return Err(VaultError::invalid(
            "name",
            format!("{name} is a built-in role; choose another name"),
        ));
    }
    Ok(name.to_string())
}

impl Vault {
    /// Expands a role (built-in or custom), or a comma-separated mix of roles and
    /// permissions, into permissions for workspace `ws`; a refusal names `field`.
    pub(crate) async fn role_permissions(&self, ws: &str, raw: &str, field: &str) -> VaultResult<BTreeSet<Permission>> {
        if let Ok(perms) = parse_scopes(raw) {
            return Ok(perms);
        }
        let custom: Vec<(String, Vec<String>)> = self
            .store
            .list_roles(ws)
            .await?
            .into_iter()
            .map(|r| (r.name, r.permissions))
            .collect();
        parse_scopes_with(raw, &custom).map_err(|m| VaultError::invalid(field, m))
    }

    /// The permissions a stored role grants: none when it no longer resolves (a
    /// deleted custom role), so it fails closed; a store failure is an error.
    pub(crate) async fn granted_by_role(&self, ws: &str, raw: &str) -> VaultResult<BTreeSet<Permission>> {
        match self.role_permissions(ws, raw, "role").await {
            Err(VaultError::Invalid(_)) => Ok(BTreeSet::new()),
            other => other,
        }
    }

    /// The workspace's custom roles (`users:manage` or `security:manage`).
    pub async fn list_roles(&self, p: &Principal) -> VaultResult<Vec<RoleView>> {
        if !p.has(Permission::UsersManage) {
            p.require(Permission::SecurityManage)?;
        }
        Ok(self.store.list_roles(&p.workspace_id).await?.iter().map(Into::into).collect())
    }

    /// Defines a custom role (`security:manage`; only permissions the caller holds).
    pub async fn create_role(&self, p: &Principal, name: &str, permissions: &str) -> VaultResult<RoleView> {
        p.require(Permission::SecurityManage)?;
        p.require_recent_factor(self.now())?;
        let name = role_name(name)?;
        let perms = self.grantable(p, permissions).await?;
        let now = self.now();
        let role = RoleRecord {
            workspace_id: p.workspace_id.clone(),
            name: name.clone(),
            permissions: perms.iter().map(|x| x.as_str().to_string()).collect(),
            created_by: p.actor.clone(),
            created_at: now,
            updated_at: now,
        };
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "role.created")
            .target(format!("role:{name}"))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "permissions": role.permissions }));
        self.store.create_role(role.clone(), draft).await.map_err(|e| match e {
            StoreError::Conflict { .. } => VaultError::Conflict(format!("a role named {name} already exists")),
            other => other.into(),
        })?;
        Ok((&role).into())
    }

    /// Replaces a custom role's permissions; every session of its users ends.
    pub async fn update_role(&self, p: &Principal, name: &str, permissions: &str) -> VaultResult<RoleView> {
        p.require(Permission::SecurityManage)?;
        p.require_recent_factor(self.now())?;
        let existing = self.find_role(p, name).await?;
        // Whoever changes a role must hold what it grants now and what it granted.
        self.grantable(p, &existing.permissions.join(",")).await?;
        let perms: Vec<String> = self
            .grantable(p, permissions)
            .await?
            .iter()
            .map(|x| x.as_str().to_string())
            .collect();
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "role.changed")
            .target(format!("role:{}", existing.name))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "from": existing.permissions, "to": perms }));
        let now = self.now();
        self.store
            .update_role(&p.workspace_id, &existing.name, perms.clone(), now, draft)
            .await?;
        Ok((&RoleRecord {
            permissions: perms,
            updated_at: now,
            ..existing
        })
            .into())
    }

    /// Deletes a custom role no user holds.
    pub async fn delete_role(&self, p: &Principal, name: &str) -> VaultResult<()> {
        p.require(Permission::SecurityManage)?;
        p.require_recent_factor(self.now())?;
        let existing = self.find_role(p, name).await?;
        self.grantable(p, &existing.permissions.join(",")).await?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "role.deleted")
            .target(format!("role:{}", existing.name))
            .ip_hash(p.ip_hash.clone());
        self.store
            .delete_role(&p.workspace_id, &existing.name, draft)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => {
                    VaultError::Conflict(format!("users hold the role {}; give them another role first", existing.name))
                }
                other => other.into(),
            })
    }

    /// Gives a user another role and lists (`users:manage`; only what the caller
    /// holds, never their own account); all the user's sessions end.
    pub async fn set_user_role(&self, p: &Principal, id: &str, role: &str, lists: &[String]) -> VaultResult<super::users::UserView> {
        p.require(Permission::UsersManage)?;
        let user = self.managed_user(p, id).await?;
        let perms = self.role_permissions(&p.workspace_id, role, "role").await?;
        if perms.is_empty() {
            return Err(VaultError::invalid("role", "give a role or permissions"));
        }
        let list_ids = self.delegable(p, &perms, lists, "role").await?;
        let role = role.trim().to_string();
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.role_changed")
            .target(format!("user:{}", user.id))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "from": user.role, "to": role, "lists": list_ids }));
        self.store
            .set_user_role(&p.workspace_id, user.id, role, list_ids, self.now(), draft)
            .await?;
        self.get_user(p, &user.id.to_string()).await
    }

    async fn find_role(&self, p: &Principal, name: &str) -> VaultResult<RoleRecord> {
        let name = name.trim();
        self.store
            .list_roles(&p.workspace_id)
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or(VaultError::NotFound("role"))
    }

    /// Permissions `raw` names that `p` may grant (every one held by `p`).
    async fn grantable(&self, p: &Principal, raw: &str) -> VaultResult<BTreeSet<Permission>> {
        let perms = self.role_permissions(&p.workspace_id, raw, "permissions").await?;
        if perms.is_empty() {
            return Err(VaultError::invalid("permissions", "give at least one permission"));
        }
        if let Some(missing) = perms.iter().find(|x| !p.has(**x)) {
            return Err(VaultError::invalid(
                "permissions",
                format!("you cannot grant {} which you do not have", missing.as_str()),
            ));
        }
        Ok(perms)
    }
}
