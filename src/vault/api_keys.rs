//! API keys: create (the token is shown once), list, revoke, and authenticate a
//! presented token. Only a keyed hash of the secret is stored.

use super::{Vault, VaultError, VaultResult};
use crate::access::{Permission, Principal};
use crate::audit::{AuditDraft, Outcome};
use crate::clock::rfc3339;
use crate::crypto::{ApiKeySecret, ParsedApiKey};
use crate::store::{ApiKeyRecord, ListScope};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// A key as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub lists: Vec<String>,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// The client address of the last use (recorded at most once a minute).
    pub last_used_from: Option<String>,
    /// Addresses (CIDR blocks) the key may be used from; empty: any.
    pub allowlist: Vec<String>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            scopes: k.scopes.clone(),
            lists: k.list_ids.clone(),
            created_by: k.created_by.clone(),
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            last_used_from: None,
            allowlist: k.allowlist.clone(),
        }
    }
}

/// Why a token was refused. Clients see one message for all of them.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the API key is missing, malformed, unknown, revoked or expired")]
    Invalid,
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// Lifetime of a key made without an expiry: 90 days.
pub const DEFAULT_KEY_LIFETIME: i64 = 90 * 86_400_000_000;
/// Longest lifetime of a key unless the settings say otherwise: 365 days.
pub const DEFAULT_KEY_MAX_LIFETIME: i64 = 365 * 86_400_000_000;

/// Parses `90d`, `12h`, `30m` or a plain number of days.
pub fn parse_duration_micros(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let (num, unit) = match raw.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&raw[..i], c),
        _ => (raw, 'd'),
    };
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        'd' => n.checked_mul(86_400)?,
        'h' => n.checked_mul(3_600)?,
        'm' => n.checked_mul(60)?,
        _ => return None,
    };
    secs.checked_mul(1_000_000)
}

impl Vault {
    /// Checks that `p` holds every permission it grants (named `field` in the
    /// refusal) and resolves the lists it limits the grantee to: those named (as
    /// `p` sees them), or `p`'s own when `p` is list-scoped and names none.
    pub(crate) async fn delegable(
        &self,
        p: &Principal,
        perms: &std::collections::BTreeSet<Permission>,
        lists: &[String],
        field: &str,
    ) -> VaultResult<Vec<String>> {
        if let Some(missing) = perms.iter().find(|x| !p.has(**x)) {
            return Err(VaultError::invalid(
                field,
                format!("you cannot grant {} which you do not have", missing.as_str()),
            ));
        }
        let mut list_ids = Vec::new();
        for l in lists {
            list_ids.push(self.get_list(p, l).await?.id);
        }
        if list_ids.is_empty() {
            if let ListScope::Lists(mine) = &p.lists {
                list_ids = mine.clone();
            }
        }
        Ok(list_ids)
    }

    /// Creates a key usable from any address; returns its record and the token
    /// to show once.
    pub async fn create_api_key(
        &self,
        p: &Principal,
        name: &str,
        scopes: &str,
        lists: &[String],
        expires_in: Option<&str>,
    ) -> VaultResult<(ApiKeyView, SecretString)> {
        self.create_api_key_from(p, name, scopes, lists, expires_in, &[]).await
    }

