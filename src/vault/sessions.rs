//! Signing in with a password, and the server-side sessions that follow.
//!
//! A session is an opaque 256-bit token (`css_...`) of which only the SHA-256 is
//! stored. It ends 12 hours after sign-in whatever the activity, after 30 minutes
//! without a request, when its user signs out or ends it, and at once when the
//! user is disabled or removed. Every sign-in makes a new token. Requests made
//! with the session cookie that change anything must also carry the session's
//! CSRF token, a keyed hash of the session token that is never stored.
//!
//! A failed sign-in answers the same whether the address is unknown, the user
//! is not active or the password is wrong, and takes as long: an unknown account
//! is checked against a dummy hash of the same cost.

use super::allowlists::{allows, RefusedBy};
use super::users::{user_email_index, user_view};
use super::{Vault, VaultError, VaultResult};
use crate::access::password::Verified;
use crate::access::Principal;
use crate::audit::{AuditDraft, Outcome};
use crate::clock::rfc3339;
use crate::crypto::random_bytes;
use crate::domain::EmailAddress;
use crate::store::{ListScope, SessionRecord, UserRecord, UserStatus};
use base64::Engine;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// A session ends this long after sign-in, whatever the activity.
pub const SESSION_ABSOLUTE_MICROS: i64 = 12 * 3_600 * 1_000_000;
/// A session ends after this long without a request.
pub const SESSION_IDLE_MICROS: i64 = 30 * 60 * 1_000_000;
/// Activity is written at most this often per session.
const TOUCH_EVERY_MICROS: i64 = 60 * 1_000_000;
const SESSION_PREFIX: &str = "css_";

/// Failed sign-ins are counted over this window.
pub const THROTTLE_WINDOW_MICROS: i64 = 15 * 60 * 1_000_000;
/// Failures for one address typed before each further attempt must wait.
pub const ACCOUNT_FREE_FAILURES: i64 = 5;
/// The longest wait for one address (it doubles with every failure up to this):
/// never a lockout a stranger can make permanent.
pub const ACCOUNT_MAX_DELAY_SECS: u64 = 300;
/// Failures from one client address within the window before it must wait for
/// the window to pass.
pub const ADDRESS_MAX_FAILURES: i64 = 30;

/// The wait (seconds) before another attempt for an address with `f` failures,
/// counted from the last one.
pub fn account_delay_secs(failures: i64) -> u64 {
    if failures < ACCOUNT_FREE_FAILURES {
        return 0;
    }
    let doublings = u32::try_from(failures - ACCOUNT_FREE_FAILURES).unwrap_or(u32::MAX).min(16);
    (1u64 << doublings).min(ACCOUNT_MAX_DELAY_SECS)
}

/// Why a sign-in or a session was refused; one message each, whatever the cause.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the email address or the password is wrong")]
    SignInRefused,
    #[error("the session is missing, unknown, ended or expired; sign in again")]
    Invalid,
    /// The session waits for its second factor (`POST /api/v1/auth/factor`).
    #[error("complete the sign-in with a passkey, the code of your authenticator app or a recovery code")]
    FactorRequired,
    #[error("the code is wrong or was used already")]
    FactorRefused,
    /// A step-up asked of a user who has no second factor.
    #[error("you have no second factor to confirm with: enrol a passkey (POST /api/v1/auth/factors/passkeys) or an authenticator app (POST /api/v1/auth/factors/totp) first")]
    NoSecondFactor,
    #[error("too many failed sign-ins; try again in {retry_after} seconds")]
    Throttled { retry_after: u64 },
    /// The workspace requires a second factor and the user has none yet.
    #[error("this workspace requires a second factor: enrol a passkey (POST /api/v1/auth/factors/passkeys) or an authenticator app (POST /api/v1/auth/factors/totp) first")]
    EnrolmentRequired,
    /// An owner reset every password: the user must choose a new one first.
    #[error("choose a new password first (POST /api/v1/auth/password): every password of this workspace was reset")]
    PasswordChangeRequired,
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// What a session is being used for, for the checks that hold some uses back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionUse {
    Any,
    Enrol,
    ChangePassword,
}

