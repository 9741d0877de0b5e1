//! The embedded SQLite backend (default): bundled SQLite in WAL mode with
//! `synchronous=FULL`, one writer thread that group-commits (`writer.rs`) and a small
//! pool of read-only connections. Per-dialect SQL stays in this folder.

mod audit;
mod checkpointer;
mod contacts;
mod imports;
mod users;
mod writer;

use super::*;
use crate::audit::{AuditDraft, AuditEvent, Checkpoint};
use anyhow::Context;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use writer::Writer;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_vault.sql")),
    (2, include_str!("../../../migrations/sqlite/0002_users.sql")),
    (3, include_str!("../../../migrations/sqlite/0003_sessions.sql")),
    (4, include_str!("../../../migrations/sqlite/0004_second_factors.sql")),
    (5, include_str!("../../../migrations/sqlite/0005_sign_in_throttle.sql")),
    (6, include_str!("../../../migrations/sqlite/0006_required_second_factor.sql")),
    (7, include_str!("../../../migrations/sqlite/0007_allowlists.sql")),
    (8, include_str!("../../../migrations/sqlite/0008_password_reset.sql")),
    (9, include_str!("../../../migrations/sqlite/0009_custom_roles.sql")),
    (10, include_str!("../../../migrations/sqlite/0010_key_last_address.sql")),
    (11, include_str!("../../../migrations/sqlite/0011_passkeys.sql")),
    (12, include_str!("../../../migrations/sqlite/0012_lean_contacts.sql")),
];
const READERS: usize = 4;
/// Bytes per page of a new database file.
const PAGE_SIZE: u32 = 8192;

/// The writer connection's settings: WAL, a sync at every commit, a 64 MiB page
/// cache, and no automatic checkpoint (the checkpointer runs them on a
/// connection of its own).
pub const WRITER_PRAGMAS: &str = "PRAGMA journal_mode = WAL;
     PRAGMA synchronous = FULL;
     PRAGMA foreign_keys = ON;
     PRAGMA temp_store = MEMORY;
     PRAGMA cache_size = -65536;
     PRAGMA busy_timeout = 10000;
     PRAGMA wal_autocheckpoint = 0;";

/// Public so that `examples/sqlite_floor.rs` checkpoints as the store does.
pub use checkpointer::Checkpointer;
/// The reads an import batch makes before it is planned (the contacts of its
/// identifiers, their list membership and consent), on the writer's connection.
/// Public so that `examples/sqlite_floor.rs` times the store's own look-up.
pub use imports::look_up as look_up_import_batch;

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    /// Import batches written by this process, to check look-ups made ahead.
    recent: Arc<recent::RecentWrites>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_permits: Semaphore,
    // Declared last: dropped after the writer and readers, so its final
    // checkpoint sees everything they wrote.
    _checkpointer: checkpointer::Checkpointer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations, with
    /// the default import commit window.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, Duration::from_millis(crate::config::DEFAULT_IMPORT_COMMIT_WINDOW_MS))
    }

    /// Like `open`; consecutive batches of one import share a transaction for at
    /// most `import_commit_window`.
    pub fn open_with(path: &Path, import_commit_window: Duration) -> anyhow::Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("failed to open database {}", path.display()))?;
        // The page size applies when the file is created (it stays what it was for
        // an existing database): an import writes most pages of its random
        // blind-index indexes at every commit, and larger pages mean fewer of them
        // to find, split and log.
        conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE};"))
            .context("failed to configure the database")?;
        conn.execute_batch(WRITER_PRAGMAS).context("failed to configure the database")?;
        migrate(&conn).context("failed to apply database migrations")?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Writer::start(conn, import_commit_window)?,
            recent: Arc::new(recent::RecentWrites::default()),
            readers: Arc::new(Mutex::new(Vec::new())),
            reader_permits: Semaphore::new(READERS),
            _checkpointer: checkpointer::Checkpointer::start(path)?,
        })
    }

    /// The newest migration applied.
    pub fn schema_version(&self) -> anyhow::Result<i64> {
        let conn = Self::open_reader(&self.path)?;
        Ok(conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?)
    }

    fn open_reader(path: &Path) -> anyhow::Result<Connection> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_context(|| format!("failed to open database {}", path.display()))?;
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384; PRAGMA busy_timeout = 10000;")
            .context("failed to configure a reader")?;
        Ok(conn)
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _permit = self.reader_permits.acquire().await.map_err(|e| StoreError::Backend(e.into()))?;
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut v| v.pop());
            let conn = match pooled {
                Some(c) => c,
                None => Self::open_reader(&path)?,
            };
            let out = f(&conn).context("failed to read from the database");
            if let Ok(mut v) = readers.lock() {
                v.push(conn);
            }
            out.map_err(StoreError::Backend)
        })
        .await
        .map_err(|e| StoreError::Backend(e.into()))?
    }

    /// A read of a few rows by key, run on the calling task: a point query takes
    /// microseconds, less than handing it to a blocking thread and waking the task
    /// again. Reads that scan use `read`.
    async fn read_point<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T>,
    {
        let _permit = self.reader_permits.acquire().await.map_err(|e| StoreError::Backend(e.into()))?;
        let pooled = self.readers.lock().ok().and_then(|mut v| v.pop());
        let conn = match pooled {
            Some(c) => c,
            None => Self::open_reader(&self.path)?,
        };
        let out = f(&conn).context("failed to read from the database");
        if let Ok(mut v) = self.readers.lock() {
            v.push(conn);
        }
        out.map_err(StoreError::Backend)
    }

    /// Runs a write with its audit event in the group transaction.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(move |c| (true, f(c))).await
    }
}

