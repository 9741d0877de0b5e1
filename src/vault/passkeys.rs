//! WebAuthn passkeys (webauthn-rs): a second factor, and a sign-in of their own.
//!
//! Every ceremony is two requests: the server answers a challenge (the options
//! for `navigator.credentials.create` or `.get`) and keeps the verifier's state,
//! sealed under a key of its own bound to the ceremony's id, in the store, so
//! that any server sharing the database can take the answer; a ceremony is
//! answered once and within five minutes. Passkeys must verify their user (PIN
//! or biometrics), so a passkey is both factors at once: a sign-in with one
//! alone makes a session whose second factor counts as checked.
//!
//! A credential (public key, signature counter) is stored only sealed under its
//! user's key and bound to its row. webauthn-rs refuses an assertion whose
//! signature counter does not rise above the stored one (a cloned
//! authenticator), and recording each use is a compare-and-set, so two servers
//! cannot both accept answers made against the same stored counter.

use super::factors::{new_recovery_code, recovery_hash, user_cipher, RenewedSession, RECOVERY_CODES};
use super::sessions::{SessionError, SignedIn};
use super::users::{user_email_of, user_view};
use super::{Vault, VaultError, VaultResult};
use crate::access::Principal;
use crate::audit::{AuditDraft, Outcome};
use crate::clock::rfc3339;
use crate::crypto::{random_bytes, ContactCipher, FieldName, WorkspaceKeys};
use crate::store::{CeremonyKind, CeremonyRecord, PasskeyRecord, SessionRecord, UserRecord, UserStatus};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url,
    Webauthn, WebauthnBuilder, WebauthnError,
};

/// How long a challenge can be answered.
pub const CEREMONY_MICROS: i64 = 5 * 60 * 1_000_000;
/// Passkeys one user may hold.
pub const MAX_PASSKEYS: usize = 10;
const NAME_MAX_CHARS: usize = 64;
/// Passkey sign-in challenges one client address may ask for within the
/// sign-in throttling window (15 minutes).
pub const SIGN_IN_CHALLENGES_PER_WINDOW: i64 = 100;

/// The signature counter a stored passkey holds (read from its serialised
/// form: the library keeps the field to itself).
fn stored_counter(passkey: &Passkey) -> VaultResult<u32> {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| v.pointer("/cred/counter").and_then(|c| c.as_u64()))
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| VaultError::Internal(anyhow::anyhow!("a stored passkey has no readable signature counter")))
}

/// The refusal of an eleventh passkey, at the start of a registration or, when
/// others finished meanwhile, at its end.
fn too_many_passkeys() -> VaultError {
    VaultError::Conflict(format!(
        "you have {MAX_PASSKEYS} passkeys, the most one user may hold: remove one first"
    ))
}

/// The relying party passkeys are made for: the server's public origin.
pub struct RelyingParty {
    webauthn: Webauthn,
    origin: Url,
}

impl RelyingParty {
    /// A relying party for `origin` (`https://consentry.example.com`, or
    /// `http://localhost:PORT`, which browsers also allow); its id is the host.
    pub fn new(origin: &Url) -> anyhow::Result<Self> {
        let host = origin
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("the public URL {origin} names no host"))?;
        let secure = origin.scheme() == "https" || (origin.scheme() == "http" && host == "localhost");
        if !secure {
            anyhow::bail!("the public URL {origin} must use https (plain http only for localhost): browsers offer passkeys to no other");
        }
        if origin.path() != "/" || origin.query().is_some() || origin.fragment().is_some() {
            anyhow::bail!("the public URL {origin} must be an origin alone: scheme, host and port, without a path");
        }
        let webauthn = WebauthnBuilder::new(host, origin)
            .and_then(|b| b.rp_name("consentry").timeout(std::time::Duration::from_secs(300)).build())
            .map_err(|e| anyhow::anyhow!("the public URL {origin} cannot serve passkeys: {e}"))?;
        Ok(RelyingParty {
            webauthn,
            origin: origin.clone(),
        })
    }

    /// The origin browsers must report.
    pub fn origin(&self) -> &Url {
        &self.origin
    }
}

/// A challenge for an authenticator: pass `options.publicKey` (its base64url
/// fields decoded to bytes) to `navigator.credentials.create` or `.get`, then
/// send the credential it gives back with `ceremony_id`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PasskeyChallenge {
    pub ceremony_id: String,
    /// `CredentialCreationOptions` or `CredentialRequestOptions` as JSON.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    /// The answer must come before this.
    pub expires_at: String,
}