/// A new session: the token goes into the cookie and is never shown again.
#[derive(Debug)]
pub struct SignedIn {
    pub session: SessionView,
    /// The session stands for nobody until a second factor is given for it.
    pub second_factor_required: bool,
    /// The workspace requires a second factor the user has not enrolled: the
    /// session can only enrol one.
    pub second_factor_enrolment_required: bool,
    /// Every password was reset: the session can only choose a new one.
    pub password_change_required: bool,
    pub token: SecretString,
    pub csrf_token: String,
    pub user: super::users::UserView,
}

/// A session as its user sees it (never its token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    /// When the session ends at the latest.
    pub expires_at: String,
}

impl From<&SessionRecord> for SessionView {
    fn from(s: &SessionRecord) -> Self {
        SessionView {
            id: s.id.to_string(),
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            expires_at: rfc3339(s.expires_at.min(s.last_seen_at + SESSION_IDLE_MICROS)),
        }
    }
}

pub(crate) fn session_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The user a session or a sign-in stands for, as a principal.
fn principal_of(
    user: &UserRecord,
    permissions: std::collections::BTreeSet<crate::access::Permission>,
    session: &SessionRecord,
    ip_hash: Option<String>,
    ip: Option<std::net::IpAddr>,
) -> Principal {
    Principal {
        workspace_id: user.workspace_id.clone(),
        actor: format!("user:{}", user.id),
        permissions,
        lists: if user.list_ids.is_empty() {
            ListScope::All
        } else {
            ListScope::Lists(user.list_ids.clone())
        },
        ip_hash,
        ip,
        factor_checked_at: session.factor_verified_at,
    }
}

