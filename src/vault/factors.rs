//! Second factors: TOTP authenticators (RFC 6238: SHA-1, 6 digits, 30-second
//! steps, one step of drift either way) and single-use recovery codes.
//!
//! A signed-in user enrols an authenticator: the seed is made here, sealed under
//! the user's key, and shown once as text, as an `otpauth://` URI and as an SVG QR
//! code; a code from the app confirms it, which gives ten recovery codes (stored
//! only as keyed hashes; new ones void the old) and ends all the user's sessions.
//! From then on a sign-in makes a session that stands for nobody until a code (or
//! a recovery code) is given for it; every code works once, and the session ends
//! at the fifth wrong one.

use super::sessions::SessionError;
use super::users::user_email_of;
use super::{Vault, VaultError, VaultResult};
use crate::access::Principal;
use crate::audit::{AuditDraft, Outcome};
use crate::crypto::{random_bytes, ContactCipher, FieldName, WorkspaceKeys};
use crate::store::{TotpRecord, UserRecord};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Builder, Totp};

/// Recovery codes made at a time.
pub const RECOVERY_CODES: usize = 10;
/// Wrong codes a session may be given before it ends.
pub const FACTOR_ATTEMPTS: i64 = 5;
const ISSUER: &str = "consentry";
/// Crockford's base-32 alphabet: no I, L, O or U to misread.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new authenticator, shown once: the seed as text, as an `otpauth://` URI and
/// as a QR code of that URI.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    /// The seed in base 32, for apps that take it typed in.
    pub secret: String,
    pub otpauth_uri: String,
    /// An SVG image of the URI as a QR code.
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment([REDACTED])")
    }
}

fn totp(seed: &[u8], account: &str) -> VaultResult<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(seed.to_vec())
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| VaultError::Internal(anyhow::anyhow!("failed to set up TOTP: {e}")))
}

pub(super) fn user_cipher(keys: &WorkspaceKeys, user: &UserRecord) -> VaultResult<ContactCipher> {
    Ok(ContactCipher::open(keys, *user.id.as_bytes(), &user.user_key)?)
}

/// The keyed hash a recovery code is stored under (dashes and case ignored).
pub(super) fn recovery_hash(keys: &WorkspaceKeys, code: &str) -> Vec<u8> {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    keys.token_hash("recovery_code", normalized.as_bytes()).to_vec()
}

