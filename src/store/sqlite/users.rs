//! Users, their invitations and their sessions in the SQLite backend.

use super::{audit, map_err};
use crate::audit::AuditDraft;
use crate::store::{
    AllowlistSubject, CeremonyKind, CeremonyRecord, InvitationRecord, PasskeyRecord, RoleRecord, SessionRecord, SignInFailures, StoreError,
    StoreResult, TotpRecord, UserRecord, UserStatus,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

pub const USER_COLUMNS: &str =
    "id, workspace_id, email_bidx, user_key, email_ct, role, list_ids, password_hash, status, created_by, created_at, updated_at, allowlist, password_change_required";

pub fn user_from_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    let id: Vec<u8> = r.get(0)?;
    let lists: String = r.get(6)?;
    let status: String = r.get(8)?;
    let bad =
        |what: &str| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, format!("malformed user {what}").into());
    Ok(UserRecord {
        id: Uuid::from_slice(&id).map_err(|_| bad("id"))?,
        workspace_id: r.get(1)?,
        email_bidx: r.get(2)?,
        user_key: r.get(3)?,
        email_ct: r.get(4)?,
        role: r.get(5)?,
        list_ids: serde_json::from_str(&lists).map_err(|_| bad("lists"))?,
        password_hash: r.get(7)?,
        status: UserStatus::parse(&status).ok_or_else(|| bad("status"))?,
        created_by: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        allowlist: serde_json::from_str(&r.get::<_, String>(12)?).map_err(|_| bad("allowlist"))?,
        password_change_required: r.get(13)?,
    })
}

fn invitation_from_row(r: &Row<'_>) -> rusqlite::Result<InvitationRecord> {
    let id: Vec<u8> = r.get(2)?;
    Ok(InvitationRecord {
        token_hash: r.get(0)?,
        workspace_id: r.get(1)?,
        user_id: Uuid::from_slice(&id)
            .map_err(|_| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Blob, "malformed user id".into()))?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        used_at: r.get(5)?,
    })
}

pub fn create(c: &Connection, user: &UserRecord, invitation: &InvitationRecord, draft: &AuditDraft) -> StoreResult<()> {
    c.execute(
        &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
        params![
            user.id.as_bytes().as_slice(),
            user.workspace_id,
            user.email_bidx,
            user.user_key,
            user.email_ct,
            user.role,
            serde_json::to_string(&user.list_ids).unwrap_or_else(|_| "[]".into()),
            user.password_hash,
            user.status.as_str(),
            user.created_by,
            user.created_at,
            user.updated_at,
            serde_json::to_string(&user.allowlist).unwrap_or_else(|_| "[]".into()),
            user.password_change_required
        ],
    )
    .map_err(map_err)?;
    c.execute(
        "INSERT INTO user_invitations (token_hash, workspace_id, user_id, created_at, expires_at, used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            invitation.token_hash,
            invitation.workspace_id,
            invitation.user_id.as_bytes().as_slice(),
            invitation.created_at,
            invitation.expires_at,
            invitation.used_at
        ],
    )
    .map_err(map_err)?;
    audit::append(c, draft)?;
    Ok(())
}

pub fn find(c: &Connection, ws: &str, id: Uuid) -> rusqlite::Result<Option<UserRecord>> {
    c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE workspace_id = ?1 AND id = ?2"))?
        .query_row(params![ws, id.as_bytes().as_slice()], user_from_row)
        .optional()
}

pub fn find_by_email(c: &Connection, ws: &str, bidx: &[u8]) -> rusqlite::Result<Option<UserRecord>> {
    c.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE email_bidx = ?1 AND workspace_id = ?2"
    ))?
    .query_row(params![bidx, ws], user_from_row)
    .optional()
}

pub fn list(c: &Connection, ws: &str) -> rusqlite::Result<Vec<UserRecord>> {
    let mut s = c.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE workspace_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = s.query_map([ws], user_from_row)?;
    rows.collect()
}

pub fn find_invitation(c: &Connection, token_hash: &[u8]) -> rusqlite::Result<Option<InvitationRecord>> {
    c.prepare_cached(
        "SELECT token_hash, workspace_id, user_id, created_at, expires_at, used_at FROM user_invitations WHERE token_hash = ?1",
    )?
    .query_row([token_hash], invitation_from_row)
    .optional()
}

