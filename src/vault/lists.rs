//! Lists and their members. A key limited to some lists sees only those.

use super::{Vault, VaultError, VaultResult};
use crate::access::{Permission, Principal};
use crate::audit::AuditDraft;
use crate::clock::rfc3339;
use crate::store::{ListRecord, ListScope};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A list as returned.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ListView {
    pub id: String,
    pub name: String,
    pub member_count: u64,
    pub created_at: String,
}

impl From<ListRecord> for ListView {
    fn from(l: ListRecord) -> Self {
        ListView {
            id: l.id,
            name: l.name,
            member_count: l.member_count.unwrap_or(0),
            created_at: rfc3339(l.created_at),
        }
    }
}

/// Checks a list name: 1-100 printable characters.
pub fn parse_list_name(raw: &str) -> VaultResult<String> {
    let n = raw.trim();
    if n.is_empty() || n.len() > 100 || n.chars().any(char::is_control) {
        return Err(VaultError::invalid("name", "a list name is 1-100 printable characters"));
    }
    Ok(n.to_string())
}

impl Vault {
    pub async fn create_list(&self, p: &Principal, name: &str) -> VaultResult<ListView> {
        p.require(Permission::ListsManage)?;
        if p.lists != ListScope::All {
            return Err(VaultError::BadRequest("a key limited to some lists cannot create lists".into()));
        }
        let name = parse_list_name(name)?;
        let list = ListRecord {
            id: format!("lst_{}", Uuid::now_v7().simple()),
            workspace_id: p.workspace_id.clone(),
            name: name.clone(),
            created_at: self.now(),
            member_count: Some(0),
        };
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "list.created")
            .target(format!("list:{}", list.id))
            .ip_hash(p.ip_hash.clone());
        self.store
            .create_list(list.clone(), draft)
            .await
            .map_err(|e| match VaultError::from(e) {
                VaultError::Conflict { .. } => VaultError::invalid("name", "a list with this name already exists"),
                other => other,
            })?;
        Ok(list.into())
    }

    pub async fn list_lists(&self, p: &Principal) -> VaultResult<Vec<ListView>> {
        p.require_contact_read()?;
        Ok(self
            .store
            .list_lists(&p.workspace_id, &p.lists)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn get_list(&self, p: &Principal, id_or_name: &str) -> VaultResult<ListRecord> {
        self.store
            .find_list(&p.workspace_id, id_or_name, &p.lists)
            .await?
            .ok_or(VaultError::NotFound("list"))
    }

    /// Finds a list by name or creates it (imports name their list).
    pub async fn ensure_list(&self, p: &Principal, name: &str) -> VaultResult<ListRecord> {
        if let Some(l) = self.store.find_list(&p.workspace_id, name, &p.lists).await? {
            return Ok(l);
        }
        match self.create_list(p, name).await {
            Ok(_) => {}
            // Another request (or server) created it meanwhile: use that one.
            Err(VaultError::Invalid(_)) if self.store.find_list(&p.workspace_id, name, &p.lists).await?.is_some() => {}
            Err(e) => return Err(e),
        }
        self.get_list(p, name).await
    }

    pub async fn rename_list(&self, p: &Principal, id: &str, name: &str) -> VaultResult<ListView> {
        p.require(Permission::ListsManage)?;
        let list = self.get_list(p, id).await?;
        let name = parse_list_name(name)?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "list.renamed")
            .target(format!("list:{}", list.id))
            .ip_hash(p.ip_hash.clone());
        self.store.rename_list(&p.workspace_id, &list.id, &name, draft).await?;
        self.list_view(p, &list.id).await
    }

    /// One list with its member count.
    pub async fn list_view(&self, p: &Principal, id_or_name: &str) -> VaultResult<ListView> {
        self.list_lists(p)
            .await?
            .into_iter()
            .find(|l| l.id == id_or_name || l.name == id_or_name)
            .ok_or(VaultError::NotFound("list"))
    }

    pub async fn delete_list(&self, p: &Principal, id: &str) -> VaultResult<()> {
        p.require(Permission::ListsManage)?;
        let list = self.get_list(p, id).await?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "list.deleted")
            .target(format!("list:{}", list.id))
            .ip_hash(p.ip_hash.clone());
        self.store.delete_list(&p.workspace_id, &list.id, draft).await?;
        Ok(())
    }

    /// Adds contacts to a list; returns how many were new members.
    pub async fn add_members(&self, p: &Principal, id: &str, contacts: Vec<Uuid>) -> VaultResult<u64> {
        p.require(Permission::ListsManage)?;
        let list = self.get_list(p, id).await?;
        if contacts.is_empty() || contacts.len() > 10_000 {
            return Err(VaultError::invalid("contacts", "give 1-10000 contact ids"));
        }
        // Only contacts the caller can see: a list-limited caller cannot pull a
        // contact of another list into its own.
        for c in &contacts {
            self.store
                .find_contact(&p.workspace_id, *c, &p.lists)
                .await?
                .ok_or(VaultError::NotFound("contact"))?;
        }
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "list.members_added")
            .target(format!("list:{}", list.id))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "contacts": contacts }));
        Ok(self
            .store
            .add_list_members(&p.workspace_id, &list.id, contacts, self.now(), draft)
            .await?)
    }

    pub async fn remove_members(&self, p: &Principal, id: &str, contacts: Vec<Uuid>) -> VaultResult<u64> {
        p.require(Permission::ListsManage)?;
        let list = self.get_list(p, id).await?;
        if contacts.is_empty() || contacts.len() > 10_000 {
            return Err(VaultError::invalid("contacts", "give 1-10000 contact ids"));
        }
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "list.members_removed")
            .target(format!("list:{}", list.id))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "contacts": contacts }));
        Ok(self.store.remove_list_members(&p.workspace_id, &list.id, contacts, draft).await?)
    }
}