fn migrate(conn: &Connection) -> anyhow::Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT")?;
    for (version, sql) in MIGRATIONS {
        let done: bool = conn
            .query_row("SELECT 1 FROM schema_migrations WHERE version = ?1", [version], |_| Ok(()))
            .optional()?
            .is_some();
        if !done {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql).with_context(|| format!("migration {version} failed"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, audit::now_micros()],
            )?;
            tx.commit()?;
        }
    }
    Ok(())
}

fn insert_api_key(c: &Connection, key: &ApiKeyRecord) -> StoreResult<()> {
    c.execute(
        &format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
        params![
            key.id,
            key.workspace_id,
            key.name,
            key.secret_hash,
            serde_json::to_string(&key.scopes).unwrap_or_default(),
            serde_json::to_string(&key.list_ids).unwrap_or_default(),
            key.created_by,
            key.created_at,
            key.expires_at,
            key.revoked_at,
            key.last_used_at,
            serde_json::to_string(&key.allowlist).unwrap_or_else(|_| "[]".into()),
            key.last_used_from
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

/// Maps a rusqlite error, turning unique-constraint violations into conflicts.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, Some(msg)) = &e {
        if f.code == rusqlite::ErrorCode::ConstraintViolation && msg.contains("UNIQUE") {
            let field = if msg.contains("email_bidx") {
                "email"
            } else if msg.contains("phone_bidx") {
                "phone"
            } else if msg.contains("lists.") {
                "list name"
            } else if msg.contains("attributes.") {
                "attribute"
            } else if msg.contains("user_passkeys.") {
                "passkey"
            } else {
                "record"
            };
            return StoreError::Conflict { field };
        }
    }
    StoreError::Backend(anyhow::Error::new(e))
}

/// `NotFound` unless the workspace has this list.
fn require_list(c: &Connection, ws: &str, list_id: &str) -> StoreResult<()> {
    c.prepare_cached("SELECT 1 FROM lists WHERE workspace_id = ?1 AND id = ?2")
        .and_then(|mut s| s.query_row(params![ws, list_id], |_| Ok(())).optional())
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("list"))
}

fn list_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ListRecord> {
    Ok(ListRecord {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
        member_count: r.get::<_, Option<i64>>(4)?.map(|n| n as u64),
    })
}

const LIST_COLUMNS: &str = "l.id, l.workspace_id, l.name, l.created_at, (SELECT COUNT(*) FROM list_members m JOIN contacts c ON c.id = m.contact_id AND c.deleted_at IS NULL WHERE m.list_id = l.id)";
const LIST_COLUMNS_UNCOUNTED: &str = "l.id, l.workspace_id, l.name, l.created_at, NULL";

fn api_key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let scopes: String = r.get(4)?;
    let lists: String = r.get(5)?;
    Ok(ApiKeyRecord {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        name: r.get(2)?,
        secret_hash: r.get(3)?,
        scopes: stored_strings(&scopes, "api key scopes"),
        list_ids: stored_strings(&lists, "api key lists"),
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        revoked_at: r.get(9)?,
        last_used_at: r.get(10)?,
        allowlist: stored_strings(&r.get::<_, String>(11)?, "api key allowlist"),
        last_used_from: r.get(12)?,
    })
}

