//! The PostgreSQL backend (scale): tokio-postgres over a deadpool pool, for one or
//! several `consentry serve` processes sharing one database. Every write is one
//! transaction with its audit row inside; the audit chain of a workspace is
//! ordered by a transaction-scoped advisory lock (`audit.rs`), migrations by
//! another. Per-dialect SQL stays in this folder; the file names match `sqlite/`.

mod audit;
mod contacts;
mod imports;
pub mod tls;
pub mod transfer;
mod users;

use super::*;
use crate::audit::{AuditDraft, AuditEvent, Checkpoint};
use anyhow::Context;
use deadpool_postgres::{ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/postgres/0001_vault.sql")),
    (2, include_str!("../../../migrations/postgres/0002_users.sql")),
    (3, include_str!("../../../migrations/postgres/0003_sessions.sql")),
    (4, include_str!("../../../migrations/postgres/0004_second_factors.sql")),
    (5, include_str!("../../../migrations/postgres/0005_sign_in_throttle.sql")),
    (6, include_str!("../../../migrations/postgres/0006_required_second_factor.sql")),
    (7, include_str!("../../../migrations/postgres/0007_allowlists.sql")),
    (8, include_str!("../../../migrations/postgres/0008_password_reset.sql")),
    (9, include_str!("../../../migrations/postgres/0009_custom_roles.sql")),
    (10, include_str!("../../../migrations/postgres/0010_key_last_address.sql")),
    (11, include_str!("../../../migrations/postgres/0011_passkeys.sql")),
    (12, include_str!("../../../migrations/postgres/0012_lean_contacts.sql")),
];
/// Advisory lock key under which migrations run, so servers starting together do
/// not race.
const MIGRATION_LOCK: i64 = 0x636f_6e73_656e_7472;
/// Advisory lock key of first-start set-up.
const BOOTSTRAP_LOCK: i64 = 0x636f_6e73_656e_7473;

/// See `PostgresStore::bootstrap_lock`.
pub struct BootstrapLock {
    client: Option<deadpool_postgres::Object>,
}