pub(super) fn new_recovery_code() -> String {
    let bytes = random_bytes::<10>();
    let chars: String = bytes.iter().map(|b| RECOVERY_ALPHABET[usize::from(b % 32)] as char).collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// A session's new token after a second-factor check (its `Debug` hides it).
#[derive(Debug)]
pub struct RenewedSession {
    pub token: SecretString,
    pub csrf_token: String,
    /// When the session ends at the latest (microseconds).
    pub expires_at: i64,
}

impl Vault {
    fn unix_seconds(&self) -> u64 {
        u64::try_from(self.now() / 1_000_000).unwrap_or(0)
    }

    pub(super) async fn own_user(&self, p: &Principal) -> VaultResult<UserRecord> {
        let id = super::sessions::signed_in_user(p, "second factors")?;
        self.store.find_user(&p.workspace_id, id).await?.ok_or(VaultError::NotFound("user"))
    }

    /// Starts enrolling an authenticator for the signed-in user.
    pub async fn begin_totp(&self, p: &Principal) -> VaultResult<TotpEnrolment> {
        let user = self.own_user(p).await?;
        let keys = self.keys(&p.workspace_id).await?;
        let seed = zeroize::Zeroizing::new(random_bytes::<20>());
        let cipher = user_cipher(&keys, &user)?;
        let account = user_email_of(&keys, &user)?;
        let totp = totp(seed.as_slice(), &account)?;
        let uri = totp
            .to_url()
            .map_err(|e| VaultError::Internal(anyhow::anyhow!("failed to write the otpauth URI: {e}")))?;
        let qr =
            qrcode::QrCode::new(uri.as_bytes()).map_err(|e| VaultError::Internal(anyhow::anyhow!("failed to draw the QR code: {e}")))?;
        let record = TotpRecord {
            user_id: user.id,
            workspace_id: p.workspace_id.clone(),
            secret_ct: cipher.seal(FieldName::TotpSecret, seed.as_slice())?,
            created_at: self.now(),
            confirmed_at: None,
            last_step: 0,
        };
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.totp_enrolment_started")
            .target(p.actor.clone())
            .ip_hash(p.ip_hash.clone());
        self.store.start_totp(record, draft).await.map_err(|e| match e {
            crate::store::StoreError::Conflict { .. } => {
                VaultError::Conflict("an authenticator is set up already; ask a user manager to reset it to enrol another".into())
            }
            other => other.into(),
        })?;
        Ok(TotpEnrolment {
            secret: totp.secret().to_base32(),
            otpauth_uri: uri,
            qr_svg: qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build(),
        })
    }

    /// Confirms the pending authenticator with a code from it; returns the new
    /// recovery codes (shown once) and ends all the user's sessions.
    pub async fn confirm_totp(&self, p: &Principal, code: &str) -> VaultResult<Vec<SecretString>> {
        let user = self.own_user(p).await?;
        let keys = self.keys(&p.workspace_id).await?;
        let pending = self
            .store
            .find_totp(&p.workspace_id, user.id)
            .await?
            .filter(|t| t.confirmed_at.is_none())
            .ok_or_else(|| VaultError::Conflict("no authenticator is waiting to be confirmed; start the enrolment first".into()))?;
        let seed = user_cipher(&keys, &user)?.open_field(FieldName::TotpSecret, &pending.secret_ct)?;
        let step = totp(&seed, "user")?
            .check(code.trim(), self.unix_seconds())
            .ok_or_else(|| VaultError::invalid("code", "the code does not match; type the current code of the authenticator app"))?;
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes = codes.iter().map(|c| recovery_hash(&keys, c)).collect();
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.totp_enrolled")
            .target(p.actor.clone())
            .ip_hash(p.ip_hash.clone());
        let step = i64::try_from(step).map_err(|e| VaultError::Internal(e.into()))?;
        self.store
            .confirm_totp(&p.workspace_id, user.id, step, hashes, self.now(), draft)
            .await?;
        Ok(codes.into_iter().map(SecretString::from).collect())
    }

    /// Checks a code of the user's authenticator, or one of their recovery
    /// codes: for a session that waits for its second factor this completes the
    /// sign-in; for a session in use it is the step-up that exports and security
    /// settings need within 10 minutes. Either way the session gets a new token
    /// (a privilege change), returned with its CSRF token; the old token stops.
    pub async fn verify_second_factor(
        &self,
        token: &str,
        code: &SecretString,
        ip: Option<std::net::IpAddr>,
    ) -> Result<RenewedSession, SessionError> {
        let (session, user, ip_hash, completing) = self.factor_session(token, ip).await?;
        let ws = session.workspace_id.clone();
        let keys = self.keys(&ws).await?;
        let code = code.expose_secret().trim();
        let totp_record = self.store.find_totp(&ws, user.id).await.map_err(VaultError::from)?;
        let mut accepted = None;
        if let Some(t) = totp_record.filter(|t| t.confirmed_at.is_some()) {
            let seed = user_cipher(&keys, &user)?
                .open_field(FieldName::TotpSecret, &t.secret_ct)
                .map_err(VaultError::from)?;
            if let Some(step) = totp(&seed, "user")?.check(code, self.unix_seconds()) {
                let step = i64::try_from(step).map_err(|e| VaultError::Internal(e.into()))?;
                if self.store.use_totp_step(&ws, user.id, step).await.map_err(VaultError::from)? {
                    accepted = Some("totp");
                }
            }
        }
        if accepted.is_none()
            && code.len() <= 32
            && self
                .store
                .use_recovery_code(&ws, user.id, &recovery_hash(&keys, code), self.now())
                .await
                .map_err(VaultError::from)?
        {
            accepted = Some("recovery_code");
        }
        self.settle_factor_check(&session, &user, ip_hash, accepted, completing).await
    }

    /// The live session a second-factor check is for, its user, the client's
    /// keyed address, and whether the check completes a sign-in (rather than
    /// being a step-up, which needs a session in full use with a factor).
    pub(super) async fn factor_session(
        &self,
        token: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(crate::store::SessionRecord, UserRecord, Option<String>, bool), SessionError> {
        let (session, user, ip_hash) = self.live_session(token, ip).await?;
        let completing = session.factor_required && session.factor_verified_at.is_none();
        if !completing {
            if user.password_change_required {
                return Err(SessionError::PasswordChangeRequired);
            }
            if !session.factor_required {
                return Err(SessionError::NoSecondFactor);
            }
        }
        Ok((session, user, ip_hash, completing))
    }

    /// Ends a second-factor check of a session: when `accepted` (the method
    /// that passed), marks the factor checked and gives the session a new token;
    /// otherwise counts the failure (the fifth ends the session) and refuses.
    pub(super) async fn settle_factor_check(
        &self,
        session: &crate::store::SessionRecord,
        user: &UserRecord,
        ip_hash: Option<String>,
        accepted: Option<&'static str>,
        completing: bool,
    ) -> Result<RenewedSession, SessionError> {
        let ws = session.workspace_id.clone();
        let actor = format!("user:{}", user.id);
        let now = self.now();
        match accepted {
            Some(method) => {
                let keys = self.keys(&ws).await?;
                let draft = AuditDraft::new(&ws, &actor, "user.second_factor_verified")
                    .target(format!("session:{}", session.id))
                    .ip_hash(ip_hash)
                    .details(serde_json::json!({ "method": method, "step_up": !completing }));
                let renewed = super::sessions::new_session_token();
                self.store
                    .verify_session_factor(session.id, super::sessions::session_hash(&renewed), now, draft)
                    .await
                    .map_err(VaultError::from)?;
                Ok(RenewedSession {
                    csrf_token: super::sessions::csrf_of(&keys, &renewed),
                    token: SecretString::from(renewed),
                    expires_at: session.expires_at,
                })
            }
            None => {
                let draft = AuditDraft::new(&ws, &actor, "user.second_factor_failed")
                    .target(format!("session:{}", session.id))
                    .outcome(Outcome::Denied);
                self.store
                    .fail_session_factor(session.id, FACTOR_ATTEMPTS, now, draft)
                    .await
                    .map_err(VaultError::from)?;
                Err(SessionError::FactorRefused)
            }
        }
    }

    /// Whether a user has a second factor: a confirmed authenticator app or a passkey.
    pub(crate) async fn has_second_factor(&self, workspace_id: &str, user_id: uuid::Uuid) -> VaultResult<bool> {
        if self
            .store
            .find_totp(workspace_id, user_id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some())
        {
            return Ok(true);
        }
        Ok(!self.store.list_passkeys(workspace_id, user_id).await?.is_empty())
    }

    /// Removes a user's authenticator, passkeys and recovery codes and ends their sessions
    /// (for a user who lost their phone); recorded once.
    pub async fn reset_user_second_factor(&self, p: &Principal, id: &str) -> VaultResult<bool> {
        p.require(crate::access::Permission::UsersManage)?;
        let user = self.managed_user(p, id).await?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.second_factor_reset")
            .target(format!("user:{}", user.id))
            .ip_hash(p.ip_hash.clone());
        Ok(self
            .store
            .remove_second_factors(&p.workspace_id, user.id, self.now(), draft)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_ten_crockford_characters_and_hash_without_dashes_or_case() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 11);
        assert!(code
            .chars()
            .enumerate()
            .all(|(i, c)| if i == 5 { c == '-' } else { RECOVERY_ALPHABET.contains(&(c as u8)) }));
        assert_ne!(new_recovery_code(), code);
    }

    #[test]
    fn codes_follow_rfc_6238_with_one_step_of_drift() {
        // RFC 6238 appendix B, SHA-1 seed, 8 digits there: here the same seed at 6 digits.
        let seed = b"12345678901234567890";
        let t = totp(seed, "user").unwrap();
        assert_eq!(t.generate(59).to_string(), "287082");
        assert_eq!(t.check("287082", 59), Some(1));
        assert_eq!(t.check("287082", 59 + 30), Some(1), "one step late is accepted");
        assert_eq!(t.check("287082", 59 + 60), None, "two steps late is not");
        assert_eq!(t.check("28708", 59), None);
        assert_eq!(t.check("not a code", 59), None);
    }
}
