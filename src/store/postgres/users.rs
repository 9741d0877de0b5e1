//! Users, their invitations and their sessions in the PostgreSQL backend.

use super::{audit, map_err};
use crate::audit::AuditDraft;
use crate::store::{
    AllowlistSubject, CeremonyKind, CeremonyRecord, InvitationRecord, PasskeyRecord, RoleRecord, SessionRecord, SignInFailures, StoreError,
    StoreResult, TotpRecord, UserRecord, UserStatus,
};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

pub const USER_COLUMNS: &str =
    "id, workspace_id, email_bidx, user_key, email_ct, role, list_ids, password_hash, status, created_by, created_at, updated_at, allowlist, password_change_required";
const INVITATION_COLUMNS: &str = "token_hash, workspace_id, user_id, created_at, expires_at, used_at";

fn malformed(what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("a stored user has a malformed {what}"))
}

pub fn user_from_row(r: &Row) -> StoreResult<UserRecord> {
    let id: &[u8] = r.try_get(0).map_err(map_err)?;
    let lists: String = r.try_get(6).map_err(map_err)?;
    let status: String = r.try_get(8).map_err(map_err)?;
    Ok(UserRecord {
        id: Uuid::from_slice(id).map_err(|_| malformed("id"))?,
        workspace_id: r.try_get(1).map_err(map_err)?,
        email_bidx: r.try_get(2).map_err(map_err)?,
        user_key: r.try_get(3).map_err(map_err)?,
        email_ct: r.try_get(4).map_err(map_err)?,
        role: r.try_get(5).map_err(map_err)?,
        list_ids: serde_json::from_str(&lists).map_err(|_| malformed("list of lists"))?,
        password_hash: r.try_get(7).map_err(map_err)?,
        status: UserStatus::parse(&status).ok_or_else(|| malformed("status"))?,
        created_by: r.try_get(9).map_err(map_err)?,
        created_at: r.try_get(10).map_err(map_err)?,
        updated_at: r.try_get(11).map_err(map_err)?,
        allowlist: serde_json::from_str(r.try_get::<_, &str>(12).map_err(map_err)?).map_err(|_| malformed("allowlist"))?,
        password_change_required: r.try_get(13).map_err(map_err)?,
    })
}

fn invitation_from_row(r: &Row) -> StoreResult<InvitationRecord> {
    let id: &[u8] = r.try_get(2).map_err(map_err)?;
    Ok(InvitationRecord {
        token_hash: r.try_get(0).map_err(map_err)?,
        workspace_id: r.try_get(1).map_err(map_err)?,
        user_id: Uuid::from_slice(id).map_err(|_| malformed("id"))?,
        created_at: r.try_get(3).map_err(map_err)?,
        expires_at: r.try_get(4).map_err(map_err)?,
        used_at: r.try_get(5).map_err(map_err)?,
    })
}

pub async fn create<C: GenericClient>(c: &C, user: &UserRecord, invitation: &InvitationRecord, draft: &AuditDraft) -> StoreResult<()> {
    let lists = serde_json::to_string(&user.list_ids).unwrap_or_else(|_| "[]".into());
    let allowlist = serde_json::to_string(&user.allowlist).unwrap_or_else(|_| "[]".into());
    c.execute(
        &format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"),
        &[
            &user.id.as_bytes().as_slice(),
            &user.workspace_id,
            &user.email_bidx,
            &user.user_key,
            &user.email_ct,
            &user.role,
            &lists,
            &user.password_hash,
            &user.status.as_str(),
            &user.created_by,
            &user.created_at,
            &user.updated_at,
            &allowlist,
            &user.password_change_required,
        ],
    )
    .await
    .map_err(map_err)?;
    c.execute(
        &format!("INSERT INTO user_invitations ({INVITATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            &invitation.token_hash,
            &invitation.workspace_id,
            &invitation.user_id.as_bytes().as_slice(),
            &invitation.created_at,
            &invitation.expires_at,
            &invitation.used_at,
        ],
    )
    .await
    .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn find<C: GenericClient>(c: &C, ws: &str, id: Uuid) -> StoreResult<Option<UserRecord>> {
    c.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE workspace_id = $1 AND id = $2"),
        &[&ws, &id.as_bytes().as_slice()],
    )
    .await
    .map_err(map_err)?
    .as_ref()
    .map(user_from_row)
    .transpose()
}

pub async fn find_by_email<C: GenericClient>(c: &C, ws: &str, bidx: &[u8]) -> StoreResult<Option<UserRecord>> {
    c.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE email_bidx = $1 AND workspace_id = $2"),
        &[&bidx, &ws],
    )
    .await
    .map_err(map_err)?
    .as_ref()
    .map(user_from_row)
    .transpose()
}