    /// Creates a key usable only from the `allowlist` given (empty: any address).
    pub async fn create_api_key_from(
        &self,
        p: &Principal,
        name: &str,
        scopes: &str,
        lists: &[String],
        expires_in: Option<&str>,
        allowlist: &[String],
    ) -> VaultResult<(ApiKeyView, SecretString)> {
        p.require(Permission::KeysManage)?;
        let allowlist = super::allowlists::parse(allowlist)?.entries();
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(VaultError::invalid("name", "a key name is 1-100 characters"));
        }
        let perms = self.role_permissions(&p.workspace_id, scopes, "scopes").await?;
        let list_ids = self.delegable(p, &perms, lists, "scopes").await?;
        let now = self.now();
        let lifetime = match expires_in {
            Some(raw) => {
                let l =
                    parse_duration_micros(raw).ok_or_else(|| VaultError::invalid("expires", "use a duration such as 90d, 12h or 30m"))?;
                if l > self.key_max_lifetime {
                    return Err(VaultError::invalid(
                        "expires",
                        format!(
                            "a key lives at most {} days here (api_key_max_days); give a shorter expiry",
                            self.key_max_lifetime / 86_400_000_000
                        ),
                    ));
                }
                l
            }
            None => DEFAULT_KEY_LIFETIME.min(self.key_max_lifetime),
        };
        let expires_at = Some(now + lifetime);
        let keys = self.keys(&p.workspace_id).await?;
        let secret = ApiKeySecret::generate(&keys).map_err(VaultError::Internal)?;
        let record = ApiKeyRecord {
            id: secret.id.clone(),
            workspace_id: p.workspace_id.clone(),
            name: name.to_string(),
            secret_hash: secret.hash.to_vec(),
            scopes: perms.iter().map(|x| x.as_str().to_string()).collect(),
            list_ids,
            created_by: p.actor.clone(),
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            allowlist,
            last_used_from: None,
        };
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "api_key.created")
            .target(format!("key:{}", record.id))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({
                "scopes": record.scopes,
                "lists": record.list_ids,
                "expires_at": record.expires_at,
                "allowlist": record.allowlist,
            }));
        self.store.create_api_key(record.clone(), draft).await?;
        Ok(((&record).into(), secret.token))
    }

    /// The keys within the caller's lists (all of them for a caller with no limit).
    pub async fn list_api_keys(&self, p: &Principal) -> VaultResult<Vec<ApiKeyView>> {
        p.require(Permission::KeysManage)?;
        let keys = self.keys(&p.workspace_id).await?;
        Ok(self
            .store
            .list_api_keys(&p.workspace_id)
            .await?
            .iter()
            .filter(|k| p.covers_lists(&k.list_ids))
            .map(|k| ApiKeyView {
                last_used_from: k.last_used_from.as_deref().and_then(|sealed| open_address(&keys, &k.id, sealed)),
                ..ApiKeyView::from(k)
            })
            .collect())
    }

    /// A key of the workspace within the principal's reach: none holding a
    /// permission the principal lacks or reaching lists beyond the principal's.
    pub(crate) async fn managed_key(&self, p: &Principal, id: &str) -> VaultResult<ApiKeyRecord> {
        let key = self
            .store
            .find_api_key(id)
            .await?
            .filter(|k| k.workspace_id == p.workspace_id)
            .ok_or(VaultError::NotFound("api key"))?;
        reachable(p, &key)?;
        Ok(key)
    }

    /// Revokes a key. A key cannot revoke itself, so a client cannot lock itself
    /// out by accident (another key or the CLI can). Revoking a revoked key
    /// changes nothing and records nothing.
    pub async fn revoke_api_key(&self, p: &Principal, id: &str) -> VaultResult<()> {
        p.require(Permission::KeysManage)?;
        if p.actor == format!("key:{id}") {
            return Err(VaultError::Conflict(
                "a key cannot revoke itself: revoke it with another key or with `consentry keys revoke`".into(),
            ));
        }
        self.managed_key(p, id).await?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "api_key.revoked")
            .target(format!("key:{id}"))
            .ip_hash(p.ip_hash.clone());
        self.store.revoke_api_key(&p.workspace_id, id, self.now(), draft).await?;
        Ok(())
    }

    /// Rotates a key: a new key with the same name, permissions and lists (and,
    /// when the old one expires, the same lifetime from now) is made and shown
    /// once; the old key keeps working for `overlap` (`24h`, `30m`; none: it stops
    /// now), so clients can switch without an outage. One audit event.
    pub async fn rotate_api_key(&self, p: &Principal, id: &str, overlap: Option<&str>) -> VaultResult<(ApiKeyView, SecretString)> {
        p.require(Permission::KeysManage)?;
        let old = self.managed_key(p, id).await?;
        let overlap = parse_overlap(overlap)?;
        if overlap == 0 && p.actor == format!("key:{}", old.id) {
            return Err(VaultError::Conflict(
                "a key rotating itself needs an overlap (such as 10m), or it would stop before the caller can switch to the new one".into(),
            ));
        }
        let now = self.now();
        let keys = self.keys(&p.workspace_id).await?;
        let (record, token) = self.successor(&keys, p, &old, now)?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "api_key.rotated")
            .target(format!("key:{}", old.id))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "new_key": record.id, "overlap_seconds": overlap / 1_000_000 }));
        self.store
            .rotate_api_key(&p.workspace_id, &old.id, record.clone(), now + overlap, draft)
            .await?;
        Ok(((&record).into(), token))
    }

    /// "Rotate all keys" (when someone leaves): every live key of the workspace
    /// gets a successor with the same name, permissions, lists and allowlist,
    /// shown once; the old keys keep working for `overlap` (none: they stop now,
    /// the caller's own key too). One audit event lists every rotation.
    pub async fn rotate_all_api_keys(&self, p: &Principal, overlap: Option<&str>) -> VaultResult<Vec<(String, ApiKeyView, SecretString)>> {
        p.require(Permission::KeysManage)?;
        p.require_recent_factor(self.now())?;
        let overlap = parse_overlap(overlap)?;
        let now = self.now();
        let live: Vec<ApiKeyRecord> = self
            .store
            .list_api_keys(&p.workspace_id)
            .await?
            .into_iter()
            .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now))
            .collect();
        for old in &live {
            reachable(p, old)?;
        }
        let keys = self.keys(&p.workspace_id).await?;
        let mut rotations = Vec::with_capacity(live.len());
        let mut out = Vec::with_capacity(live.len());
        for old in &live {
            let (record, token) = self.successor(&keys, p, old, now)?;
            out.push((old.id.clone(), ApiKeyView::from(&record), token));
            rotations.push((old.id.clone(), record));
        }
        let pairs: Vec<serde_json::Value> = rotations
            .iter()
            .map(|(old, new)| serde_json::json!({ "old_key": old, "new_key": new.id }))
            .collect();
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "api_key.rotated_all")
            .target("workspace")
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "rotations": pairs, "overlap_seconds": overlap / 1_000_000 }));
        self.store.rotate_api_keys(&p.workspace_id, rotations, now + overlap, draft).await?;
        Ok(out)
    }

    /// Checks a presented token and returns the principal it stands for. Every
    /// refusal of a well-formed key id is audited in that key's workspace.
    pub async fn authenticate(&self, token: &str, ip: Option<std::net::IpAddr>) -> Result<Principal, AuthError> {
        let parsed = ParsedApiKey::parse(token).ok_or(AuthError::Invalid)?;
        let (record, workspace_allowlist) = match self.store.find_api_key_with_allowlist(&parsed.id).await.map_err(VaultError::from)? {
            Some(found) => found,
            None => return Err(AuthError::Invalid),
        };
        let keys = self.keys(&record.workspace_id).await?;
        let ip_hash = match ip {
            Some(ip) => self.ip_hash(&record.workspace_id, &ip).await,
            None => None,
        };
        let now = self.now();
        let reason = if !parsed.matches(&keys, &record.secret_hash) {
            Some("wrong_secret")
        } else if record.revoked_at.is_some() {
            Some("revoked")
        } else if record.expires_at.is_some_and(|e| e <= now) {
            Some("expired")
        } else {
            None
        };
        if let Some(reason) = reason {
            let draft = AuditDraft::new(&record.workspace_id, "anonymous", "auth.failed")
                .target(format!("key:{}", record.id))
                .outcome(Outcome::Denied)
                .ip_hash(ip_hash)
                .details(serde_json::json!({ "reason": reason }));
            self.store.record_audit(draft).await.map_err(VaultError::from)?;
            return Err(AuthError::Invalid);
        }
        let lists = super::allowlists::AddressLists {
            workspace: &workspace_allowlist,
            own: &record.allowlist,
            own_kind: super::allowlists::RefusedBy::Key,
        };
        self.check_address(&record.workspace_id, &format!("key:{}", record.id), lists, ip, ip_hash.as_ref())
            .await?;
        if record.last_used_at.is_none_or(|t| now - t > 60_000_000) {
            let from = ip.and_then(|ip| match seal_address(&keys, &record.id, ip) {
                Ok(sealed) => Some(sealed),
                Err(e) => {
                    tracing::warn!(error = %e, key = %record.id, "failed to seal a key's last address");
                    None
                }
            });
            if let Err(e) = self.store.touch_api_key(&record.id, now, from).await {
                tracing::warn!(error = %e, key = %record.id, "failed to record key use");
            }
        }
        Ok(Principal {
            workspace_id: record.workspace_id.clone(),
            actor: format!("key:{}", record.id),
            permissions: record.scopes.iter().filter_map(|s| Permission::parse(s)).collect(),
            lists: if record.list_ids.is_empty() {
                ListScope::All
            } else {
                ListScope::Lists(record.list_ids.clone())
            },
            ip_hash,
            ip,
            factor_checked_at: None,
        })
    }
}