pub fn accept_invitation(c: &Connection, token_hash: &[u8], password_hash: &str, at: i64, draft: &AuditDraft) -> StoreResult<()> {
    let invitation = find_invitation(c, token_hash)
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("invitation"))?;
    let used = c
        .execute(
            "UPDATE user_invitations SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
            params![token_hash, at],
        )
        .map_err(map_err)?;
    if used == 0 {
        return Err(StoreError::Ended("invitation"));
    }
    let activated = c
        .execute(
            "UPDATE users SET password_hash = ?3, status = 'active', updated_at = ?4 WHERE workspace_id = ?1 AND id = ?2 AND status = 'invited'",
            params![invitation.workspace_id, invitation.user_id.as_bytes().as_slice(), password_hash, at],
        )
        .map_err(map_err)?;
    if activated == 0 {
        return Err(StoreError::Ended("invitation"));
    }
    audit::append(c, draft)?;
    Ok(())
}

/// Revokes the API keys a user created (disable and removal).
fn revoke_keys_of(c: &Connection, ws: &str, id: Uuid, at: i64) -> StoreResult<usize> {
    c.execute(
        "UPDATE api_keys SET revoked_at = ?3 WHERE workspace_id = ?1 AND created_by = ?2 AND revoked_at IS NULL",
        params![ws, format!("user:{id}"), at],
    )
    .map_err(map_err)
}

pub fn set_status(c: &Connection, ws: &str, id: Uuid, status: UserStatus, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    let user = find(c, ws, id).map_err(map_err)?.ok_or(StoreError::NotFound("user"))?;
    if user.status == status {
        return Ok(false);
    }
    if status == UserStatus::Invited || (status == UserStatus::Active && user.password_hash.is_none()) {
        return Err(StoreError::Conflict { field: "user status" });
    }
    c.execute(
        "UPDATE users SET status = ?3, updated_at = ?4 WHERE workspace_id = ?1 AND id = ?2",
        params![ws, id.as_bytes().as_slice(), status.as_str(), at],
    )
    .map_err(map_err)?;
    if status == UserStatus::Disabled {
        revoke_keys_of(c, ws, id, at)?;
        end_sessions_of(c, id, at)?;
    }
    audit::append(c, draft)?;
    Ok(true)
}

pub fn remove(c: &Connection, ws: &str, id: Uuid, at: i64, draft: &AuditDraft) -> StoreResult<()> {
    revoke_keys_of(c, ws, id, at)?;
    c.execute("DELETE FROM user_invitations WHERE user_id = ?1", [id.as_bytes().as_slice()])
        .map_err(map_err)?;
    let n = c
        .execute(
            "DELETE FROM users WHERE workspace_id = ?1 AND id = ?2",
            params![ws, id.as_bytes().as_slice()],
        )
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    audit::append(c, draft)?;
    Ok(())
}

pub fn update_password_hash(c: &Connection, ws: &str, id: Uuid, hash: &str, at: i64) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE workspace_id = ?1 AND id = ?2 AND password_hash IS NOT NULL",
            params![ws, id.as_bytes().as_slice(), hash, at],
        )
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

const SESSION_COLUMNS: &str =
    "id, token_hash, workspace_id, user_id, created_at, last_seen_at, expires_at, ended_at, ip_hash, factor_required, factor_verified_at, enrolment_required";

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let bad = |i: usize| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, "malformed session id".into());
    let id: Vec<u8> = r.get(0)?;
    let user: Vec<u8> = r.get(3)?;
    Ok(SessionRecord {
        id: Uuid::from_slice(&id).map_err(|_| bad(0))?,
        token_hash: r.get(1)?,
        workspace_id: r.get(2)?,
        user_id: Uuid::from_slice(&user).map_err(|_| bad(3))?,
        created_at: r.get(4)?,
        last_seen_at: r.get(5)?,
        expires_at: r.get(6)?,
        ended_at: r.get(7)?,
        ip_hash: r.get(8)?,
        factor_required: r.get(9)?,
        factor_verified_at: r.get(10)?,
        enrolment_required: r.get(11)?,
    })
}