pub async fn list<C: GenericClient>(c: &C, ws: &str) -> StoreResult<Vec<UserRecord>> {
    c.query(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE workspace_id = $1 ORDER BY created_at, id"),
        &[&ws],
    )
    .await
    .map_err(map_err)?
    .iter()
    .map(user_from_row)
    .collect()
}

pub async fn find_invitation<C: GenericClient>(c: &C, token_hash: &[u8]) -> StoreResult<Option<InvitationRecord>> {
    c.query_opt(
        &format!("SELECT {INVITATION_COLUMNS} FROM user_invitations WHERE token_hash = $1"),
        &[&token_hash],
    )
    .await
    .map_err(map_err)?
    .as_ref()
    .map(invitation_from_row)
    .transpose()
}

pub async fn accept_invitation<C: GenericClient>(
    c: &C,
    token_hash: &[u8],
    password_hash: &str,
    at: i64,
    draft: &AuditDraft,
) -> StoreResult<()> {
    let used = c
        .query_opt(
            "UPDATE user_invitations SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
             RETURNING workspace_id, user_id",
            &[&token_hash, &at],
        )
        .await
        .map_err(map_err)?;
    let Some(used) = used else {
        return Err(match find_invitation(c, token_hash).await? {
            Some(_) => StoreError::Ended("invitation"),
            None => StoreError::NotFound("invitation"),
        });
    };
    let (ws, user_id): (String, Vec<u8>) = (used.get(0), used.get(1));
    let activated = c
        .execute(
            "UPDATE users SET password_hash = $3, status = 'active', updated_at = $4 WHERE workspace_id = $1 AND id = $2 AND status = 'invited'",
            &[&ws, &user_id, &password_hash, &at],
        )
        .await
        .map_err(map_err)?;
    if activated == 0 {
        return Err(StoreError::Ended("invitation"));
    }
    audit::append(c, draft).await?;
    Ok(())
}

/// Revokes the API keys a user created (disable and removal).
async fn revoke_keys_of<C: GenericClient>(c: &C, ws: &str, id: Uuid, at: i64) -> StoreResult<u64> {
    c.execute(
        "UPDATE api_keys SET revoked_at = $3 WHERE workspace_id = $1 AND created_by = $2 AND revoked_at IS NULL",
        &[&ws, &format!("user:{id}"), &at],
    )
    .await
    .map_err(map_err)
}

pub async fn set_status<C: GenericClient>(c: &C, ws: &str, id: Uuid, status: UserStatus, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    let row = c
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE workspace_id = $1 AND id = $2 FOR UPDATE"),
            &[&ws, &id.as_bytes().as_slice()],
        )
        .await
        .map_err(map_err)?;
    let user = row.as_ref().map(user_from_row).transpose()?.ok_or(StoreError::NotFound("user"))?;
    if user.status == status {
        return Ok(false);
    }
    if status == UserStatus::Invited || (status == UserStatus::Active && user.password_hash.is_none()) {
        return Err(StoreError::Conflict { field: "user status" });
    }
    c.execute(
        "UPDATE users SET status = $3, updated_at = $4 WHERE workspace_id = $1 AND id = $2",
        &[&ws, &id.as_bytes().as_slice(), &status.as_str(), &at],
    )
    .await
    .map_err(map_err)?;
    if status == UserStatus::Disabled {
        revoke_keys_of(c, ws, id, at).await?;
        end_sessions_of(c, id, at).await?;
    }
    audit::append(c, draft).await?;
    Ok(true)
}

