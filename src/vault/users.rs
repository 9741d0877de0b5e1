//! Users: one sign-in per person. The owner (or anyone with `users:manage`)
//! invites a colleague by email address with a role and, optionally, some lists;
//! the invitee chooses a password with a single-use invitation token that is valid
//! for 72 hours. A user never gets more than the one who invited them; disabling a
//! user revokes the API keys they created at once.

use super::{Vault, VaultError, VaultResult};
use crate::access::password::check_policy;
use crate::access::{Permission, Principal};
use crate::audit::AuditDraft;
use crate::clock::rfc3339;
use crate::crypto::{random_bytes, WorkspaceKeys};
use crate::crypto::{ContactCipher, FieldName};
use crate::domain::EmailAddress;
use crate::store::{InvitationRecord, StoreError, UserRecord, UserStatus};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How long an invitation can be used.
pub const INVITATION_VALID_MICROS: i64 = 72 * 3_600 * 1_000_000;
/// Prefix of invitation tokens, so a leaked one is recognisable.
const INVITATION_PREFIX: &str = "csi_";

/// A user as shown to those who manage users (never a password hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub role: String,
    pub lists: Vec<String>,
    /// `invited`, `active` or `disabled`.
    pub status: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// Addresses (CIDR blocks) the user may sign in and work from; empty: any.
    pub allowlist: Vec<String>,
}

/// A new invitation: the token is shown once, to be passed on to the invitee
/// (its `Debug` form hides the token).
#[derive(Debug)]
pub struct Invitation {
    pub user: UserView,
    pub token: SecretString,
    pub expires_at: String,
}

/// The keyed-free hash an invitation is stored under: the token carries 256
/// random bits, so a plain SHA-256 cannot be reversed or guessed, and it can be
/// looked up before the workspace is known.
fn invitation_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub(crate) fn user_email_index(keys: &WorkspaceKeys, email: &EmailAddress) -> Vec<u8> {
    keys.blind_index("user_email", email.normalized()).to_vec()
}

pub(crate) fn user_email_of(keys: &WorkspaceKeys, user: &UserRecord) -> VaultResult<String> {
    let cipher = ContactCipher::open(keys, *user.id.as_bytes(), &user.user_key)?;
    Ok(cipher.open_text(FieldName::UserEmail, &user.email_ct)?)
}

pub(crate) fn user_view(keys: &WorkspaceKeys, user: &UserRecord) -> VaultResult<UserView> {
    Ok(UserView {
        id: user.id.to_string(),
        email: user_email_of(keys, user)?,
        role: user.role.clone(),
        lists: user.list_ids.clone(),
        status: user.status.as_str().to_string(),
        created_by: user.created_by.clone(),
        created_at: rfc3339(user.created_at),
        updated_at: rfc3339(user.updated_at),
        allowlist: user.allowlist.clone(),
    })
}

fn parse_user_id(raw: &str) -> VaultResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| VaultError::invalid("id", "a user id is a UUID, as `consentry users list` shows it"))
}

fn conflict_as_user(e: StoreError) -> VaultError {
    match e {
        StoreError::Conflict { field: "email" } => VaultError::Conflict("a user with this email address already exists".into()),
        StoreError::Conflict { field: "user status" } => {
            VaultError::Conflict("this user has not accepted the invitation yet; invite them again or remove them".into())
        }
        other => other.into(),
    }
}