pub fn create_session(c: &Connection, session: &SessionRecord, draft: &AuditDraft) -> StoreResult<()> {
    c.execute(
        &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            session.id.as_bytes().as_slice(),
            session.token_hash,
            session.workspace_id,
            session.user_id.as_bytes().as_slice(),
            session.created_at,
            session.last_seen_at,
            session.expires_at,
            session.ended_at,
            session.ip_hash,
            session.factor_required,
            session.factor_verified_at,
            session.enrolment_required
        ],
    )
    .map_err(map_err)?;
    audit::append(c, draft)?;
    Ok(())
}

pub fn find_session(c: &Connection, token_hash: &[u8]) -> rusqlite::Result<Option<(SessionRecord, UserRecord)>> {
    let Some(session) = c
        .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?1"))?
        .query_row([token_hash], session_from_row)
        .optional()?
    else {
        return Ok(None);
    };
    Ok(find(c, &session.workspace_id, session.user_id)?.map(|user| (session, user)))
}

pub fn touch_session(c: &Connection, id: Uuid, at: i64) -> StoreResult<()> {
    c.execute(
        "UPDATE sessions SET last_seen_at = max(last_seen_at, ?2) WHERE id = ?1",
        params![id.as_bytes().as_slice(), at],
    )
    .map_err(map_err)?;
    Ok(())
}

pub fn list_sessions(c: &Connection, ws: &str, user: Uuid) -> rusqlite::Result<Vec<SessionRecord>> {
    let mut s = c.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE workspace_id = ?1 AND user_id = ?2 AND ended_at IS NULL ORDER BY created_at DESC, id DESC"
    ))?;
    let rows = s.query_map(params![ws, user.as_bytes().as_slice()], session_from_row)?;
    rows.collect()
}

pub fn end_session(c: &Connection, ws: &str, user: Uuid, id: Uuid, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    let n = c
        .execute(
            "UPDATE sessions SET ended_at = ?4 WHERE workspace_id = ?1 AND user_id = ?2 AND id = ?3 AND ended_at IS NULL",
            params![ws, user.as_bytes().as_slice(), id.as_bytes().as_slice(), at],
        )
        .map_err(map_err)?;
    if n == 0 {
        let exists = c
            .query_row(
                "SELECT 1 FROM sessions WHERE workspace_id = ?1 AND user_id = ?2 AND id = ?3",
                params![ws, user.as_bytes().as_slice(), id.as_bytes().as_slice()],
                |_| Ok(()),
            )
            .optional()
            .map_err(map_err)?;
        return exists.map(|()| false).ok_or(StoreError::NotFound("session"));
    }
    audit::append(c, draft)?;
    Ok(true)
}

/// Ends every session of a user (a factor change, a disable).
fn end_sessions_of(c: &Connection, user: Uuid, at: i64) -> StoreResult<()> {
    c.execute(
        "UPDATE sessions SET ended_at = ?2 WHERE user_id = ?1 AND ended_at IS NULL",
        params![user.as_bytes().as_slice(), at],
    )
    .map_err(map_err)?;
    Ok(())
}

pub fn verify_session_factor(c: &Connection, id: Uuid, token_hash: &[u8], at: i64, draft: &AuditDraft) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE sessions SET factor_verified_at = ?2, token_hash = ?3 WHERE id = ?1 AND ended_at IS NULL",
            params![id.as_bytes().as_slice(), at, token_hash],
        )
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::Ended("session"));
    }
    audit::append(c, draft)?;
    Ok(())
}

pub fn fail_session_factor(c: &Connection, id: Uuid, limit: i64, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    c.execute(
        "UPDATE sessions SET factor_failures = factor_failures + 1,
             ended_at = CASE WHEN factor_failures + 1 >= ?2 THEN ?3 ELSE ended_at END
         WHERE id = ?1 AND ended_at IS NULL",
        params![id.as_bytes().as_slice(), limit, at],
    )
    .map_err(map_err)?;
    let ended: Option<i64> = c
        .query_row("SELECT ended_at FROM sessions WHERE id = ?1", [id.as_bytes().as_slice()], |r| {
            r.get(0)
        })
        .optional()
        .map_err(map_err)?
        .flatten();
    audit::append(c, draft)?;
    Ok(ended.is_some())
}

