//! The service functions of the vault: everything the CLI and the HTTP API do goes
//! through here, with the same permission checks, the same masking and the same audit
//! events. A `Vault` holds the store, the master key and a cache of opened workspace
//! keys.

pub mod allowlists;
pub mod api_keys;
pub mod audit_ops;
pub mod consents;
pub mod contacts;
pub mod exports;
pub mod factors;
pub mod lists;
pub mod passkeys;
pub mod roles;
pub mod security_report;
pub mod sessions;
pub mod users;

use crate::access::AccessError;
use crate::audit::AuditDraft;
use crate::clock::Clock;
use crate::crypto::{CryptoError, MasterKey, WorkspaceKeys, KEY_PURPOSES};
use crate::store::{NewWorkspace, Store, StoreError, WorkspaceRecord};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One problem with one input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Errors of the service layer; the HTTP layer maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Forbidden(#[from] AccessError),
    #[error("the request has invalid fields: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    /// The change clashes with existing state (a taken email, phone or name).
    #[error("{0}")]
    Conflict(String),
    #[error("the audit log could not be written, so nothing was done")]
    AuditUnavailable(#[source] anyhow::Error),
    #[error("stored data failed its integrity check ({field}); it was not returned")]
    Integrity { field: String },
    /// The client's address is not on an allowlist that applies.
    #[error("requests from this address are not allowed by the {}'s allowlist; ask an administrator to add it", .0.as_str_public())]
    AddressRefused(allowlists::RefusedBy),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => VaultError::NotFound(what),
            StoreError::Conflict { field } => VaultError::Conflict(match field {
                "email" | "phone" => format!("a contact with this {field} already exists"),
                "list name" => "a list with this name already exists".to_string(),
                other => format!("this {other} already exists"),
            }),
            StoreError::Ended(what) => VaultError::Conflict(format!("the {what} has already ended; run it again to start a new one")),
            StoreError::AuditUnavailable(e) => VaultError::AuditUnavailable(e),
            StoreError::Backend(e) => VaultError::Internal(e),
        }
    }
}

impl From<CryptoError> for VaultError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Tampered { field } => VaultError::Integrity { field },
            other => VaultError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl VaultError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        VaultError::Invalid(vec![FieldError::new(field, message)])
    }
}

pub type VaultResult<T> = Result<T, VaultError>;

/// The vault: store, keys and clock.
pub struct Vault {
    pub store: Arc<dyn Store>,
    master: MasterKey,
    keyring: RwLock<HashMap<String, Arc<WorkspaceKeys>>>,
    pub clock: Arc<dyn Clock>,
    pub passwords: Arc<crate::access::password::PasswordHasher>,
    /// Longest lifetime of an API key (microseconds; `api_key_max_days`).
    pub key_max_lifetime: i64,
    /// The origin passkeys are made for, once the HTTP server knows it.
    relying_party: RwLock<Option<Arc<passkeys::RelyingParty>>>,
}

impl Vault {
    pub fn new(store: Arc<dyn Store>, master: MasterKey, clock: Arc<dyn Clock>) -> Self {
        Vault {
            store,
            master,
            keyring: RwLock::new(HashMap::new()),
            clock,
            passwords: Arc::new(crate::access::password::PasswordHasher::standard()),
            key_max_lifetime: api_keys::DEFAULT_KEY_MAX_LIFETIME,
            relying_party: RwLock::new(None),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_micros()
    }

    /// The opened keys of a workspace (cached).
    pub async fn keys(&self, workspace_id: &str) -> VaultResult<Arc<WorkspaceKeys>> {
        if let Some(k) = self.keyring.read().ok().and_then(|m| m.get(workspace_id).cloned()) {
            return Ok(k);
        }
        let ws = self
            .store
            .list_workspaces()
            .await?
            .into_iter()
            .find(|w| w.id == workspace_id)
            .ok_or(VaultError::NotFound("workspace"))?;
        let keys = Arc::new(WorkspaceKeys::open(&self.master, &ws.id, &ws.keys)?);
        if keys.audit_public_key().as_slice() != ws.audit_public_key.as_slice() {
            return Err(VaultError::Internal(anyhow::anyhow!(
                "the stored audit public key of workspace {} does not match its signing key",
                ws.id
            )));
        }
        if let Ok(mut m) = self.keyring.write() {
            m.insert(ws.id.clone(), keys.clone());
        }
        Ok(keys)
    }

    /// Creates a workspace with fresh keys.
    pub async fn create_workspace(&self, name: &str) -> VaultResult<WorkspaceRecord> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut wrapped = Vec::new();
        for p in KEY_PURPOSES {
            wrapped.push(self.master.wrap_new(&id, p, 1).map_err(VaultError::Internal)?);
        }
        let keys = WorkspaceKeys::open(&self.master, &id, &wrapped)?;
        let ws = NewWorkspace {
            id: id.clone(),
            name: name.to_string(),
            created_at: self.now(),
            audit_public_key: keys.audit_public_key().to_vec(),
            keys: wrapped.clone(),
        };
        let draft = AuditDraft::new(&id, "cli", "workspace.created")
            .target(format!("workspace:{id}"))
            .details(serde_json::json!({ "audit_public_key": hex::encode(keys.audit_public_key()) }));
        self.store.create_workspace(ws, draft).await?;
        Ok(WorkspaceRecord {
            id,
            name: name.to_string(),
            created_at: self.now(),
            audit_public_key: keys.audit_public_key().to_vec(),
            keys: wrapped,
        })
    }

    /// The first workspace of the instance, if any.
    pub async fn default_workspace(&self) -> VaultResult<Option<WorkspaceRecord>> {
        Ok(self.store.list_workspaces().await?.into_iter().next())
    }

    /// Keyed hash of a client IP for the audit log (never the IP itself).
    pub async fn ip_hash(&self, workspace_id: &str, ip: &std::net::IpAddr) -> Option<String> {
        let keys = self.keys(workspace_id).await.ok()?;
        Some(hex::encode(&keys.token_hash("client_ip", ip.to_string().as_bytes())[..16]))
    }
}