/// A passkey as its user sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// A new passkey, and recovery codes when it is the user's first second factor.
#[derive(Debug)]
pub struct PasskeyEnrolled {
    pub passkey: PasskeyView,
    /// Ten single-use codes, shown once; empty when the user had a second
    /// factor already (their recovery codes stay as they were).
    pub recovery_codes: Vec<SecretString>,
}

fn ceremony_id() -> Uuid {
    uuid::Builder::from_random_bytes(random_bytes::<16>()).into_uuid()
}

/// Seals a ceremony's state under a key of its own bound to the ceremony's id.
fn seal_state<T: Serialize>(keys: &WorkspaceKeys, id: Uuid, state: &T) -> VaultResult<Vec<u8>> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(state).map_err(|e| VaultError::Internal(e.into()))?);
    let (cipher, sealed_key) = ContactCipher::create(keys, *id.as_bytes())?;
    let mut out = sealed_key.0;
    out.extend(cipher.seal(FieldName::WebauthnCeremony, &json)?);
    Ok(out)
}

fn open_state<T: DeserializeOwned>(keys: &WorkspaceKeys, ceremony: &CeremonyRecord) -> VaultResult<T> {
    let sealed = &ceremony.state_ct;
    if sealed.len() <= 64 {
        return Err(VaultError::Integrity {
            field: "webauthn_ceremony".into(),
        });
    }
    let cipher = ContactCipher::open(keys, *ceremony.id.as_bytes(), &sealed[..64])?;
    let json = cipher.open_field(FieldName::WebauthnCeremony, &sealed[64..])?;
    serde_json::from_slice(&json).map_err(|e| VaultError::Internal(anyhow::anyhow!("a stored WebAuthn ceremony does not parse: {e}")))
}

fn open_passkey(cipher: &ContactCipher, record: &PasskeyRecord) -> VaultResult<Passkey> {
    let id = record.id.to_string();
    let json = cipher.open_field(FieldName::Passkey(&id), &record.credential_ct)?;
    serde_json::from_slice(&json).map_err(|e| VaultError::Internal(anyhow::anyhow!("a stored passkey does not parse: {e}")))
}

fn seal_passkey(cipher: &ContactCipher, id: Uuid, passkey: &Passkey) -> VaultResult<Vec<u8>> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(passkey).map_err(|e| VaultError::Internal(e.into()))?);
    Ok(cipher.seal(FieldName::Passkey(&id.to_string()), &json)?)
}

fn view(cipher: &ContactCipher, record: &PasskeyRecord) -> VaultResult<PasskeyView> {
    let id = record.id.to_string();
    Ok(PasskeyView {
        name: cipher.open_text(FieldName::PasskeyName(&id), &record.name_ct)?,
        id,
        created_at: rfc3339(record.created_at),
        last_used_at: record.last_used_at.map(rfc3339),
    })
}

/// The keyed hash a credential id is found by.
fn credential_hash(keys: &WorkspaceKeys, credential_id: &[u8]) -> Vec<u8> {
    keys.token_hash("passkey_credential", credential_id).to_vec()
}

fn parse_ceremony_id(raw: &str) -> VaultResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| VaultError::invalid("ceremony_id", "give the ceremony_id the challenge answered"))
}

/// Reads a browser's credential JSON, naming where it does not fit (never its values).
fn parse_credential<T: DeserializeOwned>(value: serde_json::Value, what: &str) -> VaultResult<T> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." { String::new() } else { format!(" (at `{at}`)") };
        VaultError::invalid(
            "credential",
            format!("this is not {what}{at}: send the PublicKeyCredential the browser gave, as JSON with base64url fields"),
        )
    })
}

fn ceremony_gone() -> VaultError {
    VaultError::Conflict(
        "the passkey challenge is unknown, was answered already or expired (they last five minutes): ask for a new one".into(),
    )
}

fn authenticator_refused(e: &WebauthnError) -> String {
    format!("the authenticator's answer was refused ({e}); try again, or use another passkey")
}

impl Vault {
    /// Serves passkeys for this origin (called when the HTTP server starts).
    pub fn set_relying_party(&self, origin: &Url) -> anyhow::Result<()> {
        let rp = Arc::new(RelyingParty::new(origin)?);
        if let Ok(mut slot) = self.relying_party.write() {
            *slot = Some(rp);
        }
        Ok(())
    }