impl Drop for BootstrapLock {
    fn drop(&mut self) {
        // The lock belongs to the session: closing the connection (instead of
        // returning it to the pool) releases it.
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// Default pool size per server process.
pub const DEFAULT_POOL_SIZE: usize = crate::config::DEFAULT_DATABASE_POOL_SIZE;

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// One connection of its own for the session lock of `bootstrap_lock`, so
    /// that holding it never takes a connection the work under it needs.
    lock_pool: Pool,
    /// Audit events of reads, group-committed by `group_commit_audit`.
    audit_queue: tokio::sync::mpsc::UnboundedSender<QueuedAudit>,
    /// Set when the URL's TLS setting leaves a gap (see `tls.rs`).
    tls_warning: Option<&'static str>,
    tls_mode: tls::TlsMode,
    /// The latest batch of each import in progress here (see `imports.rs`).
    /// Import batches this server wrote lately, for batches looked up ahead of their turn.
    recent: crate::store::recent::RecentWrites,
}

type QueuedAudit = (AuditDraft, tokio::sync::oneshot::Sender<StoreResult<AuditEvent>>);

/// Most audit events committed together.
const MAX_AUDIT_GROUP: usize = 512;

/// Commits the audit events of reads in groups: every event waiting when a commit
/// starts shares its transaction and its fsync, and each caller hears back only
/// after the commit. A failure fails every event of the group (fail-closed).
async fn group_commit_audit(pool: Pool, mut rx: tokio::sync::mpsc::UnboundedReceiver<QueuedAudit>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_AUDIT_GROUP {
            match rx.try_recv() {
                Ok(q) => group.push(q),
                Err(_) => break,
            }
        }
        let outcome: Result<Vec<AuditEvent>, String> = async {
            let c = pool
                .get()
                .await
                .map_err(|e| format!("failed to get a PostgreSQL connection: {e}"))?;
            let drafts: Vec<&AuditDraft> = group.iter().map(|(d, _)| d).collect();
            audit::commit_group(&c, &drafts).await.map_err(|e| format!("{e:#}"))
        }
        .await;
        match outcome {
            Ok(events) => {
                for ((_, reply), event) in group.into_iter().zip(events) {
                    let _ = reply.send(Ok(event));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit group commit failed");
                for (_, reply) in group {
                    let _ = reply.send(Err(StoreError::AuditUnavailable(anyhow::anyhow!(
                        "failed to append an audit event: {e}"
                    ))));
                }
            }
        }
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`), applies the migrations
    /// under an advisory lock and returns the store.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, DEFAULT_POOL_SIZE).await
    }

    pub async fn connect_with(url: &str, pool_size: usize) -> anyhow::Result<Self> {
        let target = tls::Target::parse(url)?;
        let manager = target.manager(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        })?;
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .context("failed to build the PostgreSQL connection pool")?;
        let lock_pool = Pool::builder(target.manager(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        })?)
        .max_size(1)
        .build()
        .context("failed to build the PostgreSQL connection pool")?;
        let (audit_queue, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(group_commit_audit(pool.clone(), rx));
        let store = PostgresStore {
            pool,
            lock_pool,
            audit_queue,
            tls_warning: target.warning(),
            tls_mode: target.mode,
            recent: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations; returns the schema version.
    pub async fn migrate(&self) -> anyhow::Result<i64> {
        let mut client = self.pool.get().await.context("failed to connect to PostgreSQL")?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute("SET LOCAL client_min_messages = warning").await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .await?;
        let mut version = 0;
        for (v, sql) in MIGRATIONS {
            let done = tx
                .query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[v])
                .await?
                .is_some();
            if !done {
                tx.batch_execute(sql).await.with_context(|| format!("migration {v} failed"))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[v, &now_micros()],
                )
                .await?;
            }
            version = *v;
        }
        tx.commit().await.context("failed to commit the migrations")?;
        Ok(version)
    }

    /// How this server's connections reach PostgreSQL, as the server sees it:
    /// "TLSv1.3 (sslmode=verify-full)" or "unencrypted".
    pub async fn transport(&self) -> anyhow::Result<String> {
        let client = self.pool.get().await.context("failed to connect to PostgreSQL")?;
        let row = client
            .query_opt("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl", &[])
            .await?;
        Ok(match row {
            Some(r) => format!("{} ({})", r.get::<_, String>(0), self.tls_mode.describe()),
            None => "unencrypted".to_string(),
        })
    }

    /// Holds a database-wide lock for first-start set-up (creating the first
    /// workspace and owner key), so that servers starting together on an empty
    /// database set it up once. Released when the guard is dropped.
    pub async fn bootstrap_lock(&self) -> anyhow::Result<BootstrapLock> {
        let client = self.lock_pool.get().await.context("failed to connect to PostgreSQL")?;
        client.execute("SELECT pg_advisory_lock($1)", &[&BOOTSTRAP_LOCK]).await?;
        Ok(BootstrapLock { client: Some(client) })
    }

    /// Server settings that weaken durability (fsync, synchronous_commit,
    /// full_page_writes off) and a connection that is encrypted but not
    /// authenticated, one message each.
    pub async fn durability_warnings(&self) -> anyhow::Result<Vec<String>> {
        let client = self.pool.get().await?;
        let mut out: Vec<String> = self.tls_warning.iter().map(|w| w.to_string()).collect();
        for (name, wanted) in [("fsync", "on"), ("synchronous_commit", "on"), ("full_page_writes", "on")] {
            let value: String = client.query_one(&format!("SHOW {name}"), &[]).await?.get(0);
            if value != wanted {
                out.push(format!(
                    "PostgreSQL setting {name} is {value}; set it to {wanted}, or an acknowledged write can be lost in a crash"
                ));
            }
        }
        Ok(out)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Backend(anyhow::Error::new(e).context("failed to get a PostgreSQL connection")))
    }
}

async fn insert_api_key<C: tokio_postgres::GenericClient>(c: &C, key: &ApiKeyRecord) -> StoreResult<()> {
    c.execute(
        &format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
        &[
            &key.id,
            &key.workspace_id,
            &key.name,
            &key.secret_hash,
            &serde_json::to_string(&key.scopes).unwrap_or_default(),
            &serde_json::to_string(&key.list_ids).unwrap_or_default(),
            &key.created_by,
            &key.created_at,
            &key.expires_at,
            &key.revoked_at,
            &key.last_used_at,
            &serde_json::to_string(&key.allowlist).unwrap_or_else(|_| "[]".into()),
            &key.last_used_from,
        ],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Maps a PostgreSQL error, turning unique violations into conflicts.
pub(crate) fn map_err(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        let constraint = e.as_db_error().and_then(|d| d.constraint()).unwrap_or_default().to_string();
        let field = match constraint.as_str() {
            "contacts_email" | "users_email" => "email",
            "contacts_phone" => "phone",
            "lists_workspace_name" => "list name",
            "attributes_pkey" => "attribute",
            "user_passkeys_credential" => "passkey",
            _ => "record",
        };
        return StoreError::Conflict { field };
    }
    StoreError::Backend(anyhow::Error::new(e))
}

fn list_from_row(r: &tokio_postgres::Row) -> ListRecord {
    ListRecord {
        id: r.get(0),
        workspace_id: r.get(1),
        name: r.get(2),
        created_at: r.get(3),
        member_count: r.get::<_, Option<i64>>(4).map(|n| n.max(0) as u64),
    }
}

const LIST_COLUMNS: &str = "l.id, l.workspace_id, l.name, l.created_at, (SELECT COUNT(*) FROM list_members m JOIN contacts c ON c.id = m.contact_id AND c.deleted_at IS NULL WHERE m.list_id = l.id)";
const LIST_COLUMNS_UNCOUNTED: &str = "l.id, l.workspace_id, l.name, l.created_at, NULL::int8";

fn api_key_from_row(r: &tokio_postgres::Row) -> ApiKeyRecord {
    let scopes: String = r.get(4);
    let lists: String = r.get(5);
    ApiKeyRecord {
        id: r.get(0),
        workspace_id: r.get(1),
        name: r.get(2),
        secret_hash: r.get(3),
        scopes: stored_strings(&scopes, "api key scopes"),
        list_ids: stored_strings(&lists, "api key lists"),
        created_by: r.get(6),
        created_at: r.get(7),
        expires_at: r.get(8),
        revoked_at: r.get(9),
        last_used_at: r.get(10),
        allowlist: stored_strings(r.get::<_, &str>(11), "api key allowlist"),
        last_used_from: r.get(12),
    }
}

const API_KEY_COLUMNS: &str =
    "id, workspace_id, name, secret_hash, scopes, list_ids, created_by, created_at, expires_at, revoked_at, last_used_at, allowlist, last_used_from";

/// Opens a transaction on a pooled connection: `let mut c = ...; let tx = begin!(c);`.
macro_rules! begin {
    ($client:ident) => {
        $client.transaction().await.map_err(map_err)?
    };
}

/// Rows of an import at its first refresh of the planner's statistics; the next
/// come each time the import has doubled its rows since (200,000, 400,000, ...):
/// plans change with the tables' order of magnitude, while an `ANALYZE` of tables
/// of millions of rows costs the import seconds each time.
const ANALYZE_FIRST_ROWS: u64 = 100_000;

/// Whether an import that went from `before` to `after` rows crossed a refresh
/// point of the planner's statistics (see `ANALYZE_FIRST_ROWS`).
fn crosses_analyze_point(before: u64, after: u64) -> bool {
    let step = |rows: u64| {
        if rows < ANALYZE_FIRST_ROWS {
            0
        } else {
            64 - (rows / ANALYZE_FIRST_ROWS).leading_zeros()
        }
    };
    step(before) != step(after)
}

/// Refreshes the planner's statistics of the tables imports grow (best effort).
async fn refresh_statistics(c: &tokio_postgres::Client) {
    if let Err(e) = c.batch_execute("ANALYZE contacts, list_members, consent_events").await {
        tracing::warn!(error = %e, "failed to refresh the planner's statistics");
    }
}

/// Serialises, per workspace, the transactions that give contacts identifiers
/// (import batches, creates, updates): on one server the single SQLite writer
/// does this; here several servers would otherwise both find an address missing
/// and both insert it, and one batch would fail on the unique index.
async fn lock_identifiers<C: tokio_postgres::GenericClient>(c: &C, workspace_id: &str) -> StoreResult<()> {
    c.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 4414))", &[&workspace_id])
        .await
        .map_err(map_err)?;
    Ok(())
}

/// `NotFound` unless the workspace has this list.
async fn require_list<C: tokio_postgres::GenericClient>(c: &C, workspace_id: &str, list_id: &str) -> StoreResult<()> {
    c.query_opt(
        "SELECT 1 FROM lists WHERE workspace_id = $1 AND id = $2",
        &[&workspace_id, &list_id],
    )
    .await
    .map_err(map_err)?
    .map(|_| ())
    .ok_or(StoreError::NotFound("list"))
}

fn live_contact_sql() -> &'static str {
    "SELECT 1 FROM contacts WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL"
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.client().await?.execute("SELECT 1", &[]).await.map_err(map_err)?;
        Ok(())
    }

    async fn create_workspace(&self, ws: NewWorkspace, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        tx.execute(
            "INSERT INTO workspaces (id, name, created_at, audit_public_key) VALUES ($1, $2, $3, $4)",
            &[&ws.id, &ws.name, &ws.created_at, &ws.audit_public_key],
        )
        .await
        .map_err(map_err)?;
        for k in &ws.keys {
            tx.execute(
                "INSERT INTO workspace_keys (workspace_id, purpose, version, wrapped, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&ws.id, &k.purpose, &i64::from(k.version), &k.wrapped, &ws.created_at],
            )
            .await
            .map_err(map_err)?;
        }
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn list_workspaces(&self) -> StoreResult<Vec<WorkspaceRecord>> {
        let c = self.client().await?;
        let mut out: Vec<WorkspaceRecord> = c
            .query(
                "SELECT id, name, created_at, audit_public_key FROM workspaces ORDER BY created_at, id",
                &[],
            )
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| WorkspaceRecord {
                id: r.get(0),
                name: r.get(1),
                created_at: r.get(2),
                audit_public_key: r.get(3),
                keys: vec![],
            })
            .collect();
        for ws in &mut out {
            ws.keys = c
                .query(
                    "SELECT purpose, version, wrapped FROM workspace_keys WHERE workspace_id = $1 ORDER BY purpose, version",
                    &[&ws.id],
                )
                .await
                .map_err(map_err)?
                .iter()
                .map(|r| crate::crypto::WrappedKey {
                    purpose: r.get(0),
                    version: u32::try_from(r.get::<_, i64>(1)).unwrap_or(u32::MAX),
                    wrapped: r.get(2),
                })
                .collect();
        }
        Ok(out)
    }

    async fn create_api_key(&self, key: ApiKeyRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        insert_api_key(&*tx, &key).await?;
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn rotate_api_key(
        &self,
        workspace_id: &str,
        old_id: &str,
        new_key: ApiKeyRecord,
        old_expires_at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let n = tx
            .execute(
                "UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $3), $3)
                 WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4)",
                &[&workspace_id, &old_id, &old_expires_at, &new_key.created_at],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Err(StoreError::NotFound("api key"));
        }
        insert_api_key(&*tx, &new_key).await?;
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn rotate_api_keys(
        &self,
        workspace_id: &str,
        rotations: Vec<(String, ApiKeyRecord)>,
        old_expires_at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        for (old_id, new_key) in &rotations {
            let n = tx
                .execute(
                    "UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $3), $3)
                     WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4)",
                    &[&workspace_id, old_id, &old_expires_at, &new_key.created_at],
                )
                .await
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound("api key"));
            }
            insert_api_key(&*tx, new_key).await?;
        }
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn find_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .await
            .map_err(map_err)?;
        Ok(c.query_opt(&stmt, &[&id]).await.map_err(map_err)?.as_ref().map(api_key_from_row))
    }

    async fn find_api_key_with_allowlist(&self, id: &str) -> StoreResult<Option<(ApiKeyRecord, Vec<String>)>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS}, (SELECT w.allowlist FROM workspace_security w WHERE w.workspace_id = api_keys.workspace_id) FROM api_keys WHERE id = $1"
            ))
            .await
            .map_err(map_err)?;
        Ok(c.query_opt(&stmt, &[&id]).await.map_err(map_err)?.map(|r| {
            let workspace = r
                .get::<_, Option<&str>>(13)
                .map(|raw| stored_strings(raw, "workspace allowlist"))
                .unwrap_or_default();
            (api_key_from_row(&r), workspace)
        }))
    }

    async fn list_api_keys(&self, workspace_id: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        let c = self.client().await?;
        Ok(c.query(
            &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id"),
            &[&workspace_id],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(api_key_from_row)
        .collect())
    }

    async fn revoke_api_key(&self, workspace_id: &str, id: &str, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let n = tx
            .execute(
                "UPDATE api_keys SET revoked_at = $3 WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL",
                &[&workspace_id, &id, &at],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            let exists = tx
                .query_opt("SELECT 1 FROM api_keys WHERE workspace_id = $1 AND id = $2", &[&workspace_id, &id])
                .await
                .map_err(map_err)?;
            return exists.map(|_| false).ok_or(StoreError::NotFound("api key"));
        }
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn touch_api_key(&self, id: &str, at: i64, from: Option<Vec<u8>>) -> StoreResult<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, $2), $2),
                 last_used_from = CASE WHEN $3::bytea IS NOT NULL AND $2 >= COALESCE(last_used_at, $2) THEN $3 ELSE last_used_from END
             WHERE id = $1",
            &[&id, &at, &from],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn create_user(&self, user: UserRecord, invitation: InvitationRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::create(&*tx, &user, &invitation, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn find_user(&self, workspace_id: &str, id: Uuid) -> StoreResult<Option<UserRecord>> {
        users::find(&**self.client().await?, workspace_id, id).await
    }

    async fn find_user_by_email(&self, workspace_id: &str, email_bidx: &[u8]) -> StoreResult<Option<UserRecord>> {
        users::find_by_email(&**self.client().await?, workspace_id, email_bidx).await
    }

    async fn list_users(&self, workspace_id: &str) -> StoreResult<Vec<UserRecord>> {
        users::list(&**self.client().await?, workspace_id).await
    }

    async fn find_invitation(&self, token_hash: &[u8]) -> StoreResult<Option<InvitationRecord>> {
        users::find_invitation(&**self.client().await?, token_hash).await
    }

    async fn accept_invitation(&self, token_hash: &[u8], password_hash: String, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::accept_invitation(&*tx, token_hash, &password_hash, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_user_status(
        &self,
        workspace_id: &str,
        id: Uuid,
        status: UserStatus,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let changed = users::set_status(&*tx, workspace_id, id, status, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(changed)
    }

    async fn remove_user(&self, workspace_id: &str, id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::remove(&*tx, workspace_id, id, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn change_password(
        &self,
        workspace_id: &str,
        user_id: Uuid,
        password_hash: String,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::change_password(&*tx, workspace_id, user_id, &password_hash, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn require_password_changes(&self, workspace_id: &str, at: i64, audit_draft: AuditDraft) -> StoreResult<u64> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let n = users::require_password_changes(&*tx, workspace_id, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(n)
    }

    async fn update_password_hash(&self, workspace_id: &str, user_id: Uuid, password_hash: String, at: i64) -> StoreResult<()> {
        users::update_password_hash(&**self.client().await?, workspace_id, user_id, &password_hash, at).await
    }

    async fn create_session(&self, session: SessionRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::create_session(&*tx, &session, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn find_session(&self, token_hash: &[u8]) -> StoreResult<Option<(SessionRecord, UserRecord)>> {
        users::find_session(&**self.client().await?, token_hash).await
    }

    async fn touch_session(&self, id: Uuid, at: i64) -> StoreResult<()> {
        users::touch_session(&**self.client().await?, id, at).await
    }

    async fn list_sessions(&self, workspace_id: &str, user_id: Uuid) -> StoreResult<Vec<SessionRecord>> {
        users::list_sessions(&**self.client().await?, workspace_id, user_id).await
    }

    async fn end_session(&self, workspace_id: &str, user_id: Uuid, id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let ended = users::end_session(&*tx, workspace_id, user_id, id, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(ended)
    }

    async fn verify_session_factor(&self, session_id: Uuid, new_token_hash: Vec<u8>, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::verify_session_factor(&*tx, session_id, &new_token_hash, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn fail_session_factor(&self, session_id: Uuid, limit: i64, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let ended = users::fail_session_factor(&*tx, session_id, limit, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(ended)
    }

    async fn start_totp(&self, totp: TotpRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::start_totp(&*tx, &totp, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn find_totp(&self, workspace_id: &str, user_id: Uuid) -> StoreResult<Option<TotpRecord>> {
        users::find_totp(&**self.client().await?, workspace_id, user_id).await
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
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::confirm_totp(&*tx, workspace_id, user_id, step, &recovery_hashes, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn use_totp_step(&self, workspace_id: &str, user_id: Uuid, step: i64) -> StoreResult<bool> {
        users::use_totp_step(&**self.client().await?, workspace_id, user_id, step).await
    }

    async fn use_recovery_code(&self, workspace_id: &str, user_id: Uuid, code_hash: &[u8], at: i64) -> StoreResult<bool> {
        users::use_recovery_code(&**self.client().await?, workspace_id, user_id, code_hash, at).await
    }

    async fn remove_second_factors(&self, workspace_id: &str, user_id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let removed = users::remove_second_factors(&*tx, workspace_id, user_id, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(removed)
    }

    async fn add_passkey(
        &self,
        passkey: PasskeyRecord,
        recovery_hashes: Option<Vec<Vec<u8>>>,
        limit: usize,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::add_passkey(&*tx, &passkey, recovery_hashes.as_deref(), limit, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn list_passkeys(&self, workspace_id: &str, user_id: Uuid) -> StoreResult<Vec<PasskeyRecord>> {
        users::list_passkeys(&**self.client().await?, workspace_id, user_id).await
    }

    async fn use_passkey(&self, workspace_id: &str, id: Uuid, expected_uses: i64, credential_ct: Vec<u8>, at: i64) -> StoreResult<bool> {
        users::use_passkey(&**self.client().await?, workspace_id, id, expected_uses, &credential_ct, at).await
    }

    async fn remove_passkey(&self, workspace_id: &str, user_id: Uuid, id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let removed = users::remove_passkey(&*tx, workspace_id, user_id, id, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(removed)
    }

    async fn create_ceremony(&self, ceremony: CeremonyRecord) -> StoreResult<()> {
        users::create_ceremony(&**self.client().await?, &ceremony).await
    }

    async fn take_ceremony(&self, id: Uuid, kind: CeremonyKind, at: i64) -> StoreResult<Option<CeremonyRecord>> {
        users::take_ceremony(&**self.client().await?, id, kind, at).await
    }

    async fn second_factor_required(&self, workspace_id: &str) -> StoreResult<bool> {
        users::second_factor_required(&**self.client().await?, workspace_id).await
    }

    async fn set_second_factor_required(&self, workspace_id: &str, required: bool, at: i64, audit_draft: AuditDraft) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let changed = users::set_second_factor_required(&*tx, workspace_id, required, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(changed)
    }

    async fn list_roles(&self, workspace_id: &str) -> StoreResult<Vec<RoleRecord>> {
        users::list_roles(&**self.client().await?, workspace_id).await
    }

    async fn create_role(&self, role: RoleRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::create_role(&*tx, &role, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn update_role(
        &self,
        workspace_id: &str,
        name: &str,
        permissions: Vec<String>,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::update_role(&*tx, workspace_id, name, &permissions, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn delete_role(&self, workspace_id: &str, name: &str, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::delete_role(&*tx, workspace_id, name, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
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
        let mut c = self.client().await?;
        let tx = begin!(c);
        users::set_user_role(&*tx, workspace_id, user_id, &role, &list_ids, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn workspace_allowlist(&self, workspace_id: &str) -> StoreResult<Vec<String>> {
        // Read for every session request: a statement prepared once per connection.
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("SELECT allowlist FROM workspace_security WHERE workspace_id = $1")
            .await
            .map_err(map_err)?;
        let raw: Option<String> = c
            .query_opt(&stmt, &[&workspace_id])
            .await
            .map_err(map_err)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(map_err)?;
        Ok(raw.map(|r| stored_strings(&r, "workspace allowlist")).unwrap_or_default())
    }

    async fn set_allowlist(
        &self,
        workspace_id: &str,
        subject: AllowlistSubject,
        entries: Vec<String>,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let changed = users::set_allowlist(&*tx, workspace_id, &subject, &entries, at, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(changed)
    }

    async fn sign_in_failures(&self, workspace_id: &str, scope: &str, key: &[u8]) -> StoreResult<Option<SignInFailures>> {
        users::sign_in_failures(&**self.client().await?, workspace_id, scope, key).await
    }

    async fn record_sign_in_failure(
        &self,
        workspace_id: &str,
        scope: &str,
        key: &[u8],
        at: i64,
        window: i64,
    ) -> StoreResult<SignInFailures> {
        users::record_sign_in_failure(&**self.client().await?, workspace_id, scope, key, at, window).await
    }

    async fn clear_sign_in_failures(&self, workspace_id: &str, scope: &str, key: &[u8]) -> StoreResult<()> {
        users::clear_sign_in_failures(&**self.client().await?, workspace_id, scope, key).await
    }

    async fn list_attributes(&self, workspace_id: &str) -> StoreResult<Vec<AttributeDef>> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT name, class FROM attributes WHERE workspace_id = $1 ORDER BY name",
            &[&workspace_id],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| AttributeDef {
            name: r.get(0),
            class: crate::domain::AttributeClass::parse(r.get::<_, &str>(1)).unwrap_or(crate::domain::AttributeClass::Identifying),
        })
        .collect())
    }

    async fn create_attributes(&self, workspace_id: &str, defs: Vec<AttributeDef>, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        for d in &defs {
            tx.execute(
                "INSERT INTO attributes (workspace_id, name, class, created_at) VALUES ($1, $2, $3, $4)",
                &[&workspace_id, &d.name, &d.class.as_str(), &at],
            )
            .await
            .map_err(map_err)?;
        }
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn create_contact(&self, new: NewContact, audit_draft: AuditDraft) -> StoreResult<AuditEvent> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        lock_identifiers(&*tx, &new.row.workspace_id).await?;
        let event = audit::append(&*tx, &audit_draft).await?;
        contacts::insert_many(&*tx, std::slice::from_ref(&new.row)).await.map_err(map_err)?;
        for list_id in &new.list_ids {
            contacts::add_members(&*tx, list_id, &[new.row.id], new.row.created_at)
                .await
                .map_err(map_err)?;
        }
        let consents: Vec<ConsentEventRow> = new
            .consents
            .into_iter()
            .map(|mut e| {
                e.audit_seq = event.seq;
                e
            })
            .collect();
        contacts::insert_consents(&*tx, &consents).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(event)
    }

    async fn find_contact(&self, workspace_id: &str, id: Uuid, scope: &ListScope) -> StoreResult<Option<ContactRow>> {
        let c = self.client().await?;
        contacts::find(&c, workspace_id, "c.id = $2", id.as_bytes(), scope)
            .await
            .map_err(map_err)
    }

    async fn find_contact_by_bidx(
        &self,
        workspace_id: &str,
        kind: IdentifierKind,
        bidx: &[u8],
        scope: &ListScope,
    ) -> StoreResult<Option<ContactRow>> {
        let cond = match kind {
            IdentifierKind::Email => "c.email_bidx = $2",
            IdentifierKind::Phone => "c.phone_bidx = $2",
        };
        let c = self.client().await?;
        contacts::find(&c, workspace_id, cond, bidx, scope).await.map_err(map_err)
    }

    async fn update_contact(&self, row: ContactRow, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        lock_identifiers(&*tx, &row.workspace_id).await?;
        audit::append(&*tx, &audit_draft).await?;
        if contacts::update(&*tx, &row).await.map_err(map_err)? == 0 {
            return Err(StoreError::NotFound("contact"));
        }
        tx.commit().await.map_err(map_err)
    }

    async fn delete_contact(&self, workspace_id: &str, id: Uuid, at: i64, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let idb = id.as_bytes().as_slice();
        let n = tx
            .execute(
                "UPDATE contacts SET deleted_at = $3, email_bidx = NULL, phone_bidx = NULL, updated_at = $3
                 WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
                &[&workspace_id, &idb, &at],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Err(StoreError::NotFound("contact"));
        }
        tx.execute(
            "DELETE FROM list_members WHERE list_id IN (SELECT id FROM lists WHERE workspace_id = $1) AND contact_id = $2",
            &[&workspace_id, &idb],
        )
        .await
        .map_err(map_err)?;
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn list_contacts(
        &self,
        workspace_id: &str,
        list_id: Option<&str>,
        scope: &ListScope,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<ContactRow>> {
        let c = self.client().await?;
        contacts::page(&**c, workspace_id, list_id, scope, after, limit)
            .await
            .map_err(map_err)
    }

    async fn append_consent(&self, mut event: ConsentEventRow, suppress: Vec<Vec<u8>>, audit_draft: AuditDraft) -> StoreResult<AuditEvent> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let live = tx
            .query_opt(live_contact_sql(), &[&event.workspace_id, &event.contact_id.as_bytes().as_slice()])
            .await
            .map_err(map_err)?
            .is_some();
        if !live {
            return Err(StoreError::NotFound("contact"));
        }
        let audit_event = audit::append(&*tx, &audit_draft).await?;
        event.audit_seq = audit_event.seq;
        contacts::insert_consents(&*tx, std::slice::from_ref(&event))
            .await
            .map_err(map_err)?;
        for b in &suppress {
            tx.execute(
                "INSERT INTO suppressions (workspace_id, bidx, reason, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&event.workspace_id, b, &event.action, &event.recorded_at],
            )
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(audit_event)
    }

    async fn list_consents(&self, workspace_id: &str, contact_id: Uuid) -> StoreResult<Vec<ConsentEventRow>> {
        let c = self.client().await?;
        contacts::consents(&**c, workspace_id, contact_id).await.map_err(map_err)
    }

    async fn create_list(&self, list: ListRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        tx.execute(
            "INSERT INTO lists (id, workspace_id, name, created_at) VALUES ($1, $2, $3, $4)",
            &[&list.id, &list.workspace_id, &list.name, &list.created_at],
        )
        .await
        .map_err(map_err)?;
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn list_lists(&self, workspace_id: &str, scope: &ListScope) -> StoreResult<Vec<ListRecord>> {
        let c = self.client().await?;
        let lists: Vec<ListRecord> = c
            .query(
                &format!("SELECT {LIST_COLUMNS} FROM lists l WHERE l.workspace_id = $1 ORDER BY l.name"),
                &[&workspace_id],
            )
            .await
            .map_err(map_err)?
            .iter()
            .map(list_from_row)
            .collect();
        Ok(lists.into_iter().filter(|l| scope.allows_list(&l.id)).collect())
    }

    async fn find_list(&self, workspace_id: &str, id_or_name: &str, scope: &ListScope) -> StoreResult<Option<ListRecord>> {
        let c = self.client().await?;
        let found = c
            .query_opt(
                &format!(
                    "SELECT {LIST_COLUMNS_UNCOUNTED} FROM lists l WHERE l.workspace_id = $1 AND (l.id = $2 OR l.name = $2) ORDER BY (l.id = $2) DESC LIMIT 1"
                ),
                &[&workspace_id, &id_or_name],
            )
            .await
            .map_err(map_err)?
            .as_ref()
            .map(list_from_row);
        Ok(found.filter(|l| scope.allows_list(&l.id)))
    }

    async fn rename_list(&self, workspace_id: &str, id: &str, name: &str, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let n = tx
            .execute(
                "UPDATE lists SET name = $3 WHERE workspace_id = $1 AND id = $2",
                &[&workspace_id, &id, &name],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Err(StoreError::NotFound("list"));
        }
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn delete_list(&self, workspace_id: &str, id: &str, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let n = tx
            .execute("DELETE FROM lists WHERE workspace_id = $1 AND id = $2", &[&workspace_id, &id])
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Err(StoreError::NotFound("list"));
        }
        tx.execute("DELETE FROM list_members WHERE list_id = $1", &[&id])
            .await
            .map_err(map_err)?;
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn add_list_members(
        &self,
        workspace_id: &str,
        list_id: &str,
        ids: Vec<Uuid>,
        at: i64,
        audit_draft: AuditDraft,
    ) -> StoreResult<u64> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        require_list(&*tx, workspace_id, list_id).await?;
        for id in &ids {
            let live = tx
                .query_opt(live_contact_sql(), &[&workspace_id, &id.as_bytes().as_slice()])
                .await
                .map_err(map_err)?;
            if live.is_none() {
                return Err(StoreError::NotFound("contact"));
            }
        }
        let added = contacts::add_members(&*tx, list_id, &ids, at).await.map_err(map_err)?;
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(added)
    }

    async fn remove_list_members(&self, workspace_id: &str, list_id: &str, ids: Vec<Uuid>, audit_draft: AuditDraft) -> StoreResult<u64> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        require_list(&*tx, workspace_id, list_id).await?;
        let bytes: Vec<&[u8]> = ids.iter().map(|u| u.as_bytes().as_slice()).collect();
        let removed = tx
            .execute(
                "DELETE FROM list_members WHERE list_id = $1 AND contact_id = ANY($2)",
                &[&list_id, &bytes],
            )
            .await
            .map_err(map_err)?;
        audit::append(&*tx, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(removed)
    }

    async fn begin_import(&self, job: ImportJob, audit_draft: AuditDraft) -> StoreResult<ImportJob> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        let job = imports::begin(&*tx, job, &audit_draft).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(job)
    }

    async fn identifier_filter(
        &self,
        workspace_id: &str,
        import_id: &str,
        new_rows: u64,
    ) -> StoreResult<Option<identifiers::IdentifierFilter>> {
        let mut c = self.client().await?;
        imports::identifier_filter(&mut c, workspace_id, import_id, new_rows)
            .await
            .map_err(map_err)
    }

    async fn prefetch_import_batch(&self, workspace_id: &str, import_id: &str, lookup: &BatchLookup) -> StoreResult<Option<BatchPrefetch>> {
        let mut c = self.client().await?;
        imports::prefetch(&mut c, workspace_id, import_id, lookup).await.map_err(map_err)
    }

    async fn apply_import_batch(
        &self,
        workspace_id: &str,
        import_id: Option<&str>,
        lookup: BatchLookup,
        prefetched: Option<BatchPrefetch>,
        mut planner: ImportPlanner,
        _last_batch: bool,
    ) -> StoreResult<ImportCounts> {
        let mut c = self.client().await?;
        match import_id {
            Some(id) => {
                let tx = begin!(c);
                lock_identifiers(&*tx, workspace_id).await?;
                let (counts, before, after) =
                    imports::apply_batch(&tx, workspace_id, id, lookup, prefetched, planner, &self.recent).await?;
                tx.commit().await.map_err(map_err)?;
                // A large import changes the tables faster than autovacuum
                // analyses them, and plans made for a small table read all of a
                // large one: refresh the statistics every so often.
                if crosses_analyze_point(before, after) {
                    refresh_statistics(&c).await;
                }
                Ok(counts)
            }
            None => {
                let found = imports::look_up(&**c, workspace_id, &lookup).await.map_err(map_err)?;
                planner.plan(found).map(|w| w.counts).map_err(StoreError::Backend)
            }
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
        let mut c = self.client().await?;
        let tx = begin!(c);
        let changed = tx
            .execute(
                "UPDATE imports SET status = $3, error = $4, finished_at = $5 WHERE workspace_id = $1 AND id = $2 AND status = 'running'",
                &[&workspace_id, &import_id, &status.as_str(), &error, &at],
            )
            .await
            .map_err(map_err)?;
        if changed == 0 {
            imports::find(&*tx, workspace_id, import_id)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("import"))?;
            return Err(StoreError::Ended("import"));
        }
        audit::append(&*tx, &audit_draft).await?;
        let job = imports::find(&*tx, workspace_id, import_id)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound("import"))?;
        tx.commit().await.map_err(map_err)?;
        if job.counts.created + job.counts.updated >= 10_000 {
            refresh_statistics(&c).await;
        }
        Ok(job)
    }

    async fn find_import(&self, workspace_id: &str, id: &str) -> StoreResult<Option<ImportJob>> {
        let c = self.client().await?;
        imports::find(&**c, workspace_id, id).await.map_err(map_err)
    }

    async fn list_import_rejections(&self, workspace_id: &str, id: &str, limit: u32) -> StoreResult<Vec<ImportRejection>> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT r.row_number, r.column_name, r.reason FROM import_rejections r JOIN imports i ON i.id = r.import_id
             WHERE i.workspace_id = $1 AND r.import_id = $2 ORDER BY r.row_number, r.column_name LIMIT $3",
            &[&workspace_id, &id, &i64::from(limit)],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| ImportRejection {
            row: r.get::<_, i64>(0).max(0) as u64,
            column: r.get(1),
            reason: r.get(2),
        })
        .collect())
    }

    async fn create_export(&self, record: ExportRecord, audit_draft: AuditDraft) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin!(c);
        audit::append(&*tx, &audit_draft).await?;
        tx.execute(
            "INSERT INTO exports (id, workspace_id, actor, purpose, list_id, format, row_count, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &record.id,
                &record.workspace_id,
                &record.actor,
                &record.purpose,
                &record.list_id,
                &record.format,
                &(record.row_count as i64),
                &record.created_at,
            ],
        )
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn find_export(&self, workspace_id: &str, id: &str) -> StoreResult<Option<ExportRecord>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT id, workspace_id, actor, purpose, list_id, format, row_count, created_at FROM exports WHERE workspace_id = $1 AND id = $2",
            &[&workspace_id, &id],
        )
        .await
        .map_err(map_err)?
        .map(|r| ExportRecord {
            id: r.get(0),
            workspace_id: r.get(1),
            actor: r.get(2),
            purpose: r.get(3),
            list_id: r.get(4),
            format: r.get(5),
            row_count: r.get::<_, i64>(6).max(0) as u64,
            created_at: r.get(7),
        }))
    }

    async fn record_audit(&self, audit_draft: AuditDraft) -> StoreResult<AuditEvent> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.audit_queue
            .send((audit_draft, reply))
            .map_err(|_| StoreError::AuditUnavailable(anyhow::anyhow!("the audit writer has stopped")))?;
        answer
            .await
            .map_err(|_| StoreError::AuditUnavailable(anyhow::anyhow!("the audit writer stopped before answering")))?
    }

    async fn list_audit(&self, workspace_id: &str, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let c = self.client().await?;
        audit::list(&**c, workspace_id, after_seq, limit).await.map_err(map_err)
    }

    async fn find_audit(&self, workspace_id: &str, seqs: Vec<i64>) -> StoreResult<Vec<AuditEvent>> {
        let c = self.client().await?;
        audit::find(&**c, workspace_id, &seqs).await.map_err(map_err)
    }

    async fn audit_head(&self, workspace_id: &str) -> StoreResult<Option<AuditEvent>> {
        let c = self.client().await?;
        audit::head(&**c, workspace_id).await.map_err(map_err)
    }

    async fn recent_audit(&self, workspace_id: &str, actions: Vec<String>, since: i64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let c = self.client().await?;
        audit::recent(&**c, workspace_id, &actions, since, limit).await.map_err(map_err)
    }

    async fn insert_checkpoint(&self, cp: Checkpoint) -> StoreResult<()> {
        let sig = hex::decode(&cp.signature).map_err(|e| StoreError::Backend(e.into()))?;
        let c = self.client().await?;
        let inserted = c
            .execute(
                "INSERT INTO audit_checkpoints (workspace_id, seq, hash, at, signature) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&cp.workspace_id, &cp.seq, &cp.hash, &cp.at, &sig],
            )
            .await
            .map_err(map_err)?;
        if inserted == 0 {
            // Another server signed the same head first: the same hash is the same
            // checkpoint; another hash means the chain was changed.
            let existing: String = c
                .query_one(
                    "SELECT hash FROM audit_checkpoints WHERE workspace_id = $1 AND seq = $2",
                    &[&cp.workspace_id, &cp.seq],
                )
                .await
                .map_err(map_err)?
                .get(0);
            checkpoint_matches(&cp, &existing)?;
        }
        Ok(())
    }

    async fn list_checkpoints(&self, workspace_id: &str) -> StoreResult<Vec<Checkpoint>> {
        let c = self.client().await?;
        audit::checkpoints(&**c, workspace_id).await.map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use super::crosses_analyze_point;

    #[test]
    fn statistics_are_refreshed_each_time_an_import_doubles() {
        let points: Vec<u64> = (0..10_000u64)
            .map(|b| (b * 2_000, (b + 1) * 2_000))
            .filter(|&(before, after)| crosses_analyze_point(before, after))
            .map(|(_, after)| after)
            .collect();
        assert_eq!(
            points,
            [100_000, 200_000, 400_000, 800_000, 1_600_000, 3_200_000, 6_400_000, 12_800_000]
        );
        assert!(!crosses_analyze_point(0, 99_999));
        assert!(crosses_analyze_point(0, 250_000));
    }
}