pub async fn remove<C: GenericClient>(c: &C, ws: &str, id: Uuid, at: i64, draft: &AuditDraft) -> StoreResult<()> {
    revoke_keys_of(c, ws, id, at).await?;
    c.execute("DELETE FROM user_invitations WHERE user_id = $1", &[&id.as_bytes().as_slice()])
        .await
        .map_err(map_err)?;
    let n = c
        .execute(
            "DELETE FROM users WHERE workspace_id = $1 AND id = $2",
            &[&ws, &id.as_bytes().as_slice()],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn update_password_hash<C: GenericClient>(c: &C, ws: &str, id: Uuid, hash: &str, at: i64) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE users SET password_hash = $3, updated_at = $4 WHERE workspace_id = $1 AND id = $2 AND password_hash IS NOT NULL",
            &[&ws, &id.as_bytes().as_slice(), &hash, &at],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

const SESSION_COLUMNS: &str =
    "id, token_hash, workspace_id, user_id, created_at, last_seen_at, expires_at, ended_at, ip_hash, factor_required, factor_verified_at, enrolment_required";

fn session_from_row(r: &Row) -> StoreResult<SessionRecord> {
    let id: &[u8] = r.try_get(0).map_err(map_err)?;
    let user: &[u8] = r.try_get(3).map_err(map_err)?;
    Ok(SessionRecord {
        id: Uuid::from_slice(id).map_err(|_| malformed("session id"))?,
        token_hash: r.try_get(1).map_err(map_err)?,
        workspace_id: r.try_get(2).map_err(map_err)?,
        user_id: Uuid::from_slice(user).map_err(|_| malformed("id"))?,
        created_at: r.try_get(4).map_err(map_err)?,
        last_seen_at: r.try_get(5).map_err(map_err)?,
        expires_at: r.try_get(6).map_err(map_err)?,
        ended_at: r.try_get(7).map_err(map_err)?,
        ip_hash: r.try_get(8).map_err(map_err)?,
        factor_required: r.try_get(9).map_err(map_err)?,
        factor_verified_at: r.try_get(10).map_err(map_err)?,
        enrolment_required: r.try_get(11).map_err(map_err)?,
    })
}

pub async fn create_session<C: GenericClient>(c: &C, session: &SessionRecord, draft: &AuditDraft) -> StoreResult<()> {
    c.execute(
        &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
        &[
            &session.id.as_bytes().as_slice(),
            &session.token_hash,
            &session.workspace_id,
            &session.user_id.as_bytes().as_slice(),
            &session.created_at,
            &session.last_seen_at,
            &session.expires_at,
            &session.ended_at,
            &session.ip_hash,
            &session.factor_required,
            &session.factor_verified_at,
            &session.enrolment_required,
        ],
    )
    .await
    .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn find_session<C: GenericClient>(c: &C, token_hash: &[u8]) -> StoreResult<Option<(SessionRecord, UserRecord)>> {
    let Some(row) = c
        .query_opt(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1"),
            &[&token_hash],
        )
        .await
        .map_err(map_err)?
    else {
        return Ok(None);
    };
    let session = session_from_row(&row)?;
    Ok(find(c, &session.workspace_id, session.user_id).await?.map(|user| (session, user)))
}

pub async fn touch_session<C: GenericClient>(c: &C, id: Uuid, at: i64) -> StoreResult<()> {
    c.execute(
        "UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id = $1",
        &[&id.as_bytes().as_slice(), &at],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

pub async fn list_sessions<C: GenericClient>(c: &C, ws: &str, user: Uuid) -> StoreResult<Vec<SessionRecord>> {
    c.query(
        &format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE workspace_id = $1 AND user_id = $2 AND ended_at IS NULL ORDER BY created_at DESC, id DESC"
        ),
        &[&ws, &user.as_bytes().as_slice()],
    )
    .await
    .map_err(map_err)?
    .iter()
    .map(session_from_row)
    .collect()
}

pub async fn end_session<C: GenericClient>(c: &C, ws: &str, user: Uuid, id: Uuid, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    let ids = [user.as_bytes().as_slice(), id.as_bytes().as_slice()];
    let n = c
        .execute(
            "UPDATE sessions SET ended_at = $4 WHERE workspace_id = $1 AND user_id = $2 AND id = $3 AND ended_at IS NULL",
            &[&ws, &ids[0], &ids[1], &at],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        let exists = c
            .query_opt(
                "SELECT 1 FROM sessions WHERE workspace_id = $1 AND user_id = $2 AND id = $3",
                &[&ws, &ids[0], &ids[1]],
            )
            .await
            .map_err(map_err)?;
        return exists.map(|_| false).ok_or(StoreError::NotFound("session"));
    }
    audit::append(c, draft).await?;
    Ok(true)
}

/// Ends every session of a user (a factor change, a disable).
async fn end_sessions_of<C: GenericClient>(c: &C, user: Uuid, at: i64) -> StoreResult<()> {
    c.execute(
        "UPDATE sessions SET ended_at = $2 WHERE user_id = $1 AND ended_at IS NULL",
        &[&user.as_bytes().as_slice(), &at],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

pub async fn verify_session_factor<C: GenericClient>(c: &C, id: Uuid, token_hash: &[u8], at: i64, draft: &AuditDraft) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE sessions SET factor_verified_at = $2, token_hash = $3 WHERE id = $1 AND ended_at IS NULL",
            &[&id.as_bytes().as_slice(), &at, &token_hash],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::Ended("session"));
    }
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn fail_session_factor<C: GenericClient>(c: &C, id: Uuid, limit: i64, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    let row = c
        .query_opt(
            "UPDATE sessions SET factor_failures = factor_failures + 1,
                 ended_at = CASE WHEN factor_failures + 1 >= $2 THEN $3 ELSE ended_at END
             WHERE id = $1 AND ended_at IS NULL RETURNING ended_at",
            &[&id.as_bytes().as_slice(), &limit, &at],
        )
        .await
        .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(row.is_none_or(|r| r.get::<_, Option<i64>>(0).is_some()))
}

const TOTP_COLUMNS: &str = "user_id, workspace_id, secret_ct, created_at, confirmed_at, last_step";

fn totp_from_row(r: &Row) -> StoreResult<TotpRecord> {
    let id: &[u8] = r.try_get(0).map_err(map_err)?;
    Ok(TotpRecord {
        user_id: Uuid::from_slice(id).map_err(|_| malformed("id"))?,
        workspace_id: r.try_get(1).map_err(map_err)?,
        secret_ct: r.try_get(2).map_err(map_err)?,
        created_at: r.try_get(3).map_err(map_err)?,
        confirmed_at: r.try_get(4).map_err(map_err)?,
        last_step: r.try_get(5).map_err(map_err)?,
    })
}

pub async fn find_totp<C: GenericClient>(c: &C, ws: &str, user: Uuid) -> StoreResult<Option<TotpRecord>> {
    c.query_opt(
        &format!("SELECT {TOTP_COLUMNS} FROM user_totp WHERE workspace_id = $1 AND user_id = $2"),
        &[&ws, &user.as_bytes().as_slice()],
    )
    .await
    .map_err(map_err)?
    .as_ref()
    .map(totp_from_row)
    .transpose()
}

pub async fn start_totp<C: GenericClient>(c: &C, totp: &TotpRecord, draft: &AuditDraft) -> StoreResult<()> {
    let user = totp.user_id.as_bytes().as_slice();
    let locked = c
        .query_opt(
            "SELECT 1 FROM users WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
            &[&totp.workspace_id, &user],
        )
        .await
        .map_err(map_err)?;
    if locked.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    if find_totp(c, &totp.workspace_id, totp.user_id)
        .await?
        .is_some_and(|t| t.confirmed_at.is_some())
    {
        return Err(StoreError::Conflict { field: "second factor" });
    }
    c.execute(
        &format!(
            "INSERT INTO user_totp ({TOTP_COLUMNS}) VALUES ($1, $2, $3, $4, NULL, 0)
             ON CONFLICT (user_id) DO UPDATE SET secret_ct = excluded.secret_ct, created_at = excluded.created_at, last_step = 0"
        ),
        &[&user, &totp.workspace_id, &totp.secret_ct, &totp.created_at],
    )
    .await
    .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub async fn confirm_totp<C: GenericClient>(
    c: &C,
    ws: &str,
    user: Uuid,
    step: i64,
    recovery: &[Vec<u8>],
    at: i64,
    draft: &AuditDraft,
) -> StoreResult<()> {
    let id = user.as_bytes().as_slice();
    let n = c
        .execute(
            "UPDATE user_totp SET confirmed_at = $3, last_step = $4 WHERE workspace_id = $1 AND user_id = $2 AND confirmed_at IS NULL",
            &[&ws, &id, &at, &step],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::Ended("enrolment"));
    }
    replace_recovery_codes(c, user, recovery).await?;
    end_sessions_of(c, user, at).await?;
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn use_totp_step<C: GenericClient>(c: &C, ws: &str, user: Uuid, step: i64) -> StoreResult<bool> {
    let n = c
        .execute(
            "UPDATE user_totp SET last_step = $3 WHERE workspace_id = $1 AND user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $3",
            &[&ws, &user.as_bytes().as_slice(), &step],
        )
        .await
        .map_err(map_err)?;
    Ok(n == 1)
}

pub async fn use_recovery_code<C: GenericClient>(c: &C, ws: &str, user: Uuid, hash: &[u8], at: i64) -> StoreResult<bool> {
    let n = c
        .execute(
            "UPDATE user_recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL
             AND EXISTS (SELECT 1 FROM users WHERE id = $1 AND workspace_id = $4)",
            &[&user.as_bytes().as_slice(), &hash, &at, &ws],
        )
        .await
        .map_err(map_err)?;
    Ok(n == 1)
}

pub async fn remove_second_factors<C: GenericClient>(c: &C, ws: &str, user: Uuid, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    let id = user.as_bytes().as_slice();
    let totp = c
        .execute("DELETE FROM user_totp WHERE workspace_id = $1 AND user_id = $2", &[&ws, &id])
        .await
        .map_err(map_err)?;
    let passkeys = c
        .execute("DELETE FROM user_passkeys WHERE workspace_id = $1 AND user_id = $2", &[&ws, &id])
        .await
        .map_err(map_err)?;
    let n = totp + passkeys;
    c.execute("DELETE FROM user_recovery_codes WHERE user_id = $1", &[&id])
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Ok(false);
    }
    end_sessions_of(c, user, at).await?;
    audit::append(c, draft).await?;
    Ok(true)
}

fn failures_from_row(r: &Row) -> StoreResult<SignInFailures> {
    Ok(SignInFailures {
        failures: r.try_get(0).map_err(map_err)?,
        first_at: r.try_get(1).map_err(map_err)?,
        last_at: r.try_get(2).map_err(map_err)?,
    })
}

pub async fn sign_in_failures<C: GenericClient>(c: &C, ws: &str, scope: &str, key: &[u8]) -> StoreResult<Option<SignInFailures>> {
    c.query_opt(
        "SELECT failures, first_at, last_at FROM sign_in_failures WHERE workspace_id = $1 AND scope = $2 AND key = $3",
        &[&ws, &scope, &key],
    )
    .await
    .map_err(map_err)?
    .as_ref()
    .map(failures_from_row)
    .transpose()
}

pub async fn record_sign_in_failure<C: GenericClient>(
    c: &C,
    ws: &str,
    scope: &str,
    key: &[u8],
    at: i64,
    window: i64,
) -> StoreResult<SignInFailures> {
    let row = c
        .query_one(
            "INSERT INTO sign_in_failures AS f (workspace_id, scope, key, failures, first_at, last_at) VALUES ($1, $2, $3, 1, $4, $4)
             ON CONFLICT (workspace_id, scope, key) DO UPDATE SET
                 failures = CASE WHEN f.first_at <= $4 - $5 THEN 1 ELSE f.failures + 1 END,
                 first_at = CASE WHEN f.first_at <= $4 - $5 THEN $4 ELSE f.first_at END,
                 last_at = $4
             RETURNING failures, first_at, last_at",
            &[&ws, &scope, &key, &at, &window],
        )
        .await
        .map_err(map_err)?;
    failures_from_row(&row)
}

pub async fn clear_sign_in_failures<C: GenericClient>(c: &C, ws: &str, scope: &str, key: &[u8]) -> StoreResult<()> {
    c.execute(
        "DELETE FROM sign_in_failures WHERE workspace_id = $1 AND scope = $2 AND key = $3",
        &[&ws, &scope, &key],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

pub async fn second_factor_required<C: GenericClient>(c: &C, ws: &str) -> StoreResult<bool> {
    Ok(c.query_opt(
        "SELECT second_factor_required FROM workspace_security WHERE workspace_id = $1",
        &[&ws],
    )
    .await
    .map_err(map_err)?
    .map(|r| r.try_get::<_, bool>(0))
    .transpose()
    .map_err(map_err)?
    .unwrap_or(false))
}

pub async fn set_second_factor_required<C: GenericClient>(
    c: &C,
    ws: &str,
    required: bool,
    at: i64,
    draft: &AuditDraft,
) -> StoreResult<bool> {
    let previous = c
        .query_opt(
            "SELECT second_factor_required FROM workspace_security WHERE workspace_id = $1 FOR UPDATE",
            &[&ws],
        )
        .await
        .map_err(map_err)?
        .map(|r| r.try_get::<_, bool>(0))
        .transpose()
        .map_err(map_err)?
        .unwrap_or(false);
    if previous == required {
        return Ok(false);
    }
    c.execute(
        "INSERT INTO workspace_security (workspace_id, second_factor_required, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id) DO UPDATE SET second_factor_required = excluded.second_factor_required, updated_at = excluded.updated_at",
        &[&ws, &required, &at],
    )
    .await
    .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(true)
}

pub async fn require_password_changes<C: GenericClient>(c: &C, ws: &str, at: i64, draft: &AuditDraft) -> StoreResult<u64> {
    let n = c
        .execute(
            "UPDATE users SET password_change_required = TRUE, updated_at = $2 WHERE workspace_id = $1 AND password_hash IS NOT NULL",
            &[&ws, &at],
        )
        .await
        .map_err(map_err)?;
    c.execute(
        "UPDATE sessions SET ended_at = $2 WHERE workspace_id = $1 AND ended_at IS NULL",
        &[&ws, &at],
    )
    .await
    .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(n)
}

pub async fn change_password<C: GenericClient>(c: &C, ws: &str, id: Uuid, hash: &str, at: i64, draft: &AuditDraft) -> StoreResult<()> {
    update_password_hash(c, ws, id, hash, at).await?;
    c.execute(
        "UPDATE users SET password_change_required = FALSE WHERE workspace_id = $1 AND id = $2",
        &[&ws, &id.as_bytes().as_slice()],
    )
    .await
    .map_err(map_err)?;
    end_sessions_of(c, id, at).await?;
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn set_allowlist<C: GenericClient>(
    c: &C,
    ws: &str,
    subject: &AllowlistSubject,
    entries: &[String],
    at: i64,
    draft: &AuditDraft,
) -> StoreResult<bool> {
    let json = serde_json::to_string(entries).unwrap_or_else(|_| "[]".into());
    let row = match subject {
        AllowlistSubject::Workspace => {
            // Lock the workspace's row (made if missing) so concurrent changes queue.
            c.execute(
                "INSERT INTO workspace_security (workspace_id, updated_at) VALUES ($1, $2) ON CONFLICT (workspace_id) DO NOTHING",
                &[&ws, &at],
            )
            .await
            .map_err(map_err)?;
            c.query_opt(
                "SELECT allowlist FROM workspace_security WHERE workspace_id = $1 FOR UPDATE",
                &[&ws],
            )
            .await
        }
        AllowlistSubject::User(id) => {
            c.query_opt(
                "SELECT allowlist FROM users WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
                &[&ws, &id.as_bytes().as_slice()],
            )
            .await
        }
        AllowlistSubject::Key(id) => {
            c.query_opt(
                "SELECT allowlist FROM api_keys WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
                &[&ws, id],
            )
            .await
        }
    }
    .map_err(map_err)?;
    let Some(row) = row else {
        return Err(StoreError::NotFound(match subject {
            AllowlistSubject::User(_) => "user",
            _ => "api key",
        }));
    };
    let current: String = row.try_get(0).map_err(map_err)?;
    if current == json {
        return Ok(false);
    }
    match subject {
        AllowlistSubject::Workspace => {
            c.execute(
                "UPDATE workspace_security SET allowlist = $2, updated_at = $3 WHERE workspace_id = $1",
                &[&ws, &json, &at],
            )
            .await
        }
        AllowlistSubject::User(id) => {
            c.execute(
                "UPDATE users SET allowlist = $3, updated_at = $4 WHERE workspace_id = $1 AND id = $2",
                &[&ws, &id.as_bytes().as_slice(), &json, &at],
            )
            .await
        }
        AllowlistSubject::Key(id) => {
            c.execute(
                "UPDATE api_keys SET allowlist = $3 WHERE workspace_id = $1 AND id = $2",
                &[&ws, id, &json],
            )
            .await
        }
    }
    .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(true)
}

/// Users whose role (a comma-separated list) names `$2`. Role names hold no
/// LIKE wildcards (letters, digits and hyphens only).
const HOLDS_ROLE: &str = "(role = $2 OR role LIKE $2 || ',%' OR role LIKE '%,' || $2 OR role LIKE '%,' || $2 || ',%')";

pub async fn list_roles<C: GenericClient>(c: &C, ws: &str) -> StoreResult<Vec<RoleRecord>> {
    let rows = c
        .query(
            "SELECT workspace_id, name, permissions, created_by, created_at, updated_at FROM roles WHERE workspace_id = $1 ORDER BY name",
            &[&ws],
        )
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            let perms: &str = r.try_get(2).map_err(map_err)?;
            Ok(RoleRecord {
                workspace_id: r.try_get(0).map_err(map_err)?,
                name: r.try_get(1).map_err(map_err)?,
                permissions: serde_json::from_str(perms).map_err(|_| malformed("role permissions"))?,
                created_by: r.try_get(3).map_err(map_err)?,
                created_at: r.try_get(4).map_err(map_err)?,
                updated_at: r.try_get(5).map_err(map_err)?,
            })
        })
        .collect()
}

pub async fn create_role<C: GenericClient>(c: &C, role: &RoleRecord, draft: &AuditDraft) -> StoreResult<()> {
    let n = c
        .execute(
            "INSERT INTO roles (workspace_id, name, permissions, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (workspace_id, name) DO NOTHING",
            &[
                &role.workspace_id,
                &role.name,
                &serde_json::to_string(&role.permissions).unwrap_or_else(|_| "[]".into()),
                &role.created_by,
                &role.created_at,
                &role.updated_at,
            ],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::Conflict { field: "role name" });
    }
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn update_role<C: GenericClient>(
    c: &C,
    ws: &str,
    name: &str,
    permissions: &[String],
    at: i64,
    draft: &AuditDraft,
) -> StoreResult<()> {
    let json = serde_json::to_string(permissions).unwrap_or_else(|_| "[]".into());
    let n = c
        .execute(
            "UPDATE roles SET permissions = $3, updated_at = $4 WHERE workspace_id = $1 AND name = $2",
            &[&ws, &name, &json, &at],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound("role"));
    }
    c.execute(
        &format!(
            "UPDATE sessions SET ended_at = $3 WHERE ended_at IS NULL AND user_id IN
             (SELECT id FROM users WHERE workspace_id = $1 AND {HOLDS_ROLE})"
        ),
        &[&ws, &name, &at],
    )
    .await
    .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn delete_role<C: GenericClient>(c: &C, ws: &str, name: &str, draft: &AuditDraft) -> StoreResult<()> {
    // Lock the role first so that a user cannot be given it meanwhile.
    let found = c
        .query_opt(
            "SELECT 1 FROM roles WHERE workspace_id = $1 AND name = $2 FOR UPDATE",
            &[&ws, &name],
        )
        .await
        .map_err(map_err)?;
    if found.is_none() {
        return Err(StoreError::NotFound("role"));
    }
    let held = c
        .query_opt(
            &format!("SELECT 1 FROM users WHERE workspace_id = $1 AND {HOLDS_ROLE} LIMIT 1"),
            &[&ws, &name],
        )
        .await
        .map_err(map_err)?;
    if held.is_some() {
        return Err(StoreError::Conflict { field: "role in use" });
    }
    c.execute("DELETE FROM roles WHERE workspace_id = $1 AND name = $2", &[&ws, &name])
        .await
        .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn set_user_role<C: GenericClient>(
    c: &C,
    ws: &str,
    id: Uuid,
    role: &str,
    lists: &[String],
    at: i64,
    draft: &AuditDraft,
) -> StoreResult<()> {
    let json = serde_json::to_string(lists).unwrap_or_else(|_| "[]".into());
    let n = c
        .execute(
            "UPDATE users SET role = $3, list_ids = $4, updated_at = $5 WHERE workspace_id = $1 AND id = $2",
            &[&ws, &id.as_bytes().as_slice(), &role, &json, &at],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    end_sessions_of(c, id, at).await?;
    audit::append(c, draft).await?;
    Ok(())
}

/// Replaces a user's recovery codes.
async fn replace_recovery_codes<C: GenericClient>(c: &C, user: Uuid, recovery: &[Vec<u8>]) -> StoreResult<()> {
    let id = user.as_bytes().as_slice();
    c.execute("DELETE FROM user_recovery_codes WHERE user_id = $1", &[&id])
        .await
        .map_err(map_err)?;
    for hash in recovery {
        c.execute(
            "INSERT INTO user_recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)",
            &[&id, hash],
        )
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

const PASSKEY_COLUMNS: &str = "id, workspace_id, user_id, credential_hash, credential_ct, name_ct, uses, created_at, last_used_at";

fn uuid_column(r: &Row, i: usize, what: &str) -> StoreResult<Uuid> {
    let raw: &[u8] = r.try_get(i).map_err(map_err)?;
    Uuid::from_slice(raw).map_err(|_| malformed(what))
}

fn passkey_from_row(r: &Row) -> StoreResult<PasskeyRecord> {
    Ok(PasskeyRecord {
        id: uuid_column(r, 0, "passkey id")?,
        workspace_id: r.try_get(1).map_err(map_err)?,
        user_id: uuid_column(r, 2, "passkey user id")?,
        credential_hash: r.try_get(3).map_err(map_err)?,
        credential_ct: r.try_get(4).map_err(map_err)?,
        name_ct: r.try_get(5).map_err(map_err)?,
        uses: r.try_get(6).map_err(map_err)?,
        created_at: r.try_get(7).map_err(map_err)?,
        last_used_at: r.try_get(8).map_err(map_err)?,
    })
}

pub async fn add_passkey<C: GenericClient>(
    c: &C,
    p: &PasskeyRecord,
    recovery: Option<&[Vec<u8>]>,
    limit: usize,
    draft: &AuditDraft,
) -> StoreResult<()> {
    let user = p.user_id.as_bytes().as_slice();
    let locked = c
        .query_opt(
            "SELECT 1 FROM users WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
            &[&p.workspace_id, &user],
        )
        .await
        .map_err(map_err)?;
    if locked.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    // The user's row is locked: registrations of one user count one at a time.
    let held: i64 = c
        .query_one("SELECT count(*) FROM user_passkeys WHERE user_id = $1", &[&user])
        .await
        .map_err(map_err)?
        .get(0);
    if held as usize >= limit {
        return Err(StoreError::Conflict { field: "passkeys" });
    }
    c.execute(
        &format!("INSERT INTO user_passkeys ({PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"),
        &[
            &p.id.as_bytes().as_slice(),
            &p.workspace_id,
            &user,
            &p.credential_hash,
            &p.credential_ct,
            &p.name_ct,
            &p.uses,
            &p.created_at,
        ],
    )
    .await
    .map_err(map_err)?;
    if let Some(hashes) = recovery {
        replace_recovery_codes(c, p.user_id, hashes).await?;
    }
    end_sessions_of(c, p.user_id, p.created_at).await?;
    audit::append(c, draft).await?;
    Ok(())
}

pub async fn list_passkeys<C: GenericClient>(c: &C, ws: &str, user: Uuid) -> StoreResult<Vec<PasskeyRecord>> {
    c.query(
        &format!("SELECT {PASSKEY_COLUMNS} FROM user_passkeys WHERE user_id = $2 AND workspace_id = $1 ORDER BY created_at, id"),
        &[&ws, &user.as_bytes().as_slice()],
    )
    .await
    .map_err(map_err)?
    .iter()
    .map(passkey_from_row)
    .collect()
}

pub async fn use_passkey<C: GenericClient>(c: &C, ws: &str, id: Uuid, expected: i64, credential_ct: &[u8], at: i64) -> StoreResult<bool> {
    let n = c
        .execute(
            "UPDATE user_passkeys SET uses = uses + 1, credential_ct = $4, last_used_at = $5
             WHERE workspace_id = $1 AND id = $2 AND uses = $3",
            &[&ws, &id.as_bytes().as_slice(), &expected, &credential_ct, &at],
        )
        .await
        .map_err(map_err)?;
    Ok(n == 1)
}

pub async fn remove_passkey<C: GenericClient>(c: &C, ws: &str, user: Uuid, id: Uuid, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    let n = c
        .execute(
            "DELETE FROM user_passkeys WHERE workspace_id = $1 AND user_id = $2 AND id = $3",
            &[&ws, &user.as_bytes().as_slice(), &id.as_bytes().as_slice()],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Ok(false);
    }
    end_sessions_of(c, user, at).await?;
    audit::append(c, draft).await?;
    Ok(true)
}

const CEREMONY_COLUMNS: &str = "id, workspace_id, kind, user_id, session_id, state_ct, created_at, expires_at";

fn ceremony_from_row(r: &Row) -> StoreResult<CeremonyRecord> {
    let kind: &str = r.try_get(2).map_err(map_err)?;
    let optional_uuid = |i: usize, what: &str| -> StoreResult<Option<Uuid>> {
        match r.try_get::<_, Option<&[u8]>>(i).map_err(map_err)? {
            None => Ok(None),
            Some(raw) => Uuid::from_slice(raw).map(Some).map_err(|_| malformed(what)),
        }
    };
    Ok(CeremonyRecord {
        id: uuid_column(r, 0, "ceremony id")?,
        workspace_id: r.try_get(1).map_err(map_err)?,
        kind: CeremonyKind::parse(kind).ok_or_else(|| malformed("ceremony kind"))?,
        user_id: optional_uuid(3, "ceremony user id")?,
        session_id: optional_uuid(4, "ceremony session id")?,
        state_ct: r.try_get(5).map_err(map_err)?,
        created_at: r.try_get(6).map_err(map_err)?,
        expires_at: r.try_get(7).map_err(map_err)?,
    })
}

pub async fn create_ceremony<C: GenericClient>(c: &C, x: &CeremonyRecord) -> StoreResult<()> {
    c.execute("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1", &[&x.created_at])
        .await
        .map_err(map_err)?;
    let user = x.user_id.map(|u| u.as_bytes().to_vec());
    let session = x.session_id.map(|s| s.as_bytes().to_vec());
    c.execute(
        &format!("INSERT INTO webauthn_ceremonies ({CEREMONY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
        &[
            &x.id.as_bytes().as_slice(),
            &x.workspace_id,
            &x.kind.as_str(),
            &user,
            &session,
            &x.state_ct,
            &x.created_at,
            &x.expires_at,
        ],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

pub async fn take_ceremony<C: GenericClient>(c: &C, id: Uuid, kind: CeremonyKind, at: i64) -> StoreResult<Option<CeremonyRecord>> {
    let taken = c
        .query_opt(
            &format!("DELETE FROM webauthn_ceremonies WHERE id = $1 AND kind = $2 RETURNING {CEREMONY_COLUMNS}"),
            &[&id.as_bytes().as_slice(), &kind.as_str()],
        )
        .await
        .map_err(map_err)?
        .as_ref()
        .map(ceremony_from_row)
        .transpose()?;
    Ok(taken.filter(|x| x.expires_at > at))
}