    /// The relying party passkeys are made for, when the server has one.
    pub fn relying_party(&self) -> Option<Arc<RelyingParty>> {
        self.relying_party.read().ok().and_then(|rp| rp.clone())
    }

    fn webauthn(&self) -> VaultResult<Arc<RelyingParty>> {
        self.relying_party().ok_or_else(|| {
            VaultError::Conflict("passkeys are served by `consentry serve` only, at the origin of its `public_url` setting".into())
        })
    }

    async fn start_ceremony<T: Serialize>(
        &self,
        workspace_id: &str,
        kind: CeremonyKind,
        user: Option<Uuid>,
        session: Option<Uuid>,
        state: &T,
    ) -> VaultResult<(Uuid, i64)> {
        let keys = self.keys(workspace_id).await?;
        let id = ceremony_id();
        let now = self.now();
        let record = CeremonyRecord {
            id,
            workspace_id: workspace_id.to_string(),
            kind,
            user_id: user,
            session_id: session,
            state_ct: seal_state(&keys, id, state)?,
            created_at: now,
            expires_at: now + CEREMONY_MICROS,
        };
        self.store.create_ceremony(record).await?;
        Ok((id, now + CEREMONY_MICROS))
    }

    /// Takes a ceremony of this kind for this workspace, user and session.
    async fn take_ceremony(
        &self,
        raw_id: &str,
        kind: CeremonyKind,
        workspace_id: Option<&str>,
        user: Option<Uuid>,
        session: Option<Uuid>,
    ) -> VaultResult<CeremonyRecord> {
        let id = parse_ceremony_id(raw_id)?;
        let ceremony = self.store.take_ceremony(id, kind, self.now()).await?.ok_or_else(ceremony_gone)?;
        let belongs = workspace_id.is_none_or(|w| w == ceremony.workspace_id) && ceremony.user_id == user && ceremony.session_id == session;
        if !belongs {
            return Err(ceremony_gone());
        }
        Ok(ceremony)
    }

    /// A passkey signs in on its own, so a user who has a second factor adds
    /// one only after a second-factor check within 10 minutes: a session taken
    /// over later (a stolen cookie, an unattended browser) cannot plant a way
    /// back in that outlives a password change. A user without one (enrolling,
    /// maybe because the workspace requires it) needs no check. Answers whether
    /// the user has a second factor.
    async fn require_factor_for_new_passkey(&self, p: &Principal, user: &UserRecord) -> VaultResult<bool> {
        let has = self.has_second_factor(&p.workspace_id, user.id).await?;
        if has {
            p.require_recent_factor(self.now())?;
        }
        Ok(has)
    }