const TOTP_COLUMNS: &str = "user_id, workspace_id, secret_ct, created_at, confirmed_at, last_step";

fn totp_from_row(r: &Row<'_>) -> rusqlite::Result<TotpRecord> {
    let id: Vec<u8> = r.get(0)?;
    Ok(TotpRecord {
        user_id: Uuid::from_slice(&id)
            .map_err(|_| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, "malformed user id".into()))?,
        workspace_id: r.get(1)?,
        secret_ct: r.get(2)?,
        created_at: r.get(3)?,
        confirmed_at: r.get(4)?,
        last_step: r.get(5)?,
    })
}

pub fn find_totp(c: &Connection, ws: &str, user: Uuid) -> rusqlite::Result<Option<TotpRecord>> {
    c.prepare_cached(&format!(
        "SELECT {TOTP_COLUMNS} FROM user_totp WHERE workspace_id = ?1 AND user_id = ?2"
    ))?
    .query_row(params![ws, user.as_bytes().as_slice()], totp_from_row)
    .optional()
}

pub fn start_totp(c: &Connection, totp: &TotpRecord, draft: &AuditDraft) -> StoreResult<()> {
    if find(c, &totp.workspace_id, totp.user_id).map_err(map_err)?.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    if find_totp(c, &totp.workspace_id, totp.user_id)
        .map_err(map_err)?
        .is_some_and(|t| t.confirmed_at.is_some())
    {
        return Err(StoreError::Conflict { field: "second factor" });
    }
    c.execute(
        &format!("INSERT OR REPLACE INTO user_totp ({TOTP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, NULL, 0)"),
        params![
            totp.user_id.as_bytes().as_slice(),
            totp.workspace_id,
            totp.secret_ct,
            totp.created_at
        ],
    )
    .map_err(map_err)?;
    audit::append(c, draft)?;
    Ok(())
}

pub fn confirm_totp(c: &Connection, ws: &str, user: Uuid, step: i64, recovery: &[Vec<u8>], at: i64, draft: &AuditDraft) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE user_totp SET confirmed_at = ?3, last_step = ?4 WHERE workspace_id = ?1 AND user_id = ?2 AND confirmed_at IS NULL",
            params![ws, user.as_bytes().as_slice(), at, step],
        )
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::Ended("enrolment"));
    }
    replace_recovery_codes(c, user, recovery)?;
    end_sessions_of(c, user, at)?;
    audit::append(c, draft)?;
    Ok(())
}

pub fn use_totp_step(c: &Connection, ws: &str, user: Uuid, step: i64) -> StoreResult<bool> {
    let n = c
        .execute(
            "UPDATE user_totp SET last_step = ?3 WHERE workspace_id = ?1 AND user_id = ?2 AND confirmed_at IS NOT NULL AND last_step < ?3",
            params![ws, user.as_bytes().as_slice(), step],
        )
        .map_err(map_err)?;
    Ok(n == 1)
}

pub fn use_recovery_code(c: &Connection, ws: &str, user: Uuid, hash: &[u8], at: i64) -> StoreResult<bool> {
    let n = c
        .execute(
            "UPDATE user_recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL
             AND EXISTS (SELECT 1 FROM users WHERE id = ?1 AND workspace_id = ?4)",
            params![user.as_bytes().as_slice(), hash, at, ws],
        )
        .map_err(map_err)?;
    Ok(n == 1)
}

pub fn remove_second_factors(c: &Connection, ws: &str, user: Uuid, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    let totp = c
        .execute(
            "DELETE FROM user_totp WHERE workspace_id = ?1 AND user_id = ?2",
            params![ws, user.as_bytes().as_slice()],
        )
        .map_err(map_err)?;
    let passkeys = c
        .execute(
            "DELETE FROM user_passkeys WHERE workspace_id = ?1 AND user_id = ?2",
            params![ws, user.as_bytes().as_slice()],
        )
        .map_err(map_err)?;
    let n = totp + passkeys;
    c.execute("DELETE FROM user_recovery_codes WHERE user_id = ?1", [user.as_bytes().as_slice()])
        .map_err(map_err)?;
    if n == 0 {
        return Ok(false);
    }
    end_sessions_of(c, user, at)?;
    audit::append(c, draft)?;
    Ok(true)
}