impl Vault {
    /// A successor of `old` made by `p`: same name, permissions, lists and
    /// allowlist; when the old one expires, the same lifetime from now.
    fn successor(
        &self,
        keys: &crate::crypto::WorkspaceKeys,
        p: &Principal,
        old: &ApiKeyRecord,
        now: i64,
    ) -> VaultResult<(ApiKeyRecord, SecretString)> {
        let secret = ApiKeySecret::generate(keys).map_err(VaultError::Internal)?;
        let record = ApiKeyRecord {
            id: secret.id.clone(),
            workspace_id: p.workspace_id.clone(),
            name: old.name.clone(),
            secret_hash: secret.hash.to_vec(),
            scopes: old.scopes.clone(),
            list_ids: old.list_ids.clone(),
            created_by: p.actor.clone(),
            created_at: now,
            expires_at: Some(
                now + old
                    .expires_at
                    .map_or(DEFAULT_KEY_LIFETIME, |e| (e - old.created_at).max(0))
                    .min(self.key_max_lifetime),
            ),
            revoked_at: None,
            last_used_at: None,
            allowlist: old.allowlist.clone(),
            last_used_from: None,
        };
        Ok((record, secret.token))
    }
}

/// The record id an API key's sealed fields are bound to.
fn key_record_id(key_id: &str) -> [u8; 16] {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("api_key:{key_id}").as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// Seals a client address for `last_used_from`: a fresh record key sealed by
/// the workspace's data-encryption key (64 bytes), then the address sealed by
/// it, bound to the key's id and the field's name.
fn seal_address(keys: &crate::crypto::WorkspaceKeys, key_id: &str, ip: std::net::IpAddr) -> VaultResult<Vec<u8>> {
    let (cipher, sealed_key) = crate::crypto::ContactCipher::create(keys, key_record_id(key_id))?;
    let mut out = sealed_key.0;
    out.extend(cipher.seal(crate::crypto::FieldName::ApiKeyAddress, ip.to_canonical().to_string().as_bytes())?);
    Ok(out)
}

/// Opens a sealed `last_used_from`; a value that does not open (copied from
/// another key, altered) is reported and not shown.
fn open_address(keys: &crate::crypto::WorkspaceKeys, key_id: &str, sealed: &[u8]) -> Option<String> {
    let opened = (sealed.len() > 64)
        .then(|| crate::crypto::ContactCipher::open(keys, key_record_id(key_id), &sealed[..64]).ok())
        .flatten()
        .and_then(|cipher| cipher.open_text(crate::crypto::FieldName::ApiKeyAddress, &sealed[64..]).ok());
    if opened.is_none() {
        tracing::warn!(key = %key_id, "the stored last address of an API key failed its integrity check; not shown");
    }
    opened
}

/// Refuses a key holding a permission `p` lacks or reaching lists beyond `p`'s.
fn reachable(p: &Principal, key: &ApiKeyRecord) -> VaultResult<()> {
    if let Some(missing) = key.scopes.iter().filter_map(|s| Permission::parse(s)).find(|x| !p.has(*x)) {
        return Err(VaultError::Forbidden(crate::access::AccessError::Forbidden(missing)));
    }
    if !p.covers_lists(&key.list_ids) {
        return Err(VaultError::Forbidden(crate::access::AccessError::OutOfScope));
    }
    Ok(())
}

/// How long rotated keys keep working: `24h`, `30m`, at most 30 days; none or `0`: not at all.
fn parse_overlap(overlap: Option<&str>) -> VaultResult<i64> {
    match overlap.map(str::trim).filter(|o| !o.is_empty() && *o != "0") {
        Some(raw) => parse_duration_micros(raw)
            .filter(|m| *m <= 30 * 86_400_000_000)
            .ok_or_else(|| VaultError::invalid("overlap", "use a duration of at most 30 days, such as 24h or 30m")),
        None => Ok(0),
    }
}

/// Renders the expiry of a key for display.
pub fn describe_expiry(v: &ApiKeyView) -> String {
    v.expires_at.clone().unwrap_or_else(|| "never".into())
}