impl Vault {
    /// Invites a colleague: creates the user (invited, no password) and a
    /// single-use invitation valid for 72 hours.
    pub async fn invite_user(&self, p: &Principal, email: &str, role: &str, lists: &[String]) -> VaultResult<Invitation> {
        p.require(Permission::UsersManage)?;
        let address = EmailAddress::parse(email.trim()).map_err(|m| VaultError::invalid("email", m))?;
        let perms = self.role_permissions(&p.workspace_id, role, "role").await?;
        if perms.is_empty() {
            return Err(VaultError::invalid(
                "role",
                "give a role (owner, admin, marketer, sender, viewer, auditor) or permissions",
            ));
        }
        let list_ids = self.delegable(p, &perms, lists, "role").await?;
        let keys = self.keys(&p.workspace_id).await?;
        let now = self.now();
        let id = Uuid::now_v7();
        let (cipher, sealed_key) = ContactCipher::create(&keys, *id.as_bytes())?;
        let user = UserRecord {
            id,
            workspace_id: p.workspace_id.clone(),
            email_bidx: user_email_index(&keys, &address),
            user_key: sealed_key.0,
            email_ct: cipher.seal(FieldName::UserEmail, address.as_str().as_bytes())?,
            role: role.trim().to_string(),
            list_ids,
            password_hash: None,
            status: UserStatus::Invited,
            created_by: p.actor.clone(),
            created_at: now,
            updated_at: now,
            allowlist: Vec::new(),
            password_change_required: false,
        };
        let token = format!(
            "{INVITATION_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
        );
        let invitation = InvitationRecord {
            token_hash: invitation_hash(&token),
            workspace_id: p.workspace_id.clone(),
            user_id: id,
            created_at: now,
            expires_at: now + INVITATION_VALID_MICROS,
            used_at: None,
        };
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.invited")
            .target(format!("user:{id}"))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "role": user.role, "lists": user.list_ids, "expires_at": invitation.expires_at }));
        self.store
            .create_user(user.clone(), invitation.clone(), draft)
            .await
            .map_err(conflict_as_user)?;
        Ok(Invitation {
            user: user_view(&keys, &user)?,
            token: SecretString::from(token),
            expires_at: rfc3339(invitation.expires_at),
        })
    }

    /// Accepts an invitation: checks the chosen password against the policy,
    /// stores its Argon2id hash and makes the user active. The token is the
    /// authority here; it works once, within 72 hours.
    pub async fn accept_invitation(&self, token: &SecretString, password: &SecretString) -> VaultResult<UserView> {
        let gone = || VaultError::Conflict("the invitation has expired or was already used; ask for a new one".into());
        let token = token.expose_secret().trim();
        let hash = invitation_hash(token);
        let invitation = match token.starts_with(INVITATION_PREFIX) {
            true => self.store.find_invitation(&hash).await?,
            false => None,
        }
        .ok_or(VaultError::NotFound("invitation"))?;
        if invitation.used_at.is_some() || invitation.expires_at <= self.now() {
            return Err(gone());
        }
        let keys = self.keys(&invitation.workspace_id).await?;
        let user = self
            .store
            .find_user(&invitation.workspace_id, invitation.user_id)
            .await?
            .ok_or(VaultError::NotFound("invitation"))?;
        let email = user_email_of(&keys, &user)?;
        check_policy(password.expose_secret(), &[&email]).map_err(|e| VaultError::invalid("password", e.to_string()))?;
        let phc = self.passwords.hash(password).await.map_err(VaultError::Internal)?;
        let actor = format!("user:{}", user.id);
        let draft = AuditDraft::new(&invitation.workspace_id, &actor, "user.invitation_accepted").target(actor.clone());
        match self.store.accept_invitation(&hash, phc, self.now(), draft).await {
            Err(StoreError::Ended(_)) => return Err(gone()),
            other => other?,
        }
        let user = self
            .store
            .find_user(&invitation.workspace_id, invitation.user_id)
            .await?
            .ok_or(VaultError::NotFound("user"))?;
        user_view(&keys, &user)
    }

    /// The workspace's users, oldest first.
    pub async fn list_users(&self, p: &Principal) -> VaultResult<Vec<UserView>> {
        p.require(Permission::UsersManage)?;
        let keys = self.keys(&p.workspace_id).await?;
        self.store
            .list_users(&p.workspace_id)
            .await?
            .iter()
            .filter(|u| p.covers_lists(&u.list_ids))
            .map(|u| user_view(&keys, u))
            .collect()
    }

    pub async fn get_user(&self, p: &Principal, id: &str) -> VaultResult<UserView> {
        p.require(Permission::UsersManage)?;
        let user = self.managed_user(p, id).await?;
        user_view(&*self.keys(&p.workspace_id).await?, &user)
    }

    /// Disables a user (their API keys are revoked with it) or enables them
    /// again; doing what is already done changes and records nothing.
    pub async fn set_user_enabled(&self, p: &Principal, id: &str, enabled: bool) -> VaultResult<UserView> {
        p.require(Permission::UsersManage)?;
        let user = self.managed_user(p, id).await?;
        if !enabled && user.status == UserStatus::Invited {
            return Err(VaultError::Conflict(
                "this user has not accepted the invitation yet; remove them instead (`consentry users remove ID`), which voids the invitation".into(),
            ));
        }
        let (status, action) = match enabled {
            true => (UserStatus::Active, "user.enabled"),
            false => (UserStatus::Disabled, "user.disabled"),
        };
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, action)
            .target(format!("user:{}", user.id))
            .ip_hash(p.ip_hash.clone());
        self.store
            .set_user_status(&p.workspace_id, user.id, status, self.now(), draft)
            .await
            .map_err(conflict_as_user)?;
        self.get_user(p, id).await
    }

    /// Removes a user: their sealed address and invitations are deleted, their
    /// API keys revoked; the audit log keeps their id.
    pub async fn remove_user(&self, p: &Principal, id: &str) -> VaultResult<()> {
        p.require(Permission::UsersManage)?;
        let user = self.managed_user(p, id).await?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.removed")
            .target(format!("user:{}", user.id))
            .ip_hash(p.ip_hash.clone());
        self.store.remove_user(&p.workspace_id, user.id, self.now(), draft).await?;
        Ok(())
    }

    /// A user the principal may manage: not themselves, and none holding a
    /// permission the principal lacks.
    pub(crate) async fn managed_user(&self, p: &Principal, id: &str) -> VaultResult<UserRecord> {
        self.user_in_reach(p, id, false).await
    }

    /// A user within the principal's reach: none holding a permission the
    /// principal lacks or limited to lists beyond the principal's; the principal
    /// themselves only when `self_too`.
    pub(crate) async fn user_in_reach(&self, p: &Principal, id: &str, self_too: bool) -> VaultResult<UserRecord> {
        let id = parse_user_id(id)?;
        let user = self
            .store
            .find_user(&p.workspace_id, id)
            .await?
            .ok_or(VaultError::NotFound("user"))?;
        if p.actor == format!("user:{id}") {
            if self_too {
                return Ok(user);
            }
            return Err(VaultError::Conflict(
                "you cannot change your own account this way; ask another user manager".into(),
            ));
        }
        // A role that no longer resolves grants nothing, and anyone managing
        // users may fix it.
        let theirs = self.granted_by_role(&p.workspace_id, &user.role).await?;
        if let Some(more) = theirs.iter().find(|x| !p.has(**x)) {
            return Err(VaultError::Forbidden(crate::access::AccessError::Forbidden(*more)));
        }
        if !p.covers_lists(&user.list_ids) {
            return Err(VaultError::Forbidden(crate::access::AccessError::OutOfScope));
        }
        Ok(user)
    }
}