pub fn sign_in_failures(c: &Connection, ws: &str, scope: &str, key: &[u8]) -> rusqlite::Result<Option<SignInFailures>> {
    c.prepare_cached("SELECT failures, first_at, last_at FROM sign_in_failures WHERE workspace_id = ?1 AND scope = ?2 AND key = ?3")?
        .query_row(params![ws, scope, key], |r| {
            Ok(SignInFailures {
                failures: r.get(0)?,
                first_at: r.get(1)?,
                last_at: r.get(2)?,
            })
        })
        .optional()
}

pub fn record_sign_in_failure(c: &Connection, ws: &str, scope: &str, key: &[u8], at: i64, window: i64) -> StoreResult<SignInFailures> {
    c.execute(
        "INSERT INTO sign_in_failures (workspace_id, scope, key, failures, first_at, last_at) VALUES (?1, ?2, ?3, 1, ?4, ?4)
         ON CONFLICT (workspace_id, scope, key) DO UPDATE SET
             failures = CASE WHEN first_at <= ?4 - ?5 THEN 1 ELSE failures + 1 END,
             first_at = CASE WHEN first_at <= ?4 - ?5 THEN ?4 ELSE first_at END,
             last_at = ?4",
        params![ws, scope, key, at, window],
    )
    .map_err(map_err)?;
    sign_in_failures(c, ws, scope, key)
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("sign-in failures"))
}

pub fn clear_sign_in_failures(c: &Connection, ws: &str, scope: &str, key: &[u8]) -> StoreResult<()> {
    c.execute(
        "DELETE FROM sign_in_failures WHERE workspace_id = ?1 AND scope = ?2 AND key = ?3",
        params![ws, scope, key],
    )
    .map_err(map_err)?;
    Ok(())
}

pub fn second_factor_required(c: &Connection, ws: &str) -> rusqlite::Result<bool> {
    Ok(
        c.prepare_cached("SELECT second_factor_required FROM workspace_security WHERE workspace_id = ?1")?
            .query_row([ws], |r| r.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false),
    )
}

pub fn set_second_factor_required(c: &Connection, ws: &str, required: bool, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    if second_factor_required(c, ws).map_err(map_err)? == required {
        return Ok(false);
    }
    c.execute(
        "INSERT INTO workspace_security (workspace_id, second_factor_required, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (workspace_id) DO UPDATE SET second_factor_required = excluded.second_factor_required, updated_at = excluded.updated_at",
        params![ws, required, at],
    )
    .map_err(map_err)?;
    audit::append(c, draft)?;
    Ok(true)
}

pub fn require_password_changes(c: &Connection, ws: &str, at: i64, draft: &AuditDraft) -> StoreResult<u64> {
    let n = c
        .execute(
            "UPDATE users SET password_change_required = 1, updated_at = ?2 WHERE workspace_id = ?1 AND password_hash IS NOT NULL",
            params![ws, at],
        )
        .map_err(map_err)?;
    c.execute(
        "UPDATE sessions SET ended_at = ?2 WHERE workspace_id = ?1 AND ended_at IS NULL",
        params![ws, at],
    )
    .map_err(map_err)?;
    audit::append(c, draft)?;
    Ok(n as u64)
}

pub fn change_password(c: &Connection, ws: &str, id: Uuid, hash: &str, at: i64, draft: &AuditDraft) -> StoreResult<()> {
    update_password_hash(c, ws, id, hash, at)?;
    c.execute(
        "UPDATE users SET password_change_required = 0 WHERE workspace_id = ?1 AND id = ?2",
        params![ws, id.as_bytes().as_slice()],
    )
    .map_err(map_err)?;
    end_sessions_of(c, id, at)?;
    audit::append(c, draft)?;
    Ok(())
}

pub fn workspace_allowlist(c: &Connection, ws: &str) -> rusqlite::Result<Vec<String>> {
    let raw: Option<String> = c
        .prepare_cached("SELECT allowlist FROM workspace_security WHERE workspace_id = ?1")?
        .query_row([ws], |r| r.get(0))
        .optional()?;
    Ok(raw
        .map(|r| crate::store::stored_strings(&r, "workspace allowlist"))
        .unwrap_or_default())
}