    /// Starts registering a passkey for the signed-in user.
    pub async fn begin_passkey_registration(&self, p: &Principal, session: Option<Uuid>) -> VaultResult<PasskeyChallenge> {
        let rp = self.webauthn()?;
        let user = self.own_user(p).await?;
        self.require_factor_for_new_passkey(p, &user).await?;
        let keys = self.keys(&p.workspace_id).await?;
        let cipher = user_cipher(&keys, &user)?;
        let existing = self.store.list_passkeys(&p.workspace_id, user.id).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(too_many_passkeys());
        }
        let exclude = existing
            .iter()
            .map(|r| open_passkey(&cipher, r).map(|k| k.cred_id().clone()))
            .collect::<VaultResult<Vec<_>>>()?;
        let email = user_email_of(&keys, &user)?;
        let (options, state) = rp
            .webauthn
            .start_passkey_registration(user.id, &email, &email, Some(exclude))
            .map_err(|e| VaultError::Internal(anyhow::anyhow!("failed to start a passkey registration: {e}")))?;
        let (id, expires_at) = self
            .start_ceremony(&p.workspace_id, CeremonyKind::Register, Some(user.id), session, &state)
            .await?;
        let mut options = serde_json::to_value(&options).map_err(|e| VaultError::Internal(e.into()))?;
        // Ask for a discoverable credential where the authenticator can keep
        // one, so that the passkey also signs in without a password; one that
        // cannot (a security key out of slots) still makes a second factor.
        if let Some(selection) = options
            .pointer_mut("/publicKey/authenticatorSelection")
            .and_then(|v| v.as_object_mut())
        {
            selection.insert("residentKey".into(), "preferred".into());
        }
        Ok(PasskeyChallenge {
            ceremony_id: id.to_string(),
            options,
            expires_at: rfc3339(expires_at),
        })
    }

    /// Completes a registration with the authenticator's answer. The passkey
    /// becomes a second factor and every session of the user ends (a factor
    /// change); when it is their first second factor, ten recovery codes come
    /// with it.
    pub async fn finish_passkey_registration(
        &self,
        p: &Principal,
        session: Option<Uuid>,
        ceremony_id: &str,
        name: Option<&str>,
        credential: serde_json::Value,
    ) -> VaultResult<PasskeyEnrolled> {
        let rp = self.webauthn()?;
        let user = self.own_user(p).await?;
        let first = !self.require_factor_for_new_passkey(p, &user).await?;
        let name = passkey_name(name)?;
        let credential: RegisterPublicKeyCredential = parse_credential(credential, "a passkey registration")?;
        let ceremony = self
            .take_ceremony(ceremony_id, CeremonyKind::Register, Some(&p.workspace_id), Some(user.id), session)
            .await?;
        let keys = self.keys(&p.workspace_id).await?;
        let state: PasskeyRegistration = open_state(&keys, &ceremony)?;
        let passkey = rp
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(|e| VaultError::invalid("credential", authenticator_refused(&e)))?;
        let codes: Vec<String> = if first {
            (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect()
        } else {
            Vec::new()
        };
        let cipher = user_cipher(&keys, &user)?;
        let id = Uuid::now_v7();
        let record = PasskeyRecord {
            id,
            workspace_id: p.workspace_id.clone(),
            user_id: user.id,
            credential_hash: credential_hash(&keys, passkey.cred_id()),
            credential_ct: seal_passkey(&cipher, id, &passkey)?,
            name_ct: cipher.seal(FieldName::PasskeyName(&id.to_string()), name.as_bytes())?,
            uses: 0,
            created_at: self.now(),
            last_used_at: None,
        };
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.passkey_enrolled")
            .target(format!("passkey:{id}"))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "recovery_codes_issued": first }));
        let recovery = first.then(|| codes.iter().map(|c| recovery_hash(&keys, c)).collect());
        self.store
            .add_passkey(record.clone(), recovery, MAX_PASSKEYS, draft)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict { field: "passkeys" } => too_many_passkeys(),
                crate::store::StoreError::Conflict { .. } => {
                    VaultError::Conflict("this passkey is registered already (to you or to another user of this workspace)".into())
                }
                other => other.into(),
            })?;
        Ok(PasskeyEnrolled {
            passkey: view(&cipher, &record)?,
            recovery_codes: codes.into_iter().map(SecretString::from).collect(),
        })
    }

    /// The signed-in user's passkeys.
    pub async fn list_my_passkeys(&self, p: &Principal) -> VaultResult<Vec<PasskeyView>> {
        let user = self.own_user(p).await?;
        let keys = self.keys(&p.workspace_id).await?;
        let cipher = user_cipher(&keys, &user)?;
        self.store
            .list_passkeys(&p.workspace_id, user.id)
            .await?
            .iter()
            .map(|r| view(&cipher, r))
            .collect()
    }

    /// Removes one of the signed-in user's passkeys (after a second-factor
    /// check within 10 minutes); every session of the user ends.
    pub async fn remove_my_passkey(&self, p: &Principal, id: &str) -> VaultResult<()> {
        let user = self.own_user(p).await?;
        p.require_recent_factor(self.now())?;
        let id = Uuid::parse_str(id.trim()).map_err(|_| VaultError::NotFound("passkey"))?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "user.passkey_removed")
            .target(format!("passkey:{id}"))
            .ip_hash(p.ip_hash.clone());
        if !self.store.remove_passkey(&p.workspace_id, user.id, id, self.now(), draft).await? {
            return Err(VaultError::NotFound("passkey"));
        }
        Ok(())
    }

    /// Starts a second-factor check with a passkey for the session with this
    /// token (completing its sign-in, or a step-up).
    pub async fn begin_passkey_factor(&self, token: &str, ip: Option<std::net::IpAddr>) -> Result<PasskeyChallenge, SessionError> {
        let rp = self.webauthn()?;
        let (session, user, _, _) = self.factor_session(token, ip).await?;
        let ws = session.workspace_id.clone();
        let keys = self.keys(&ws).await?;
        let cipher = user_cipher(&keys, &user)?;
        let passkeys = self
            .store
            .list_passkeys(&ws, user.id)
            .await
            .map_err(VaultError::from)?
            .iter()
            .map(|r| open_passkey(&cipher, r))
            .collect::<VaultResult<Vec<_>>>()?;
        if passkeys.is_empty() {
            return Err(VaultError::Conflict(
                "you have no passkey: confirm with the code of your authenticator app or a recovery code (POST /api/v1/auth/factor)".into(),
            )
            .into());
        }
        let (options, state) = rp
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| VaultError::Internal(anyhow::anyhow!("failed to start a passkey check: {e}")))?;
        let (id, expires_at) = self
            .start_ceremony(&ws, CeremonyKind::Factor, Some(user.id), Some(session.id), &state)
            .await?;
        Ok(PasskeyChallenge {
            ceremony_id: id.to_string(),
            options: serde_json::to_value(&options).map_err(|e| VaultError::Internal(e.into()))?,
            expires_at: rfc3339(expires_at),
        })
    }

    /// Completes a second-factor check with a passkey: as a code does, it
    /// completes the sign-in or is the step-up, and gives the session a new
    /// token; a refused answer counts as a wrong code.
    pub async fn verify_passkey_factor(
        &self,
        token: &str,
        ceremony_id: &str,
        credential: serde_json::Value,
        ip: Option<std::net::IpAddr>,
    ) -> Result<RenewedSession, SessionError> {
        let rp = self.webauthn()?;
        let (session, user, ip_hash, completing) = self.factor_session(token, ip).await?;
        let credential: PublicKeyCredential = parse_credential(credential, "a passkey assertion")?;
        let ws = session.workspace_id.clone();
        let ceremony = self
            .take_ceremony(ceremony_id, CeremonyKind::Factor, Some(&ws), Some(user.id), Some(session.id))
            .await?;
        let keys = self.keys(&ws).await?;
        let state: PasskeyAuthentication = open_state(&keys, &ceremony)?;
        let accepted = match self.find_used_passkey(&keys, &user, &credential).await? {
            Some((record, passkey)) => {
                let result = rp.webauthn.finish_passkey_authentication(&credential, &state);
                self.record_passkey_use(&keys, &user, record, passkey, result, ip_hash.clone())
                    .await?
            }
            None => false,
        };
        self.settle_factor_check(&session, &user, ip_hash, accepted.then_some("passkey"), completing)
            .await
    }

    /// The stored passkey of `user` an assertion names, opened.
    async fn find_used_passkey(
        &self,
        keys: &WorkspaceKeys,
        user: &UserRecord,
        credential: &PublicKeyCredential,
    ) -> VaultResult<Option<(PasskeyRecord, Passkey)>> {
        let hash = credential_hash(keys, credential.get_credential_id());
        let Some(record) = self
            .store
            .list_passkeys(&user.workspace_id, user.id)
            .await?
            .into_iter()
            .find(|r| r.credential_hash == hash)
        else {
            return Ok(None);
        };
        let passkey = open_passkey(&user_cipher(keys, user)?, &record)?;
        Ok(Some((record, passkey)))
    }

    /// Records the outcome of an assertion's check: an accepted one updates the
    /// stored counter (a compare-and-set: `false` when another use came first);
    /// a counter that did not rise is recorded as a possible clone.
    async fn record_passkey_use(
        &self,
        keys: &WorkspaceKeys,
        user: &UserRecord,
        record: PasskeyRecord,
        mut passkey: Passkey,
        result: Result<webauthn_rs::prelude::AuthenticationResult, WebauthnError>,
        ip_hash: Option<String>,
    ) -> VaultResult<bool> {
        let regressed = |ip_hash: Option<String>| {
            AuditDraft::new(&user.workspace_id, "anonymous", "user.passkey_counter_regressed")
                .target(format!("passkey:{}", record.id))
                .outcome(Outcome::Denied)
                .ip_hash(ip_hash)
                .details(serde_json::json!({ "user": format!("user:{}", user.id) }))
        };
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, WebauthnError::CredentialPossibleCompromise) {
                    self.store.record_audit(regressed(ip_hash)).await?;
                } else {
                    tracing::info!(error = %e, passkey = %record.id, "a passkey assertion was refused");
                }
                return Ok(false);
            }
        };
        // The verifier compared the counter with the credential as it was when
        // the ceremony began; the passkey may have been used since. Compared
        // again with the stored one: it must rise, unless both are zero (a
        // synced passkey keeps no counter).
        let stored = stored_counter(&passkey)?;
        if (result.counter() != 0 || stored != 0) && result.counter() <= stored {
            self.store.record_audit(regressed(ip_hash)).await?;
            return Ok(false);
        }
        passkey.update_credential(&result);
        let sealed = seal_passkey(&user_cipher(keys, user)?, record.id, &passkey)?;
        Ok(self
            .store
            .use_passkey(&user.workspace_id, record.id, record.uses, sealed, self.now())
            .await?)
    }

    /// Starts a sign-in with a passkey alone (a discoverable credential: the
    /// authenticator offers the accounts it holds for this site).
    pub async fn begin_passkey_sign_in(
        &self,
        workspace: Option<&str>,
        ip: Option<std::net::IpAddr>,
    ) -> Result<PasskeyChallenge, SessionError> {
        let rp = self.webauthn()?;
        let workspace_id = self.sign_in_workspace(workspace).await?;
        let keys = match self.keys(&workspace_id).await {
            Ok(k) => k,
            Err(VaultError::NotFound(_)) => return Err(SessionError::SignInRefused),
            Err(e) => return Err(e.into()),
        };
        let ip_hash = match ip {
            Some(ip) => self.ip_hash(&workspace_id, &ip).await,
            None => None,
        };
        self.check_workspace_address(&workspace_id, "sign_in", ip, ip_hash.as_ref()).await?;
        let address_key = ip.map(|ip| keys.token_hash("sign_in_address", ip.to_string().as_bytes()).to_vec());
        if let Some(wait) = self.sign_in_wait(&workspace_id, None, address_key.as_deref(), self.now()).await? {
            return Err(SessionError::Throttled { retry_after: wait });
        }
        // Challenges cost a row each until they expire: at most so many per
        // client address within the throttling window.
        if let Some(key) = &address_key {
            let now = self.now();
            let made = self
                .store
                .record_sign_in_failure(
                    &workspace_id,
                    "passkey_challenge",
                    key,
                    now,
                    super::sessions::THROTTLE_WINDOW_MICROS,
                )
                .await
                .map_err(VaultError::from)?;
            if made.failures > SIGN_IN_CHALLENGES_PER_WINDOW {
                let until = made.first_at + super::sessions::THROTTLE_WINDOW_MICROS;
                return Err(SessionError::Throttled {
                    retry_after: u64::try_from((until - now + 999_999) / 1_000_000).unwrap_or(1).max(1),
                });
            }
        }
        let (mut options, state) = rp
            .webauthn
            .start_discoverable_authentication()
            .map_err(|e| VaultError::Internal(anyhow::anyhow!("failed to start a passkey sign-in: {e}")))?;
        // A sign-in button asks at once; a page that prefers autofill may set
        // `mediation: "conditional"` itself.
        options.mediation = None;
        let (id, expires_at) = self.start_ceremony(&workspace_id, CeremonyKind::SignIn, None, None, &state).await?;
        Ok(PasskeyChallenge {
            ceremony_id: id.to_string(),
            options: serde_json::to_value(&options).map_err(|e| VaultError::Internal(e.into()))?,
            expires_at: rfc3339(expires_at),
        })
    }

    /// Completes a sign-in with a passkey alone. The session it makes has its
    /// second factor checked (a passkey verifies its user). Any refusal answers
    /// as a wrong password does, is audited and counts for the client address.
    pub async fn finish_passkey_sign_in(
        &self,
        ceremony_id: &str,
        credential: serde_json::Value,
        ip: Option<std::net::IpAddr>,
    ) -> Result<SignedIn, SessionError> {
        let rp = self.webauthn()?;
        let credential: PublicKeyCredential = parse_credential(credential, "a passkey assertion")?;
        let ceremony = self.take_ceremony(ceremony_id, CeremonyKind::SignIn, None, None, None).await?;
        let ws = ceremony.workspace_id.clone();
        let keys = self.keys(&ws).await?;
        let ip_hash = match ip {
            Some(ip) => self.ip_hash(&ws, &ip).await,
            None => None,
        };
        self.check_workspace_address(&ws, "sign_in", ip, ip_hash.as_ref()).await?;
        let address_key = ip.map(|ip| keys.token_hash("sign_in_address", ip.to_string().as_bytes()).to_vec());
        let now = self.now();
        if let Some(wait) = self.sign_in_wait(&ws, None, address_key.as_deref(), now).await? {
            return Err(SessionError::Throttled { retry_after: wait });
        }
        let state: DiscoverableAuthentication = open_state(&keys, &ceremony)?;
        let user = match rp.webauthn.identify_discoverable_authentication(&credential) {
            Ok((user_id, _)) => self
                .store
                .find_user(&ws, user_id)
                .await
                .map_err(VaultError::from)?
                .filter(|u| u.status == UserStatus::Active),
            Err(_) => None,
        };
        let mut accepted = false;
        if let Some(user) = &user {
            if let Some((record, passkey)) = self.find_used_passkey(&keys, user, &credential).await? {
                let result = rp.webauthn.finish_discoverable_authentication_v2(&credential, state, &passkey);
                accepted = self
                    .record_passkey_use(&keys, user, record, passkey, result, ip_hash.clone())
                    .await?;
            }
        }
        let (Some(user), true) = (user, accepted) else {
            let mut draft = AuditDraft::new(&ws, "anonymous", "user.sign_in_failed")
                .outcome(Outcome::Denied)
                .ip_hash(ip_hash.clone())
                .details(serde_json::json!({ "method": "passkey" }));
            if let Ok((user_id, _)) = rp.webauthn.identify_discoverable_authentication(&credential) {
                draft = draft.target(format!("user:{user_id}"));
            }
            self.store.record_audit(draft).await.map_err(VaultError::from)?;
            self.count_sign_in_failure(&ws, None, address_key.as_deref(), None, ip_hash, now)
                .await?;
            return Err(SessionError::SignInRefused);
        };
        if !crate::vault::allowlists::allows(&user.allowlist, ip) {
            let subject = format!("user:{}", user.id);
            return Err(self
                .refuse_address(&ws, &subject, crate::vault::allowlists::RefusedBy::User, ip_hash.as_ref())
                .await
                .into());
        }
        let token = super::sessions::new_session_token();
        let session = SessionRecord {
            id: Uuid::now_v7(),
            token_hash: super::sessions::session_hash(&token),
            workspace_id: ws.clone(),
            user_id: user.id,
            created_at: now,
            last_seen_at: now,
            expires_at: now + super::sessions::SESSION_ABSOLUTE_MICROS,
            ended_at: None,
            ip_hash: ip_hash.clone(),
            factor_required: true,
            factor_verified_at: Some(now),
            enrolment_required: false,
        };
        let draft = AuditDraft::new(&ws, &format!("user:{}", user.id), "user.signed_in")
            .target(format!("session:{}", session.id))
            .ip_hash(ip_hash)
            .details(serde_json::json!({ "method": "passkey" }));
        self.store.create_session(session.clone(), draft).await.map_err(VaultError::from)?;
        Ok(SignedIn {
            session: (&session).into(),
            second_factor_required: false,
            second_factor_enrolment_required: false,
            password_change_required: user.password_change_required,
            csrf_token: super::sessions::csrf_of(&keys, &token),
            token: SecretString::from(token),
            user: user_view(&keys, &user)?,
        })
    }
}