const API_KEY_COLUMNS: &str =
    "id, workspace_id, name, secret_hash, scopes, list_ids, created_by, created_at, expires_at, revoked_at, last_used_at, allowlist, last_used_from";

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    async fn create_workspace(&self, ws: NewWorkspace, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO workspaces (id, name, created_at, audit_public_key) VALUES (?1, ?2, ?3, ?4)",
                params![ws.id, ws.name, ws.created_at, ws.audit_public_key],
            )
            .map_err(map_err)?;
            for k in &ws.keys {
                c.execute(
                    "INSERT INTO workspace_keys (workspace_id, purpose, version, wrapped, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![ws.id, k.purpose, k.version, k.wrapped, ws.created_at],
                )
                .map_err(map_err)?;
            }
            audit::append(c, &audit_draft)?;
            Ok(())
        })
        .await
    }

    async fn list_workspaces(&self) -> StoreResult<Vec<WorkspaceRecord>> {
        self.read(|c| {
            let mut s = c.prepare("SELECT id, name, created_at, audit_public_key FROM workspaces ORDER BY created_at, id")?;
            let mut out: Vec<WorkspaceRecord> = s
                .query_map([], |r| {
                    Ok(WorkspaceRecord {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                        audit_public_key: r.get(3)?,
                        keys: vec![],
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut k =
                c.prepare("SELECT purpose, version, wrapped FROM workspace_keys WHERE workspace_id = ?1 ORDER BY purpose, version")?;
            for ws in &mut out {
                ws.keys = k
                    .query_map([&ws.id], |r| {
                        Ok(crate::crypto::WrappedKey {
                            purpose: r.get(0)?,
                            version: r.get(1)?,
                            wrapped: r.get(2)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
            }
            Ok(out)
        })
        .await
    }

    async fn create_api_key(&self, key: ApiKeyRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| {
            insert_api_key(c, &key)?;
            audit::append(c, &audit_draft)?;
            Ok(())
        })
        .await
    }

    async fn rotate_api_key(
        &self,
        workspace_id: &str,
        old_id: &str,
        new_key: ApiKeyRecord,
        old_expires_at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let (ws, old_id) = (workspace_id.to_string(), old_id.to_string());
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE api_keys SET expires_at = min(COALESCE(expires_at, ?3), ?3)
                     WHERE workspace_id = ?1 AND id = ?2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?4)",
                    params![ws, old_id, old_expires_at, new_key.created_at],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound("api key"));
            }
            insert_api_key(c, &new_key)?;
            audit::append(c, &audit_draft)?;
            Ok(())
        })
        .await
    }

    async fn rotate_api_keys(
        &self,
        workspace_id: &str,
        rotations: Vec<(String, ApiKeyRecord)>,
        old_expires_at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let ws = workspace_id.to_string();
        self.write(move |c| {
            for (old_id, new_key) in &rotations {
                let n = c
                    .execute(
                        "UPDATE api_keys SET expires_at = min(COALESCE(expires_at, ?3), ?3)
                         WHERE workspace_id = ?1 AND id = ?2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?4)",
                        params![ws, old_id, old_expires_at, new_key.created_at],
                    )
                    .map_err(map_err)?;
                if n == 0 {
                    return Err(StoreError::NotFound("api key"));
                }
                insert_api_key(c, new_key)?;
            }
            audit::append(c, &audit_draft)?;
            Ok(())
        })
        .await
    }

    async fn find_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        self.read_point(|c| {
            c.prepare_cached(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
                .query_row([id], api_key_from_row)
                .optional()
        })
        .await
    }

    async fn find_api_key_with_allowlist(&self, id: &str) -> StoreResult<Option<(ApiKeyRecord, Vec<String>)>> {
        self.read_point(|c| {
            c.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS}, (SELECT w.allowlist FROM workspace_security w WHERE w.workspace_id = api_keys.workspace_id) FROM api_keys WHERE id = ?1"
            ))?
            .query_row([id], |r| {
                let workspace = r
                    .get::<_, Option<String>>(13)?
                    .map(|raw| stored_strings(&raw, "workspace allowlist"))
                    .unwrap_or_default();
                Ok((api_key_from_row(r)?, workspace))
            })
            .optional()
        })
        .await
    }

    async fn list_api_keys(&self, workspace_id: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        let ws = workspace_id.to_string();
        self.read(move |c| {
            c.prepare(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE workspace_id = ?1 ORDER BY created_at, id"
            ))?
            .query_map([ws], api_key_from_row)?
            .collect()
        })
        .await
    }

    async fn revoke_api_key(&self, workspace_id: &str, id: &str, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let (ws, id) = (workspace_id.to_string(), id.to_string());
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE api_keys SET revoked_at = ?3 WHERE workspace_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                    params![ws, id, at],
                )
                .map_err(map_err)?;
            if n == 0 {
                let exists = c
                    .query_row(
                        "SELECT 1 FROM api_keys WHERE workspace_id = ?1 AND id = ?2",
                        params![ws, id],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(map_err)?;
                return exists.map(|()| false).ok_or(StoreError::NotFound("api key"));
            }
            audit::append(c, &audit_draft)?;
            Ok(true)
        })
        .await
    }

    async fn touch_api_key(&self, id: &str, at: i64, from: Option<Vec<u8>>) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| {
            c.execute(
                "UPDATE api_keys SET last_used_at = ?2, last_used_from = COALESCE(?3, last_used_from) WHERE id = ?1",
                params![id, at, from],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn create_user(&self, user: UserRecord, invitation: InvitationRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| users::create(c, &user, &invitation, &audit_draft)).await
    }

    async fn find_user(&self, workspace_id: &str, id: Uuid) -> StoreResult<Option<UserRecord>> {
        self.read_point(|c| users::find(c, workspace_id, id)).await
    }

    async fn find_user_by_email(&self, workspace_id: &str, email_bidx: &[u8]) -> StoreResult<Option<UserRecord>> {
        self.read_point(|c| users::find_by_email(c, workspace_id, email_bidx)).await
    }

    async fn list_users(&self, workspace_id: &str) -> StoreResult<Vec<UserRecord>> {
        let ws = workspace_id.to_string();
        self.read(move |c| users::list(c, &ws)).await
    }

    async fn find_invitation(&self, token_hash: &[u8]) -> StoreResult<Option<InvitationRecord>> {
        self.read_point(|c| users::find_invitation(c, token_hash)).await
    }

    async fn accept_invitation(&self, token_hash: &[u8], password_hash: String, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        let token_hash = token_hash.to_vec();
        self.write(move |c| users::accept_invitation(c, &token_hash, &password_hash, at, &audit_draft))
            .await
    }

    async fn set_user_status(
        &self,
        workspace_id: &str,
        id: Uuid,
        status: UserStatus,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<bool> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::set_status(c, &ws, id, status, at, &audit_draft)).await
    }

    async fn remove_user(&self, workspace_id: &str, id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::remove(c, &ws, id, at, &audit_draft)).await
    }

    async fn change_password(
        &self,
        workspace_id: &str,
        user_id: Uuid,
        password_hash: String,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::change_password(c, &ws, user_id, &password_hash, at, &audit_draft))
            .await
    }

    async fn require_password_changes(&self, workspace_id: &str, at: i64, audit_draft: AuditDraft) -> StoreResult<u64> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::require_password_changes(c, &ws, at, &audit_draft)).await
    }

    async fn update_password_hash(&self, workspace_id: &str, user_id: Uuid, password_hash: String, at: i64) -> StoreResult<()> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::update_password_hash(c, &ws, user_id, &password_hash, at))
            .await
    }

    async fn create_session(&self, session: SessionRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| users::create_session(c, &session, &audit_draft)).await
    }

    async fn find_session(&self, token_hash: &[u8]) -> StoreResult<Option<(SessionRecord, UserRecord)>> {
        self.read_point(|c| users::find_session(c, token_hash)).await
    }

    async fn touch_session(&self, id: Uuid, at: i64) -> StoreResult<()> {
        self.write(move |c| users::touch_session(c, id, at)).await
    }

    async fn list_sessions(&self, workspace_id: &str, user_id: Uuid) -> StoreResult<Vec<SessionRecord>> {
        let ws = workspace_id.to_string();
        self.read(move |c| users::list_sessions(c, &ws, user_id)).await
    }

    async fn end_session(&self, workspace_id: &str, user_id: Uuid, id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::end_session(c, &ws, user_id, id, at, &audit_draft)).await
    }

    async fn verify_session_factor(&self, session_id: Uuid, new_token_hash: Vec<u8>, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| users::verify_session_factor(c, session_id, &new_token_hash, at, &audit_draft))
            .await
    }

    async fn fail_session_factor(&self, session_id: Uuid, limit: i64, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        self.write(move |c| users::fail_session_factor(c, session_id, limit, at, &audit_draft))
            .await
    }

    async fn start_totp(&self, totp: TotpRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| users::start_totp(c, &totp, &audit_draft)).await
    }

    async fn find_totp(&self, workspace_id: &str, user_id: Uuid) -> StoreResult<Option<TotpRecord>> {
        self.read_point(|c| users::find_totp(c, workspace_id, user_id)).await
    }

    async fn confirm_totp(
        &self,
        workspace_id: &str,
        user_id: Uuid,
        step: i64,
        recovery_hashes: Vec<Vec<u8>>,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::confirm_totp(c, &ws, user_id, step, &recovery_hashes, at, &audit_draft))
            .await
    }

    async fn use_totp_step(&self, workspace_id: &str, user_id: Uuid, step: i64) -> StoreResult<bool> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::use_totp_step(c, &ws, user_id, step)).await
    }

    async fn use_recovery_code(&self, workspace_id: &str, user_id: Uuid, code_hash: &[u8], at: i64) -> StoreResult<bool> {
        let (ws, hash) = (workspace_id.to_string(), code_hash.to_vec());
        self.write(move |c| users::use_recovery_code(c, &ws, user_id, &hash, at)).await
    }

    async fn remove_second_factors(&self, workspace_id: &str, user_id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::remove_second_factors(c, &ws, user_id, at, &audit_draft))
            .await
    }

    async fn add_passkey(
        &self,
        passkey: PasskeyRecord,
        recovery_hashes: Option<Vec<Vec<u8>>>,
        limit: usize,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        self.write(move |c| users::add_passkey(c, &passkey, recovery_hashes.as_deref(), limit, &audit_draft))
            .await
    }

    async fn list_passkeys(&self, workspace_id: &str, user_id: Uuid) -> StoreResult<Vec<PasskeyRecord>> {
        self.read_point(|c| users::list_passkeys(c, workspace_id, user_id)).await
    }

    async fn use_passkey(&self, workspace_id: &str, id: Uuid, expected_uses: i64, credential_ct: Vec<u8>, at: i64) -> StoreResult<bool> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::use_passkey(c, &ws, id, expected_uses, &credential_ct, at))
            .await
    }

    async fn remove_passkey(&self, workspace_id: &str, user_id: Uuid, id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::remove_passkey(c, &ws, user_id, id, at, &audit_draft))
            .await
    }

    async fn create_ceremony(&self, ceremony: CeremonyRecord) -> StoreResult<()> {
        self.write(move |c| users::create_ceremony(c, &ceremony)).await
    }

    async fn take_ceremony(&self, id: Uuid, kind: CeremonyKind, at: i64) -> StoreResult<Option<CeremonyRecord>> {
        self.write(move |c| users::take_ceremony(c, id, kind, at)).await
    }

    async fn second_factor_required(&self, workspace_id: &str) -> StoreResult<bool> {
        self.read_point(|c| users::second_factor_required(c, workspace_id)).await
    }

    async fn set_second_factor_required(&self, workspace_id: &str, required: bool, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::set_second_factor_required(c, &ws, required, at, &audit_draft))
            .await
    }

    async fn list_roles(&self, workspace_id: &str) -> StoreResult<Vec<RoleRecord>> {
        self.read_point(|c| users::list_roles(c, workspace_id)).await
    }

    async fn create_role(&self, role: RoleRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| users::create_role(c, &role, &audit_draft)).await
    }

    async fn update_role(
        &self,
        workspace_id: &str,
        name: &str,
        permissions: Vec<String>,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let (ws, name) = (workspace_id.to_string(), name.to_string());
        self.write(move |c| users::update_role(c, &ws, &name, &permissions, at, &audit_draft))
            .await
    }

    async fn delete_role(&self, workspace_id: &str, name: &str, audit_draft: AuditDraft) -> StoreResult<()> {
        let (ws, name) = (workspace_id.to_string(), name.to_string());
        self.write(move |c| users::delete_role(c, &ws, &name, &audit_draft)).await
    }

    async fn set_user_role(
        &self,
        workspace_id: &str,
        user_id: Uuid,
        role: String,
        list_ids: Vec<String>,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::set_user_role(c, &ws, user_id, &role, &list_ids, at, &audit_draft))
            .await
    }

    async fn workspace_allowlist(&self, workspace_id: &str) -> StoreResult<Vec<String>> {
        self.read_point(|c| users::workspace_allowlist(c, workspace_id)).await
    }

    async fn set_allowlist(
        &self,
        workspace_id: &str,
        subject: AllowlistSubject,
        entries: Vec<String>,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<bool> {
        let ws = workspace_id.to_string();
        self.write(move |c| users::set_allowlist(c, &ws, &subject, &entries, at, &audit_draft))
            .await
    }

    async fn sign_in_failures(&self, workspace_id: &str, scope: &str, key: &[u8]) -> StoreResult<Option<SignInFailures>> {
        self.read_point(|c| users::sign_in_failures(c, workspace_id, scope, key)).await
    }

    async fn record_sign_in_failure(
        &self,
        workspace_id: &str,
        scope: &str,
        key: &[u8],
        at: i64,
        window: i64,
    ) -> StoreResult<SignInFailures> {
        let (ws, scope, key) = (workspace_id.to_string(), scope.to_string(), key.to_vec());
        self.write(move |c| users::record_sign_in_failure(c, &ws, &scope, &key, at, window))
            .await
    }

    async fn clear_sign_in_failures(&self, workspace_id: &str, scope: &str, key: &[u8]) -> StoreResult<()> {
        let (ws, scope, key) = (workspace_id.to_string(), scope.to_string(), key.to_vec());
        self.write(move |c| users::clear_sign_in_failures(c, &ws, &scope, &key)).await
    }

    async fn list_attributes(&self, workspace_id: &str) -> StoreResult<Vec<AttributeDef>> {
        let ws = workspace_id.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT name, class FROM attributes WHERE workspace_id = ?1 ORDER BY name")?
                .query_map([ws], |r| {
                    let class: String = r.get(1)?;
                    Ok(AttributeDef {
                        name: r.get(0)?,
                        class: crate::domain::AttributeClass::parse(&class).unwrap_or(crate::domain::AttributeClass::Identifying),
                    })
                })?
                .collect()
        })
        .await
    }

    async fn create_attributes(&self, workspace_id: &str, defs: Vec<AttributeDef>, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        let ws = workspace_id.to_string();
        self.write(move |c| {
            for d in &defs {
                c.execute(
                    "INSERT INTO attributes (workspace_id, name, class, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![ws, d.name, d.class.as_str(), at],
                )
                .map_err(map_err)?;
            }
            audit::append(c, &audit_draft)?;
            Ok(())
        })
        .await
    }

    async fn create_contact(&self, new: NewContact, audit_draft: AuditDraft) -> StoreResult<AuditEvent> {
        self.write(move |c| {
            let event = audit::append(c, &audit_draft)?;
            contacts::insert(c, &new.row).map_err(map_err)?;
            for list_id in &new.list_ids {
                contacts::add_member(c, list_id, new.row.id, new.row.created_at).map_err(map_err)?;
            }
            for mut e in new.consents {
                e.audit_seq = event.seq;
                contacts::insert_consent(c, &e).map_err(map_err)?;
            }
            Ok(event)
        })
        .await
    }

    async fn find_contact(&self, workspace_id: &str, id: Uuid, scope: &ListScope) -> StoreResult<Option<ContactRow>> {
        self.read_point(|c| contacts::find(c, workspace_id, "c.id = ?2", id.as_bytes().to_vec(), scope))
            .await
    }

    async fn find_contact_by_bidx(
        &self,
        workspace_id: &str,
        kind: IdentifierKind,
        bidx: &[u8],
        scope: &ListScope,
    ) -> StoreResult<Option<ContactRow>> {
        let cond = match kind {
            IdentifierKind::Email => "c.email_bidx = ?2",
            IdentifierKind::Phone => "c.phone_bidx = ?2",
        };
        self.read_point(|c| contacts::find(c, workspace_id, cond, bidx.to_vec(), scope))
            .await
    }

    async fn update_contact(&self, row: ContactRow, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| {
            audit::append(c, &audit_draft)?;
            if contacts::update(c, &row).map_err(map_err)? == 0 {
                return Err(StoreError::NotFound("contact"));
            }
            Ok(())
        })
        .await
    }

    async fn delete_contact(&self, workspace_id: &str, id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        let ws = workspace_id.to_string();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE contacts SET deleted_at = ?3, email_bidx = NULL, phone_bidx = NULL, updated_at = ?3
                     WHERE workspace_id = ?1 AND id = ?2 AND deleted_at IS NULL",
                    params![ws, id.as_bytes().to_vec(), at],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound("contact"));
            }
            c.execute(
                "DELETE FROM list_members WHERE list_id IN (SELECT id FROM lists WHERE workspace_id = ?1) AND contact_id = ?2",
                params![ws, id.as_bytes().to_vec()],
            )
            .map_err(map_err)?;
            audit::append(c, &audit_draft)?;
            Ok(())
        })
        .await
    }

    async fn list_contacts(
        &self,
        workspace_id: &str,
        list_id: Option<&str>,
        scope: &ListScope,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<ContactRow>> {
        let (ws, scope, list_id) = (workspace_id.to_string(), scope.clone(), list_id.map(str::to_string));
        self.read(move |c| contacts::page(c, &ws, list_id.as_deref(), &scope, after, limit))
            .await
    }

    async fn append_consent(&self, mut event: ConsentEventRow, suppress: Vec<Vec<u8>>, audit_draft: AuditDraft) -> StoreResult<AuditEvent> {
        self.write(move |c| {
            let live: bool = c
                .query_row(
                    "SELECT 1 FROM contacts WHERE workspace_id = ?1 AND id = ?2 AND deleted_at IS NULL",
                    params![event.workspace_id, event.contact_id.as_bytes().to_vec()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(map_err)?
                .is_some();
            if !live {
                return Err(StoreError::NotFound("contact"));
            }
            let audit_event = audit::append(c, &audit_draft)?;
            event.audit_seq = audit_event.seq;
            contacts::insert_consent(c, &event).map_err(map_err)?;
            for b in &suppress {
                c.execute(
                    "INSERT OR IGNORE INTO suppressions (workspace_id, bidx, reason, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![event.workspace_id, b, event.action, event.recorded_at],
                )
                .map_err(map_err)?;
            }
            Ok(audit_event)
        })
        .await
    }

    async fn list_consents(&self, workspace_id: &str, contact_id: Uuid) -> StoreResult<Vec<ConsentEventRow>> {
        let ws = workspace_id.to_string();
        self.read(move |c| contacts::consents(c, &ws, contact_id)).await
    }

    async fn create_list(&self, list: ListRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO lists (id, workspace_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![list.id, list.workspace_id, list.name, list.created_at],
            )
            .map_err(map_err)?;
            audit::append(c, &audit_draft)?;
            Ok(())
        })
        .await
    }

    async fn list_lists(&self, workspace_id: &str, scope: &ListScope) -> StoreResult<Vec<ListRecord>> {
        let (ws, scope) = (workspace_id.to_string(), scope.clone());
        self.read(move |c| {
            let lists: Vec<ListRecord> = c
                .prepare(&format!(
                    "SELECT {LIST_COLUMNS} FROM lists l WHERE l.workspace_id = ?1 ORDER BY l.name"
                ))?
                .query_map([ws], list_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(lists.into_iter().filter(|l| scope.allows_list(&l.id)).collect())
        })
        .await
    }

    async fn find_list(&self, workspace_id: &str, id_or_name: &str, scope: &ListScope) -> StoreResult<Option<ListRecord>> {
        let (ws, key, scope) = (workspace_id.to_string(), id_or_name.to_string(), scope.clone());
        self.read(move |c| {
            let found = c
                .prepare_cached(&format!("SELECT {LIST_COLUMNS_UNCOUNTED} FROM lists l WHERE l.workspace_id = ?1 AND (l.id = ?2 OR l.name = ?2) ORDER BY l.id = ?2 DESC LIMIT 1"))?
                .query_row(params![ws, key], list_from_row)
                .optional()?;
            Ok(found.filter(|l| scope.allows_list(&l.id)))
        })
        .await
    }

    async fn rename_list(&self, workspace_id: &str, id: &str, name: &str, audit_draft: AuditDraft) -> StoreResult<()> {
        let (ws, id, name) = (workspace_id.to_string(), id.to_string(), name.to_string());
        self.write(move |c| {
            if c.execute(
                "UPDATE lists SET name = ?3 WHERE workspace_id = ?1 AND id = ?2",
                params![ws, id, name],
            )
            .map_err(map_err)?
                == 0
            {
                return Err(StoreError::NotFound("list"));
            }
            audit::append(c, &audit_draft)?;
            Ok(())
        })
        .await
    }

    async fn delete_list(&self, workspace_id: &str, id: &str, audit_draft: AuditDraft) -> StoreResult<()> {
        let (ws, id) = (workspace_id.to_string(), id.to_string());
        self.write(move |c| {
            if c.execute("DELETE FROM lists WHERE workspace_id = ?1 AND id = ?2", params![ws, id])
                .map_err(map_err)?
                == 0
            {
                return Err(StoreError::NotFound("list"));
            }
            c.execute("DELETE FROM list_members WHERE list_id = ?1", [&id]).map_err(map_err)?;
            audit::append(c, &audit_draft)?;
            Ok(())
        })
        .await
    }

    async fn add_list_members(
        &self,
        workspace_id: &str,
        list_id: &str,
        ids: Vec<Uuid>,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<u64> {
        let (ws, list_id) = (workspace_id.to_string(), list_id.to_string());
        self.write(move |c| {
            require_list(c, &ws, &list_id)?;
            let mut added = 0;
            for id in &ids {
                let live = c
                    .query_row(
                        "SELECT 1 FROM contacts WHERE workspace_id = ?1 AND id = ?2 AND deleted_at IS NULL",
                        params![ws, id.as_bytes().to_vec()],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(map_err)?;
                if live.is_none() {
                    return Err(StoreError::NotFound("contact"));
                }
                added += contacts::add_member(c, &list_id, *id, at).map_err(map_err)? as u64;
            }
            audit::append(c, &audit_draft)?;
            Ok(added)
        })
        .await
    }

    async fn remove_list_members(&self, workspace_id: &str, list_id: &str, ids: Vec<Uuid>, audit_draft: AuditDraft) -> StoreResult<u64> {
        let (ws, list_id) = (workspace_id.to_string(), list_id.to_string());
        self.write(move |c| {
            require_list(c, &ws, &list_id)?;
            let mut removed = 0;
            for id in &ids {
                removed += c
                    .execute(
                        "DELETE FROM list_members WHERE list_id = ?1 AND contact_id = ?2",
                        params![list_id, id.as_bytes().to_vec()],
                    )
                    .map_err(map_err)? as u64;
            }
            audit::append(c, &audit_draft)?;
            Ok(removed)
        })
        .await
    }

    async fn begin_import(&self, job: ImportJob, audit_draft: AuditDraft) -> StoreResult<ImportJob> {
        self.write(move |c| imports::begin(c, job, &audit_draft)).await
    }

    async fn prefetch_import_batch(&self, workspace_id: &str, import_id: &str, lookup: &BatchLookup) -> StoreResult<Option<BatchPrefetch>> {
        let (ws, id, lookup) = (workspace_id.to_string(), import_id.to_string(), lookup.clone());
        self.writer
            .read_in_chain(id.clone(), move |c| imports::prefetch(c, &ws, &id, &lookup).map_err(map_err))
            .await
    }

    async fn identifier_filter(
        &self,
        workspace_id: &str,
        import_id: &str,
        new_rows: u64,
    ) -> StoreResult<Option<identifiers::IdentifierFilter>> {
        let (ws, id) = (workspace_id.to_string(), import_id.to_string());
        self.read(move |c| imports::identifier_filter(c, &ws, &id, new_rows)).await
    }

    async fn apply_import_batch(
        &self,
        workspace_id: &str,
        import_id: Option<&str>,
        lookup: BatchLookup,
        prefetched: Option<BatchPrefetch>,
        mut planner: ImportPlanner,
        last_batch: bool,
    ) -> StoreResult<ImportCounts> {
        let (ws, id) = (workspace_id.to_string(), import_id.map(str::to_string));
        match id {
            Some(id) => {
                let recent = self.recent.clone();
                self.writer
                    .write_chained(id.clone(), last_batch, move |c| {
                        let result = imports::apply_batch(c, &ws, &id, lookup, prefetched, planner, &recent);
                        (result.is_ok(), result)
                    })
                    .await
            }
            None => self
                .read(move |c| {
                    let found = imports::look_up(c, &ws, &lookup)?;
                    Ok(planner.plan(found).map(|w| w.counts))
                })
                .await?
                .map_err(StoreError::Backend),
        }
    }

    async fn finish_import(
        &self,
        workspace_id: &str,
        import_id: &str,
        status: ImportStatus,
        error: Option<String>,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<ImportJob> {
        let (ws, id) = (workspace_id.to_string(), import_id.to_string());
        self.write(move |c| {
            let changed = c
                .execute(
                    "UPDATE imports SET status = ?3, error = ?4, finished_at = ?5 WHERE workspace_id = ?1 AND id = ?2 AND status = 'running'",
                    params![ws, id, status.as_str(), error, at],
                )
                .map_err(map_err)?;
            if changed == 0 {
                imports::find(c, &ws, &id).map_err(map_err)?.ok_or(StoreError::NotFound("import"))?;
                return Err(StoreError::Ended("import"));
            }
            audit::append(c, &audit_draft)?;
            imports::find(c, &ws, &id).map_err(map_err)?.ok_or(StoreError::NotFound("import"))
        })
        .await
    }

    async fn find_import(&self, workspace_id: &str, id: &str) -> StoreResult<Option<ImportJob>> {
        let (ws, id) = (workspace_id.to_string(), id.to_string());
        self.read(move |c| imports::find(c, &ws, &id)).await
    }

    async fn list_import_rejections(&self, workspace_id: &str, id: &str, limit: u32) -> StoreResult<Vec<ImportRejection>> {
        let (ws, id) = (workspace_id.to_string(), id.to_string());
        self.read(move |c| {
            c.prepare(
                "SELECT r.row_number, r.column_name, r.reason FROM import_rejections r JOIN imports i ON i.id = r.import_id
                 WHERE i.workspace_id = ?1 AND r.import_id = ?2 ORDER BY r.row_number, r.column_name LIMIT ?3",
            )?
            .query_map(params![ws, id, limit], |r| {
                Ok(ImportRejection {
                    row: r.get::<_, i64>(0)? as u64,
                    column: r.get(1)?,
                    reason: r.get(2)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn create_export(&self, record: ExportRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        self.write(move |c| {
            audit::append(c, &audit_draft)?;
            c.execute(
                "INSERT INTO exports (id, workspace_id, actor, purpose, list_id, format, row_count, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![record.id, record.workspace_id, record.actor, record.purpose, record.list_id, record.format, record.row_count as i64, record.created_at],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn find_export(&self, workspace_id: &str, id: &str) -> StoreResult<Option<ExportRecord>> {
        let (ws, id) = (workspace_id.to_string(), id.to_string());
        self.read(move |c| {
            c.query_row(
                "SELECT id, workspace_id, actor, purpose, list_id, format, row_count, created_at FROM exports WHERE workspace_id = ?1 AND id = ?2",
                params![ws, id],
                |r| {
                    Ok(ExportRecord {
                        id: r.get(0)?,
                        workspace_id: r.get(1)?,
                        actor: r.get(2)?,
                        purpose: r.get(3)?,
                        list_id: r.get(4)?,
                        format: r.get(5)?,
                        row_count: r.get::<_, i64>(6)? as u64,
                        created_at: r.get(7)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn record_audit(&self, audit_draft: AuditDraft) -> StoreResult<AuditEvent> {
        self.write(move |c| audit::append(c, &audit_draft)).await
    }

    async fn list_audit(&self, workspace_id: &str, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let ws = workspace_id.to_string();
        self.read(move |c| audit::list(c, &ws, after_seq, limit)).await
    }

    async fn find_audit(&self, workspace_id: &str, seqs: Vec<i64>) -> StoreResult<Vec<AuditEvent>> {
        let ws = workspace_id.to_string();
        self.read(move |c| audit::find(c, &ws, &seqs)).await
    }

    async fn audit_head(&self, workspace_id: &str) -> StoreResult<Option<AuditEvent>> {
        let ws = workspace_id.to_string();
        self.read(move |c| audit::head(c, &ws)).await
    }

    async fn recent_audit(&self, workspace_id: &str, actions: Vec<String>, since: i64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let ws = workspace_id.to_string();
        self.read(move |c| audit::recent(c, &ws, &actions, since, limit)).await
    }

    async fn insert_checkpoint(&self, cp: Checkpoint) -> StoreResult<()> {
        self.write(move |c| {
            let sig = hex::decode(&cp.signature).map_err(|e| StoreError::Backend(e.into()))?;
            let inserted = c
                .execute(
                    "INSERT OR IGNORE INTO audit_checkpoints (workspace_id, seq, hash, at, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![cp.workspace_id, cp.seq, cp.hash, cp.at, sig],
                )
                .map_err(map_err)?;
            if inserted == 0 {
                let existing: String = c
                    .query_row(
                        "SELECT hash FROM audit_checkpoints WHERE workspace_id = ?1 AND seq = ?2",
                        params![cp.workspace_id, cp.seq],
                        |r| r.get(0),
                    )
                    .map_err(map_err)?;
                checkpoint_matches(&cp, &existing)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_checkpoints(&self, workspace_id: &str) -> StoreResult<Vec<Checkpoint>> {
        let ws = workspace_id.to_string();
        self.read(move |c| audit::checkpoints(c, &ws)).await
    }
}