pub fn set_allowlist(
    c: &Connection,
    ws: &str,
    subject: &AllowlistSubject,
    entries: &[String],
    at: i64,
    draft: &AuditDraft,
) -> StoreResult<bool> {
    let json = serde_json::to_string(entries).unwrap_or_else(|_| "[]".into());
    let current: Option<String> = match subject {
        AllowlistSubject::Workspace => Some(serde_json::to_string(&workspace_allowlist(c, ws).map_err(map_err)?).unwrap_or_default()),
        AllowlistSubject::User(id) => c
            .query_row(
                "SELECT allowlist FROM users WHERE workspace_id = ?1 AND id = ?2",
                params![ws, id.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(map_err)?,
        AllowlistSubject::Key(id) => c
            .query_row(
                "SELECT allowlist FROM api_keys WHERE workspace_id = ?1 AND id = ?2",
                params![ws, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(map_err)?,
    };
    let Some(current) = current else {
        return Err(StoreError::NotFound(match subject {
            AllowlistSubject::User(_) => "user",
            _ => "api key",
        }));
    };
    if current == json {
        return Ok(false);
    }
    match subject {
        AllowlistSubject::Workspace => c.execute(
            "INSERT INTO workspace_security (workspace_id, allowlist, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (workspace_id) DO UPDATE SET allowlist = excluded.allowlist, updated_at = excluded.updated_at",
            params![ws, json, at],
        ),
        AllowlistSubject::User(id) => c.execute(
            "UPDATE users SET allowlist = ?3, updated_at = ?4 WHERE workspace_id = ?1 AND id = ?2",
            params![ws, id.as_bytes().as_slice(), json, at],
        ),
        AllowlistSubject::Key(id) => c.execute(
            "UPDATE api_keys SET allowlist = ?3 WHERE workspace_id = ?1 AND id = ?2",
            params![ws, id, json],
        ),
    }
    .map_err(map_err)?;
    audit::append(c, draft)?;
    Ok(true)
}

/// Users whose role (a comma-separated list) names `role`. Role names hold no
/// LIKE wildcards (letters, digits and hyphens only).
const HOLDS_ROLE: &str = "(role = ?2 OR role LIKE ?2 || ',%' OR role LIKE '%,' || ?2 OR role LIKE '%,' || ?2 || ',%')";

pub fn list_roles(c: &Connection, ws: &str) -> rusqlite::Result<Vec<RoleRecord>> {
    let mut s = c.prepare_cached(
        "SELECT workspace_id, name, permissions, created_by, created_at, updated_at FROM roles WHERE workspace_id = ?1 ORDER BY name",
    )?;
    let rows = s.query_map([ws], |r| {
        let perms: String = r.get(2)?;
        Ok(RoleRecord {
            workspace_id: r.get(0)?,
            name: r.get(1)?,
            permissions: serde_json::from_str(&perms).map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, "malformed role permissions".into())
            })?,
            created_by: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
        })
    })?;
    rows.collect()
}

pub fn create_role(c: &Connection, role: &RoleRecord, draft: &AuditDraft) -> StoreResult<()> {
    let exists = c
        .query_row(
            "SELECT 1 FROM roles WHERE workspace_id = ?1 AND name = ?2",
            params![role.workspace_id, role.name],
            |_| Ok(()),
        )
        .optional()
        .map_err(map_err)?;
    if exists.is_some() {
        return Err(StoreError::Conflict { field: "role name" });
    }
    c.execute(
        "INSERT INTO roles (workspace_id, name, permissions, created_by, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            role.workspace_id,
            role.name,
            serde_json::to_string(&role.permissions).unwrap_or_else(|_| "[]".into()),
            role.created_by,
            role.created_at,
            role.updated_at
        ],
    )
    .map_err(map_err)?;
    audit::append(c, draft)?;
    Ok(())
}