/// A passkey's name: what the user calls it ("laptop", "YubiKey"); "Passkey"
/// when not given.
fn passkey_name(name: Option<&str>) -> VaultResult<String> {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("Passkey");
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(VaultError::invalid(
            "name",
            format!("a passkey name has at most {NAME_MAX_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(VaultError::invalid("name", "a passkey name cannot hold control characters"));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relying_parties_need_a_secure_origin() -> Result<(), Box<dyn std::error::Error>> {
        assert!(RelyingParty::new(&Url::parse("https://consentry.example.com")?).is_ok());
        assert!(RelyingParty::new(&Url::parse("http://localhost:8080")?).is_ok());
        assert!(RelyingParty::new(&Url::parse("http://consentry.example.com")?).is_err());
        assert!(RelyingParty::new(&Url::parse("https://consentry.example.com/app")?).is_err());
        assert!(RelyingParty::new(&Url::parse("https://192.0.2.1")?).is_err());
        Ok(())
    }

    #[test]
    fn passkey_names_are_bounded_and_printable() {
        assert_eq!(passkey_name(None).ok().as_deref(), Some("Passkey"));
        assert_eq!(passkey_name(Some("  laptop ")).ok().as_deref(), Some("laptop"));
        assert!(passkey_name(Some(&"x".repeat(65))).is_err());
        assert!(passkey_name(Some("a\u{7}b")).is_err());
    }
}