impl Vault {
    /// Signs a user in with their address and password. `workspace` may be left
    /// out when the instance has one workspace.
    pub async fn sign_in(
        &self,
        workspace: Option<&str>,
        email: &str,
        password: &SecretString,
        ip: Option<std::net::IpAddr>,
    ) -> Result<SignedIn, SessionError> {
        bounded(password, "password")?;
        let workspace_id = self.sign_in_workspace(workspace).await?;
        // An unknown workspace is answered like a wrong password, after as long.
        let keys = match self.keys(&workspace_id).await {
            Ok(k) => Some(k),
            Err(VaultError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        // Throttling keys: the address as typed (whether or not an account has it,
        // so that throttling tells nothing) and the client address.
        let account_key = keys
            .as_ref()
            .map(|k| k.token_hash("sign_in_account", email.trim().to_lowercase().as_bytes()).to_vec());
        let address_key = match (&keys, ip) {
            (Some(k), Some(ip)) => Some(k.token_hash("sign_in_address", ip.to_string().as_bytes()).to_vec()),
            _ => None,
        };
        let ip_hash = match (ip, &keys) {
            (Some(ip), Some(_)) => self.ip_hash(&workspace_id, &ip).await,
            _ => None,
        };
        // The workspace's allowlist applies before anything about accounts is
        // looked at, so a refusal tells nothing about them.
        if keys.is_some() {
            self.check_workspace_address(&workspace_id, "sign_in", ip, ip_hash.as_ref()).await?;
        }
        let now = self.now();
        if let Some(wait) = self
            .sign_in_wait(&workspace_id, account_key.as_deref(), address_key.as_deref(), now)
            .await?
        {
            return Err(SessionError::Throttled { retry_after: wait });
        }
        let user = match (&keys, EmailAddress::parse(email.trim())) {
            (Some(keys), Ok(address)) => self
                .store
                .find_user_by_email(&workspace_id, &user_email_index(keys, &address))
                .await
                .map_err(VaultError::from)?,
            _ => None,
        };
        let active = user.as_ref().filter(|u| u.status == UserStatus::Active);
        let stored = active.and_then(|u| u.password_hash.as_deref());
        let verified = self.passwords.verify(password, stored).await.map_err(VaultError::Internal)?;
        let known_workspace = keys.is_some();
        let (Some(keys), Some(user), Verified::Valid { rehash }) = (keys, active, verified) else {
            if known_workspace {
                let target = user.as_ref().map(|u| format!("user:{}", u.id));
                let mut draft = AuditDraft::new(&workspace_id, "anonymous", "user.sign_in_failed")
                    .outcome(Outcome::Denied)
                    .ip_hash(ip_hash.clone());
                if let Some(t) = &target {
                    draft = draft.target(t.clone());
                }
                self.store.record_audit(draft).await.map_err(VaultError::from)?;
                self.count_sign_in_failure(&workspace_id, account_key.as_deref(), address_key.as_deref(), target, ip_hash, now)
                    .await?;
            }
            return Err(SessionError::SignInRefused);
        };
        // The user's own allowlist is looked at only once the password is right,
        // so that it tells a stranger nothing; the refusal is audited.
        if !allows(&user.allowlist, ip) {
            let subject = format!("user:{}", user.id);
            return Err(self
                .refuse_address(&workspace_id, &subject, RefusedBy::User, ip_hash.as_ref())
                .await
                .into());
        }
        if let Some(k) = &account_key {
            self.store
                .clear_sign_in_failures(&workspace_id, "account", k)
                .await
                .map_err(VaultError::from)?;
        }
        let factor_required = self.has_second_factor(&workspace_id, user.id).await?;
        if rehash {
            match self.passwords.hash(password).await {
                Ok(phc) => {
                    if let Err(e) = self.store.update_password_hash(&workspace_id, user.id, phc, now).await {
                        tracing::warn!(error = %e, user = %user.id, "failed to store a rehashed password");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "failed to rehash a password"),
            }
        }
        let token = new_session_token();
        let session = SessionRecord {
            id: Uuid::now_v7(),
            token_hash: session_hash(&token),
            workspace_id: workspace_id.clone(),
            user_id: user.id,
            created_at: now,
            last_seen_at: now,
            expires_at: now + SESSION_ABSOLUTE_MICROS,
            ended_at: None,
            ip_hash: ip_hash.clone(),
            factor_required,
            factor_verified_at: None,
            enrolment_required: !factor_required && self.store.second_factor_required(&workspace_id).await.map_err(VaultError::from)?,
        };
        let actor = format!("user:{}", user.id);
        let draft = AuditDraft::new(&workspace_id, &actor, "user.signed_in")
            .target(format!("session:{}", session.id))
            .ip_hash(ip_hash);
        self.store.create_session(session.clone(), draft).await.map_err(VaultError::from)?;
        Ok(SignedIn {
            session: (&session).into(),
            second_factor_required: session.factor_required,
            second_factor_enrolment_required: session.enrolment_required,
            password_change_required: user.password_change_required,
            csrf_token: csrf_of(&keys, &token),
            token: SecretString::from(token),
            user: user_view(&keys, user)?,
        })
    }

    /// The workspace a sign-in names, or the only one of the server.
    pub(crate) async fn sign_in_workspace(&self, workspace: Option<&str>) -> VaultResult<String> {
        if let Some(w) = workspace.map(str::trim).filter(|w| !w.is_empty()) {
            return Ok(w.to_string());
        }
        let all = self.store.list_workspaces().await?;
        match all.as_slice() {
            [only] => Ok(only.id.clone()),
            _ => Err(VaultError::invalid(
                "workspace",
                "this server has several workspaces: name the one to sign in to",
            )),
        }
    }

    /// How long a sign-in must wait (seconds), if at all, given the failures
    /// counted for the address typed and for the client address.
    pub(crate) async fn sign_in_wait(
        &self,
        ws: &str,
        account: Option<&[u8]>,
        address: Option<&[u8]>,
        now: i64,
    ) -> VaultResult<Option<u64>> {
        let mut wait = 0u64;
        if let Some(key) = account {
            if let Some(f) = self.store.sign_in_failures(ws, "account", key).await? {
                if now - f.first_at < THROTTLE_WINDOW_MICROS {
                    let until = f.last_at + i64::try_from(account_delay_secs(f.failures)).unwrap_or(i64::MAX / 2) * 1_000_000;
                    wait = wait.max(secs_until(now, until));
                }
            }
        }
        if let Some(key) = address {
            if let Some(f) = self.store.sign_in_failures(ws, "address", key).await? {
                if f.failures >= ADDRESS_MAX_FAILURES && now - f.first_at < THROTTLE_WINDOW_MICROS {
                    wait = wait.max(secs_until(now, f.first_at + THROTTLE_WINDOW_MICROS));
                }
            }
        }
        Ok((wait > 0).then_some(wait))
    }

    /// Counts a failed sign-in for the address typed and the client address;
    /// the account's owner finds an event when its attempts start to be slowed.
    pub(crate) async fn count_sign_in_failure(
        &self,
        ws: &str,
        account: Option<&[u8]>,
        address: Option<&[u8]>,
        target: Option<String>,
        ip_hash: Option<String>,
        now: i64,
    ) -> VaultResult<()> {
        if let Some(key) = account {
            let f = self
                .store
                .record_sign_in_failure(ws, "account", key, now, THROTTLE_WINDOW_MICROS)
                .await?;
            if f.failures == ACCOUNT_FREE_FAILURES {
                let mut draft = AuditDraft::new(ws, "anonymous", "user.sign_in_throttled")
                    .outcome(Outcome::Denied)
                    .ip_hash(ip_hash)
                    .details(serde_json::json!({ "failures": f.failures, "window_minutes": THROTTLE_WINDOW_MICROS / 60_000_000 }));
                if let Some(t) = target {
                    draft = draft.target(t);
                }
                self.store.record_audit(draft).await?;
            }
        }
        if let Some(key) = address {
            self.store
                .record_sign_in_failure(ws, "address", key, now, THROTTLE_WINDOW_MICROS)
                .await?;
        }
        Ok(())
    }

    /// A live session by its token, with its user and the keyed hash of the
    /// client's address, whether or not its second factor was checked. The
    /// address must be one the workspace's and the user's allowlists allow.
    pub(crate) async fn live_session(
        &self,
        token: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(SessionRecord, UserRecord, Option<String>), SessionError> {
        if !token.starts_with(SESSION_PREFIX) {
            return Err(SessionError::Invalid);
        }
        let (session, user) = self
            .store
            .find_session(&session_hash(token))
            .await
            .map_err(VaultError::from)?
            .ok_or(SessionError::Invalid)?;
        let now = self.now();
        let live = session.ended_at.is_none()
            && now < session.expires_at
            && now - session.last_seen_at < SESSION_IDLE_MICROS
            && user.status == UserStatus::Active;
        if !live {
            return Err(SessionError::Invalid);
        }
        let ip_hash = match ip {
            Some(ip) => self.ip_hash(&session.workspace_id, &ip).await,
            None => None,
        };
        let workspace = self
            .store
            .workspace_allowlist(&session.workspace_id)
            .await
            .map_err(VaultError::from)?;
        let lists = super::allowlists::AddressLists {
            workspace: &workspace,
            own: &user.allowlist,
            own_kind: super::allowlists::RefusedBy::User,
        };
        self.check_address(&session.workspace_id, &format!("user:{}", user.id), lists, ip, ip_hash.as_ref())
            .await?;
        Ok((session, user, ip_hash))
    }

    /// The principal a session token stands for, and its session. A session that
    /// waits for its second factor stands for nobody yet.
    pub async fn authenticate_session(
        &self,
        token: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(Principal, SessionRecord), SessionError> {
        self.session_principal(token, ip, SessionUse::Any).await
    }

    /// Like `authenticate_session`, but also for a session that may only enrol
    /// the second factor its workspace requires.
    pub async fn authenticate_session_to_enrol(
        &self,
        token: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(Principal, SessionRecord), SessionError> {
        self.session_principal(token, ip, SessionUse::Enrol).await
    }

    /// Like `authenticate_session`, but also for a session whose user must
    /// choose a new password first (and may have a second factor to enrol after).
    pub async fn authenticate_session_to_change_password(
        &self,
        token: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(Principal, SessionRecord), SessionError> {
        self.session_principal(token, ip, SessionUse::ChangePassword).await
    }

    async fn session_principal(
        &self,
        token: &str,
        ip: Option<std::net::IpAddr>,
        to: SessionUse,
    ) -> Result<(Principal, SessionRecord), SessionError> {
        let (session, user, ip_hash) = self.live_session(token, ip).await?;
        if session.factor_required && session.factor_verified_at.is_none() {
            return Err(SessionError::FactorRequired);
        }
        if user.password_change_required && to != SessionUse::ChangePassword {
            return Err(SessionError::PasswordChangeRequired);
        }
        if session.enrolment_required && to == SessionUse::Any {
            return Err(SessionError::EnrolmentRequired);
        }
        let now = self.now();
        if now - session.last_seen_at > TOUCH_EVERY_MICROS {
            if let Err(e) = self.store.touch_session(session.id, now).await {
                tracing::warn!(error = %e, session = %session.id, "failed to record session activity");
            }
        }
        Ok((
            principal_of(
                &user,
                self.granted_by_role(&user.workspace_id, &user.role).await?,
                &session,
                ip_hash,
                ip,
            ),
            session,
        ))
    }

    /// Whether `presented` is the CSRF token of the session with this token.
    pub async fn csrf_matches(&self, workspace_id: &str, token: &str, presented: &str) -> VaultResult<bool> {
        let keys = self.keys(workspace_id).await?;
        let expected = csrf_of(&keys, token);
        Ok(expected.as_bytes().ct_eq(presented.trim().as_bytes()).into())
    }

    /// The signed-in user's sessions that have not ended, newest first.
    pub async fn list_my_sessions(&self, p: &Principal) -> VaultResult<Vec<SessionView>> {
        let user = signed_in_user(p, "sessions")?;
        Ok(self
            .store
            .list_sessions(&p.workspace_id, user)
            .await?
            .iter()
            .map(Into::into)
            .collect())
    }

    /// Ends one of the signed-in user's sessions (signing out ends the current one).
    pub async fn end_my_session(&self, p: &Principal, session_id: &str) -> VaultResult<()> {
        let user = signed_in_user(p, "sessions")?;
        let id = Uuid::parse_str(session_id.trim()).map_err(|_| VaultError::NotFound("session"))?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.session_ended")
            .target(format!("session:{id}"))
            .ip_hash(p.ip_hash.clone());
        self.store.end_session(&p.workspace_id, user, id, self.now(), draft).await?;
        Ok(())
    }
}

/// A new session token: 256 random bits.
pub(crate) fn new_session_token() -> String {
    format!(
        "{SESSION_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    )
}

/// The CSRF token of a session token: a keyed hash, never stored.
pub(crate) fn csrf_of(keys: &crate::crypto::WorkspaceKeys, token: &str) -> String {
    hex::encode(keys.token_hash("csrf", token.as_bytes()))
}

/// The user behind a principal signed in with a session; `what` names what only
/// such a user has, for the refusal an API key gets.
pub(crate) fn signed_in_user(p: &Principal, what: &str) -> VaultResult<Uuid> {
    p.actor
        .strip_prefix("user:")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| VaultError::BadRequest(format!("{what} belong to signed-in users; an API key has none")))
}

/// Refuses a password longer than any the policy accepts, before it is hashed.
fn bounded(password: &SecretString, field: &str) -> VaultResult<()> {
    if secrecy::ExposeSecret::expose_secret(password).chars().count() > crate::access::password::MAX_CHARS {
        return Err(VaultError::invalid(
            field,
            format!("a password has at most {} characters", crate::access::password::MAX_CHARS),
        ));
    }
    Ok(())
}

/// Whole seconds from `now` until `until` (both in microseconds), at least 1 when later.
fn secs_until(now: i64, until: i64) -> u64 {
    if until <= now {
        0
    } else {
        u64::try_from((until - now + 999_999) / 1_000_000).unwrap_or(u64::MAX)
    }
}

impl Vault {
    /// "Reset all passwords" (`security:manage`): every user with a password
    /// must choose a new one at their next sign-in, before anything else, and
    /// every session of the workspace ends now (the caller's too). One audit
    /// event; returns how many users must choose a new password.
    pub async fn reset_all_passwords(&self, p: &Principal) -> VaultResult<u64> {
        p.require(crate::access::Permission::SecurityManage)?;
        p.require_recent_factor(self.now())?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "security.passwords_reset")
            .target("workspace")
            .ip_hash(p.ip_hash.clone());
        Ok(self.store.require_password_changes(&p.workspace_id, self.now(), draft).await?)
    }

    /// The signed-in user changes their password: the current one is checked,
    /// the new one must meet the policy and differ; all the user's sessions end
    /// (this one too: sign in again).
    pub async fn change_password(&self, p: &Principal, current: &SecretString, new: &SecretString) -> VaultResult<()> {
        let id = signed_in_user(p, "passwords")?;
        bounded(current, "current_password")?;
        let user = self
            .store
            .find_user(&p.workspace_id, id)
            .await?
            .ok_or(VaultError::NotFound("user"))?;
        let keys = self.keys(&p.workspace_id).await?;
        let stored = user.password_hash.as_deref();
        if !matches!(
            self.passwords.verify(current, stored).await.map_err(VaultError::Internal)?,
            Verified::Valid { .. }
        ) {
            return Err(VaultError::invalid("current_password", "the current password is wrong"));
        }
        let email = super::users::user_email_of(&keys, &user)?;
        crate::access::password::check_policy(secrecy::ExposeSecret::expose_secret(new), &[&email])
            .map_err(|e| VaultError::invalid("new_password", e.to_string()))?;
        if secrecy::ExposeSecret::expose_secret(new) == secrecy::ExposeSecret::expose_secret(current) {
            return Err(VaultError::invalid(
                "new_password",
                "the new password is the current one; choose another",
            ));
        }
        let phc = self.passwords.hash(new).await.map_err(VaultError::Internal)?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.password_changed")
            .target(p.actor.clone())
            .ip_hash(p.ip_hash.clone());
        self.store.change_password(&p.workspace_id, id, phc, self.now(), draft).await?;
        Ok(())
    }
}

impl Vault {
    /// Whether the workspace requires a second factor of every user.
    pub async fn second_factor_required(&self, p: &Principal) -> VaultResult<bool> {
        p.require(crate::access::Permission::SecurityManage)?;
        Ok(self.store.second_factor_required(&p.workspace_id).await?)
    }

    /// Requires (or stops requiring) a second factor of every user of the
    /// workspace; users without one must enrol at their next sign-in.
    pub async fn set_second_factor_required(&self, p: &Principal, required: bool) -> VaultResult<bool> {
        p.require(crate::access::Permission::SecurityManage)?;
        p.require_recent_factor(self.now())?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "security.second_factor_requirement_changed")
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "required": required }));
        self.store
            .set_second_factor_required(&p.workspace_id, required, self.now(), draft)
            .await?;
        Ok(required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_after_five_failures_up_to_five_minutes() {
        let delays: Vec<u64> = (0..16).map(account_delay_secs).collect();
        assert_eq!(&delays[..5], &[0, 0, 0, 0, 0]);
        assert_eq!(&delays[5..10], &[1, 2, 4, 8, 16]);
        assert_eq!(delays[14], 300);
        assert_eq!(account_delay_secs(i64::MAX), 300);
        assert_eq!(secs_until(0, 1), 1);
        assert_eq!(secs_until(5, 5), 0);
    }
}