pub fn update_role(c: &Connection, ws: &str, name: &str, permissions: &[String], at: i64, draft: &AuditDraft) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE roles SET permissions = ?3, updated_at = ?4 WHERE workspace_id = ?1 AND name = ?2",
            params![ws, name, serde_json::to_string(permissions).unwrap_or_else(|_| "[]".into()), at],
        )
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound("role"));
    }
    c.execute(
        &format!(
            "UPDATE sessions SET ended_at = ?3 WHERE ended_at IS NULL AND user_id IN
             (SELECT id FROM users WHERE workspace_id = ?1 AND {HOLDS_ROLE})"
        ),
        params![ws, name, at],
    )
    .map_err(map_err)?;
    audit::append(c, draft)?;
    Ok(())
}

pub fn delete_role(c: &Connection, ws: &str, name: &str, draft: &AuditDraft) -> StoreResult<()> {
    let held = c
        .query_row(
            &format!("SELECT 1 FROM users WHERE workspace_id = ?1 AND {HOLDS_ROLE} LIMIT 1"),
            params![ws, name],
            |_| Ok(()),
        )
        .optional()
        .map_err(map_err)?;
    if held.is_some() {
        return Err(StoreError::Conflict { field: "role in use" });
    }
    let n = c
        .execute("DELETE FROM roles WHERE workspace_id = ?1 AND name = ?2", params![ws, name])
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound("role"));
    }
    audit::append(c, draft)?;
    Ok(())
}

pub fn set_user_role(c: &Connection, ws: &str, id: Uuid, role: &str, lists: &[String], at: i64, draft: &AuditDraft) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE users SET role = ?3, list_ids = ?4, updated_at = ?5 WHERE workspace_id = ?1 AND id = ?2",
            params![
                ws,
                id.as_bytes().as_slice(),
                role,
                serde_json::to_string(lists).unwrap_or_else(|_| "[]".into()),
                at
            ],
        )
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    end_sessions_of(c, id, at)?;
    audit::append(c, draft)?;
    Ok(())
}

const PASSKEY_COLUMNS: &str = "id, workspace_id, user_id, credential_hash, credential_ct, name_ct, uses, created_at, last_used_at";

fn uuid_column(r: &Row<'_>, i: usize, what: &str) -> rusqlite::Result<Uuid> {
    let raw: Vec<u8> = r.get(i)?;
    Uuid::from_slice(&raw)
        .map_err(|_| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, format!("malformed {what}").into()))
}

fn passkey_from_row(r: &Row<'_>) -> rusqlite::Result<PasskeyRecord> {
    Ok(PasskeyRecord {
        id: uuid_column(r, 0, "passkey id")?,
        workspace_id: r.get(1)?,
        user_id: uuid_column(r, 2, "user id")?,
        credential_hash: r.get(3)?,
        credential_ct: r.get(4)?,
        name_ct: r.get(5)?,
        uses: r.get(6)?,
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
    })
}

/// Replaces a user's recovery codes.
fn replace_recovery_codes(c: &Connection, user: Uuid, recovery: &[Vec<u8>]) -> StoreResult<()> {
    c.execute("DELETE FROM user_recovery_codes WHERE user_id = ?1", [user.as_bytes().as_slice()])
        .map_err(map_err)?;
    for hash in recovery {
        c.execute(
            "INSERT INTO user_recovery_codes (user_id, code_hash, used_at) VALUES (?1, ?2, NULL)",
            params![user.as_bytes().as_slice(), hash],
        )
        .map_err(map_err)?;
    }
    Ok(())
}

pub fn add_passkey(c: &Connection, p: &PasskeyRecord, recovery: Option<&[Vec<u8>]>, limit: usize, draft: &AuditDraft) -> StoreResult<()> {
    if find(c, &p.workspace_id, p.user_id).map_err(map_err)?.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    // The single writer makes the count and the insert one step.
    let held: i64 = c
        .query_row(
            "SELECT count(*) FROM user_passkeys WHERE user_id = ?1",
            [p.user_id.as_bytes().as_slice()],
            |r| r.get(0),
        )
        .map_err(map_err)?;
    if held as usize >= limit {
        return Err(StoreError::Conflict { field: "passkeys" });
    }
    c.execute(
        &format!("INSERT INTO user_passkeys ({PASSKEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)"),
        params![
            p.id.as_bytes().as_slice(),
            p.workspace_id,
            p.user_id.as_bytes().as_slice(),
            p.credential_hash,
            p.credential_ct,
            p.name_ct,
            p.uses,
            p.created_at
        ],
    )
    .map_err(map_err)?;
    if let Some(hashes) = recovery {
        replace_recovery_codes(c, p.user_id, hashes)?;
    }
    end_sessions_of(c, p.user_id, p.created_at)?;
    audit::append(c, draft)?;
    Ok(())
}

pub fn list_passkeys(c: &Connection, ws: &str, user: Uuid) -> rusqlite::Result<Vec<PasskeyRecord>> {
    c.prepare_cached(&format!(
        "SELECT {PASSKEY_COLUMNS} FROM user_passkeys WHERE user_id = ?2 AND workspace_id = ?1 ORDER BY created_at, id"
    ))?
    .query_map(params![ws, user.as_bytes().as_slice()], passkey_from_row)?
    .collect()
}

pub fn use_passkey(c: &Connection, ws: &str, id: Uuid, expected: i64, credential_ct: &[u8], at: i64) -> StoreResult<bool> {
    let n = c
        .execute(
            "UPDATE user_passkeys SET uses = uses + 1, credential_ct = ?4, last_used_at = ?5
             WHERE workspace_id = ?1 AND id = ?2 AND uses = ?3",
            params![ws, id.as_bytes().as_slice(), expected, credential_ct, at],
        )
        .map_err(map_err)?;
    Ok(n == 1)
}

pub fn remove_passkey(c: &Connection, ws: &str, user: Uuid, id: Uuid, at: i64, draft: &AuditDraft) -> StoreResult<bool> {
    let n = c
        .execute(
            "DELETE FROM user_passkeys WHERE workspace_id = ?1 AND user_id = ?2 AND id = ?3",
            params![ws, user.as_bytes().as_slice(), id.as_bytes().as_slice()],
        )
        .map_err(map_err)?;
    if n == 0 {
        return Ok(false);
    }
    end_sessions_of(c, user, at)?;
    audit::append(c, draft)?;
    Ok(true)
}

const CEREMONY_COLUMNS: &str = "id, workspace_id, kind, user_id, session_id, state_ct, created_at, expires_at";

fn ceremony_from_row(r: &Row<'_>) -> rusqlite::Result<CeremonyRecord> {
    let kind: String = r.get(2)?;
    let optional_uuid = |i: usize, what: &str| -> rusqlite::Result<Option<Uuid>> {
        match r.get::<_, Option<Vec<u8>>>(i)? {
            None => Ok(None),
            Some(_) => uuid_column(r, i, what).map(Some),
        }
    };
    Ok(CeremonyRecord {
        id: uuid_column(r, 0, "ceremony id")?,
        workspace_id: r.get(1)?,
        kind: CeremonyKind::parse(&kind)
            .ok_or_else(|| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, "unknown ceremony kind".into()))?,
        user_id: optional_uuid(3, "user id")?,
        session_id: optional_uuid(4, "session id")?,
        state_ct: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
    })
}

pub fn create_ceremony(c: &Connection, x: &CeremonyRecord) -> StoreResult<()> {
    c.execute("DELETE FROM webauthn_ceremonies WHERE expires_at <= ?1", [x.created_at])
        .map_err(map_err)?;
    c.execute(
        &format!("INSERT INTO webauthn_ceremonies ({CEREMONY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            x.id.as_bytes().as_slice(),
            x.workspace_id,
            x.kind.as_str(),
            x.user_id.map(|u| u.as_bytes().to_vec()),
            x.session_id.map(|s| s.as_bytes().to_vec()),
            x.state_ct,
            x.created_at,
            x.expires_at
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

pub fn take_ceremony(c: &Connection, id: Uuid, kind: CeremonyKind, at: i64) -> StoreResult<Option<CeremonyRecord>> {
    let taken = c
        .query_row(
            &format!("DELETE FROM webauthn_ceremonies WHERE id = ?1 AND kind = ?2 RETURNING {CEREMONY_COLUMNS}"),
            params![id.as_bytes().as_slice(), kind.as_str()],
            ceremony_from_row,
        )
        .optional()
        .map_err(map_err)?;
    Ok(taken.filter(|x| x.expires_at > at))
}
