//! Storage-backend conformance suite. Every case runs against every `Store` backend
//! (`store::<case>::sqlite`, `store::<case>::postgres`) through the trait alone, and
//! proves the contract the vault relies on: missing rows and taken names map to the
//! same errors everywhere, contacts page in id order within their scope, the consent
//! ledger is append-only in the database itself, only ciphertext and blind indexes
//! reach the contact columns, every write commits its audit event in the same
//! transaction (and a failed write leaves none), imports resume and commit a batch
//! all or nothing, and list members, API keys and checkpoints round-trip.
//!
//! The PostgreSQL cases need `CONSENTRY_TEST_POSTGRES_URL`; without it they are
//! skipped, unless `CONSENTRY_REQUIRE_POSTGRES=1` (as in CI), which fails them.

use crate::support::contains;
use consentry::audit::verify::ChainVerifier;
use consentry::audit::{AuditDraft, AuditEvent, Checkpoint};
use consentry::clock::{Clock, SystemClock};
use consentry::crypto::{random_bytes, verify_checkpoint, MasterKey, WorkspaceKeys};
use consentry::domain::{EmailAddress, PhoneNumber};
use consentry::store::postgres::PostgresStore;
use consentry::store::sqlite::SqliteStore;
use consentry::store::{
    AllowlistSubject, ApiKeyRecord, BatchFound, BatchLookup, BatchWrites, CeremonyKind, CeremonyRecord, ConsentEventRow, ContactRow,
    IdentifierKind, ImportCounts, ImportJob, ImportPlanner, ImportRejection, ImportStatus, InvitationRecord, ListRecord, ListScope,
    NewContact, PasskeyRecord, RoleRecord, SessionRecord, Store, StoreError, StoreResult, TotpRecord, UserRecord, UserStatus, UNREADABLE,
};
use consentry::vault::contacts::{open_row, seal_new, ContactPlain};
use consentry::vault::Vault;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

// ------------------------------------------------------------------------------
// Harness: backends and the macro that runs every case against each of them.
// ------------------------------------------------------------------------------

/// One backend under test.
pub struct Backend {
    pub store: Arc<dyn Store>,
    /// The same database, bypassing the store.
    pub raw: Raw,
    /// Whatever must outlive the store (a temp dir, a scratch schema); dropped last.
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

impl Backend {
    async fn new(name: &'static str, store: Arc<dyn Store>, raw: Raw, guard: Box<dyn std::any::Any + Send + Sync>) -> Backend {
        assert_eq!(store.backend(), name);
        store.ping().await.unwrap();
        Backend { store, raw, _guard: guard }
    }
}

/// Direct access to a backend's database, to check what is really stored and what
/// the database itself refuses. A PostgreSQL variant is added next to `Sqlite`.
pub enum Raw {
    Sqlite(Mutex<rusqlite::Connection>),
    /// The URL of the test's own database; each call connects on a thread of its own
    /// (the cases call these methods from inside a current-thread runtime).
    Postgres(String),
}

/// Runs `f` with a fresh connection to `url` on a thread with a runtime of its own.
fn on_postgres<T, F, Fut>(url: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            f(client).await
        })
    })
    .join()
    .unwrap()
}

impl Raw {
    /// Runs one statement written in SQL every backend accepts; returns the number
    /// of rows changed, or the database's refusal.
    fn execute(&self, sql: &str) -> Result<u64, String> {
        match self {
            Raw::Sqlite(c) => c.lock().unwrap().execute(sql, []).map(|n| n as u64).map_err(|e| e.to_string()),
            Raw::Postgres(url) => {
                let sql = sql.to_string();
                on_postgres(url, move |c| async move {
                    c.execute(sql.as_str(), &[]).await.map_err(|e| match e.as_db_error() {
                        Some(db) => db.message().to_string(),
                        None => e.to_string(),
                    })
                })
            }
        }
    }

    /// Runs a `SELECT COUNT(*) ...` written in SQL every backend accepts.
    fn count(&self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite(c) => c.lock().unwrap().query_row(sql, [], |r| r.get(0)).unwrap(),
            Raw::Postgres(url) => {
                let sql = sql.to_string();
                on_postgres(url, move |c| async move {
                    c.query_one(sql.as_str(), &[]).await.unwrap().get::<_, i64>(0)
                })
            }
        }
    }

    /// Every column of a stored contact row, as bytes: blobs as stored, text as
    /// UTF-8, numbers in decimal; `None` for NULL. Empty when there is no such row.
    fn contact_columns(&self, id: Uuid) -> Vec<(String, Option<Vec<u8>>)> {
        match self {
            Raw::Sqlite(c) => {
                use rusqlite::types::ValueRef;
                let c = c.lock().unwrap();
                let mut stmt = c.prepare("SELECT * FROM contacts WHERE id = ?1").unwrap();
                let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
                let mut rows = stmt.query([id.as_bytes().as_slice()]).unwrap();
                let Some(row) = rows.next().unwrap() else {
                    return Vec::new();
                };
                names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let bytes = match row.get_ref(i).unwrap() {
                            ValueRef::Null => None,
                            ValueRef::Integer(n) => Some(n.to_string().into_bytes()),
                            ValueRef::Real(f) => Some(f.to_string().into_bytes()),
                            ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
                        };
                        (name.clone(), bytes)
                    })
                    .collect()
            }
            Raw::Postgres(url) => on_postgres(url, move |c| async move {
                use tokio_postgres::types::Type;
                let Some(row) = c
                    .query_opt("SELECT * FROM contacts WHERE id = $1", &[&id.as_bytes().as_slice()])
                    .await
                    .unwrap()
                else {
                    return Vec::new();
                };
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, col)| {
                        let bytes = match *col.type_() {
                            Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i),
                            Type::INT8 => row.get::<_, Option<i64>>(i).map(|n| n.to_string().into_bytes()),
                            _ => row.get::<_, Option<String>>(i).map(String::into_bytes),
                        };
                        (col.name().to_string(), bytes)
                    })
                    .collect()
            }),
        }
    }
}

/// A fresh SQLite store in a temp dir, with a second connection to the same file.
async fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conformance.db");
    let store = SqliteStore::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.busy_timeout(Duration::from_secs(10)).unwrap();
    Backend::new("sqlite", Arc::new(store), Raw::Sqlite(Mutex::new(raw)), Box::new(dir)).await
}

/// A fresh PostgreSQL store, or `None` when the case is to be skipped.
async fn postgres_backend() -> Option<Backend> {
    let url = std::env::var("CONSENTRY_TEST_POSTGRES_URL").ok().filter(|u| !u.trim().is_empty());
    if url.is_none() {
        if std::env::var("CONSENTRY_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!(
                "CONSENTRY_REQUIRE_POSTGRES=1 but CONSENTRY_TEST_POSTGRES_URL is not set: \
                 point it at a PostgreSQL database to run the PostgreSQL conformance cases"
            );
        }
        eprintln!("skipped: the PostgreSQL case needs CONSENTRY_TEST_POSTGRES_URL (CONSENTRY_REQUIRE_POSTGRES=1 fails instead)");
        return None;
    }
    let db = crate::pg::TestDatabase::create().await?;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let raw = Raw::Postgres(db.url.clone());
    Some(Backend::new("postgres", Arc::new(store), raw, Box::new(db)).await)
}

/// Runs each named case (an `async fn(&Backend)` below) as `<case>::sqlite` and
/// `<case>::postgres`. A case left out of the list is dead code, which the lints
/// refuse, so none can be forgotten.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                let backend = super::sqlite_backend().await;
                super::$case(&backend).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = super::postgres_backend().await {
                    super::$case(&backend).await;
                }
            }
        }
    )*};
}

conformance!(
    missing_rows_are_none_or_not_found,
    taken_names_and_identifiers_are_conflicts,
    contacts_page_in_id_order_within_their_scope,
    consent_ledger_is_append_only,
    contact_columns_hold_only_ciphertext,
    every_write_commits_its_audit_event,
    unfinished_imports_resume,
    import_batches_commit_all_or_nothing,
    batches_looked_up_ahead_see_every_later_write,
    identifier_filters_hide_nothing_written_since,
    plans_made_ahead_are_kept_only_while_their_look_up_holds,
    list_members_are_counted_once,
    api_keys_round_trip,
    damaged_key_lists_read_as_allowing_nothing,
    users_and_invitations_round_trip,
    sessions_round_trip,
    second_factors_round_trip,
    passkeys_and_ceremonies_round_trip,
    sign_in_failures_count_within_their_window,
    second_factor_requirement_round_trip,
    allowlists_round_trip,
    recent_audit_filters_by_action_and_time,
    password_resets_and_key_rotations_cover_the_workspace,
    custom_roles_round_trip,
    checkpoints_round_trip,
);

// ------------------------------------------------------------------------------
// Fixtures: records built the way the vault builds them.
// ------------------------------------------------------------------------------

/// A workspace created through the vault, with its opened keys.
struct Ws {
    id: String,
    keys: Arc<WorkspaceKeys>,
    vault: Vault,
}

async fn workspace(b: &Backend, name: &str) -> Ws {
    let vault = Vault::new(b.store.clone(), MasterKey::generate().unwrap(), Arc::new(SystemClock));
    let id = vault.create_workspace(name).await.unwrap().id;
    let keys = vault.keys(&id).await.unwrap();
    Ws { id, keys, vault }
}

fn now() -> i64 {
    SystemClock.now_micros()
}

/// A random (v4) id, so that creation order and id order differ.
fn random_id() -> Uuid {
    uuid::Builder::from_random_bytes(random_bytes()).into_uuid()
}

fn draft(ws: &Ws, action: &'static str) -> AuditDraft {
    AuditDraft::new(&ws.id, "conformance", action)
}

fn with_email(email: &str) -> ContactPlain {
    ContactPlain {
        email: Some(EmailAddress::parse(email).unwrap()),
        ..Default::default()
    }
}

/// A new contact row sealed under the workspace keys.
fn seal(ws: &Ws, plain: &ContactPlain) -> ContactRow {
    seal_new(&ws.keys, random_id(), plain, now()).unwrap().1
}

fn new_contact(row: &ContactRow, list_ids: &[&str]) -> NewContact {
    NewContact {
        row: row.clone(),
        consents: vec![],
        list_ids: list_ids.iter().map(ToString::to_string).collect(),
    }
}

/// Creates a contact with an email, in the given lists.
async fn add_contact(b: &Backend, ws: &Ws, email: &str, list_ids: &[&str]) -> ContactRow {
    let row = seal(ws, &with_email(email));
    let audit = draft(ws, "contact.created").target(format!("contact:{}", row.id));
    b.store.create_contact(new_contact(&row, list_ids), audit).await.unwrap();
    row
}

fn list_record(ws: &Ws, name: &str) -> ListRecord {
    ListRecord {
        id: format!("lst_{}", random_id().simple()),
        workspace_id: ws.id.clone(),
        name: name.to_string(),
        created_at: now(),
        member_count: None,
    }
}

async fn add_list(b: &Backend, ws: &Ws, name: &str) -> ListRecord {
    let list = list_record(ws, name);
    b.store.create_list(list.clone(), draft(ws, "list.created")).await.unwrap();
    list
}

fn consent(ws: &Ws, contact_id: Uuid, action: &str) -> ConsentEventRow {
    let at = now();
    ConsentEventRow {
        id: Uuid::now_v7(),
        workspace_id: ws.id.clone(),
        contact_id,
        channel: "email".into(),
        purpose: "marketing".into(),
        action: action.into(),
        method: "api".into(),
        source: "conformance suite".into(),
        evidence: r#"{"notice_version":"2024-01"}"#.into(),
        private_evidence_ct: Some(random_bytes::<40>().to_vec()),
        actor: "conformance".into(),
        occurred_at: at,
        recorded_at: at,
        audit_seq: 0,
    }
}

fn api_key(ws: &Ws, name: &str, list_ids: &[&str]) -> ApiKeyRecord {
    let created_at = now();
    ApiKeyRecord {
        id: format!("k{}", random_id().simple()),
        workspace_id: ws.id.clone(),
        name: name.to_string(),
        secret_hash: random_bytes::<32>().to_vec(),
        scopes: vec!["contacts:read".into(), "lists:manage".into()],
        list_ids: list_ids.iter().map(ToString::to_string).collect(),
        created_by: "conformance".into(),
        created_at,
        expires_at: Some(created_at + 86_400_000_000),
        revoked_at: None,
        last_used_at: None,
        allowlist: vec![],
        last_used_from: None,
    }
}

fn import_job(ws: &Ws, file_hash: &str, options_hash: &str, list_id: &str) -> ImportJob {
    ImportJob {
        id: format!("imp_{}", random_id().simple()),
        workspace_id: ws.id.clone(),
        file_hash: file_hash.to_string(),
        options_hash: options_hash.to_string(),
        uploader: "conformance".into(),
        list_id: list_id.to_string(),
        source: Some("conformance suite".into()),
        status: ImportStatus::Running,
        rows_done: 0,
        counts: ImportCounts::default(),
        error: None,
        created_at: now(),
        finished_at: None,
    }
}

/// A list and an import into it, started.
async fn running_import(b: &Backend, ws: &Ws) -> (ListRecord, ImportJob) {
    let list = add_list(b, ws, "imported").await;
    let job = b
        .store
        .begin_import(import_job(ws, "file", "options", &list.id), draft(ws, "import.started"))
        .await
        .unwrap();
    (list, job)
}

/// The identifiers of some rows, as an import batch looks them up.
fn lookup(list_id: &str, rows: &[&ContactRow]) -> BatchLookup {
    BatchLookup {
        email_bidx: rows.iter().filter_map(|r| r.email_bidx.clone()).collect(),
        phone_bidx: rows.iter().filter_map(|r| r.phone_bidx.clone()).collect(),
        list_id: list_id.to_string(),
        first_row: 0,
        filter: None,
    }
}

/// Writes of an import batch that change nothing yet.
fn no_writes(ws: &Ws, import_id: &str) -> BatchWrites {
    BatchWrites {
        inserts: vec![],
        updates: vec![],
        memberships: vec![],
        consents: vec![],
        rejections: vec![],
        counts: ImportCounts::default(),
        rows: 0,
        audit: draft(ws, "import.batch_committed").target(format!("import:{import_id}")),
        at: now(),
    }
}

/// A planner that hands back what it was shown and answers with `writes`.
fn planner(writes: anyhow::Result<BatchWrites>) -> (ImportPlanner, mpsc::Receiver<BatchFound>) {
    let (tx, rx) = mpsc::channel();
    let mut writes = Some(writes);
    let planner = ImportPlanner::new(move |found| {
        let _ = tx.send(found);
        writes.take().unwrap_or_else(|| Err(anyhow::anyhow!("the batch was planned twice")))
    });
    (planner, rx)
}

async fn head(b: &Backend, ws: &Ws) -> AuditEvent {
    b.store
        .audit_head(&ws.id)
        .await
        .unwrap()
        .expect("a workspace's log starts with its creation")
}

/// Every page of contacts of limit 10, walking the cursor.
async fn pages(b: &Backend, ws: &Ws, list_id: Option<&str>, scope: &ListScope) -> Vec<Vec<ContactRow>> {
    let mut out: Vec<Vec<ContactRow>> = Vec::new();
    let mut after = None;
    loop {
        let page = b.store.list_contacts(&ws.id, list_id, scope, after, 10).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        out.push(page);
        assert!(out.len() <= 10, "the cursor does not advance");
    }
    out
}

fn ids(rows: &[ContactRow]) -> Vec<Uuid> {
    rows.iter().map(|r| r.id).collect()
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

#[track_caller]
fn expect_not_found<T: Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(StoreError::NotFound(w)) => assert_eq!(w, what),
        other => panic!("expected NotFound({what}), got {other:?}"),
    }
}

#[track_caller]
fn expect_conflict<T: Debug>(result: StoreResult<T>, field: &str) {
    match result {
        Err(StoreError::Conflict { field: f }) => assert_eq!(f, field),
        other => panic!("expected Conflict {{ field: {field} }}, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------
// Cases
// ------------------------------------------------------------------------------

/// Reads of unknown ids (or of another workspace's rows) are `Ok(None)`; writes to
/// them are `NotFound` naming the kind of row, and leave no audit event behind.
async fn missing_rows_are_none_or_not_found(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let list = add_list(b, &ws, "newsletter").await;
    let theirs = add_contact(b, &other, "stranger@example.com", &[]).await;
    let their_list = add_list(b, &other, "theirs").await;
    let before = head(b, &ws).await;
    let s = &b.store;
    let ghost = random_id();

    assert_eq!(s.find_contact(&ws.id, ghost, &ListScope::All).await.unwrap(), None);
    assert_eq!(s.find_contact(&ws.id, theirs.id, &ListScope::All).await.unwrap(), None);
    let their_bidx = theirs.email_bidx.clone().unwrap();
    let by_bidx = s.find_contact_by_bidx(&ws.id, IdentifierKind::Email, &their_bidx, &ListScope::All);
    assert_eq!(by_bidx.await.unwrap(), None);
    assert_eq!(s.find_list(&ws.id, "lst_missing", &ListScope::All).await.unwrap(), None);
    assert_eq!(s.find_list(&ws.id, &their_list.id, &ListScope::All).await.unwrap(), None);
    assert_eq!(s.find_list(&ws.id, "theirs", &ListScope::All).await.unwrap(), None);
    assert_eq!(s.find_import(&ws.id, "imp_missing").await.unwrap(), None);
    assert_eq!(s.find_export(&ws.id, "exp_missing").await.unwrap(), None);
    assert!(s.find_api_key("kmissing").await.unwrap().is_none());
    assert_eq!(s.list_consents(&ws.id, ghost).await.unwrap(), vec![]);

    expect_not_found(
        s.revoke_api_key(&ws.id, "kmissing", now(), draft(&ws, "api_key.revoked")).await,
        "api key",
    );
    expect_not_found(s.rename_list(&ws.id, "lst_missing", "x", draft(&ws, "list.renamed")).await, "list");
    expect_not_found(s.rename_list(&ws.id, &their_list.id, "x", draft(&ws, "list.renamed")).await, "list");
    expect_not_found(s.delete_list(&ws.id, "lst_missing", draft(&ws, "list.deleted")).await, "list");
    expect_not_found(s.delete_list(&ws.id, &their_list.id, draft(&ws, "list.deleted")).await, "list");
    let unknown = seal(&ws, &with_email("nobody@example.com"));
    expect_not_found(s.update_contact(unknown.clone(), draft(&ws, "contact.updated")).await, "contact");
    let hijack = ContactRow {
        workspace_id: ws.id.clone(),
        segment_attributes: r#"{"tier":"stolen"}"#.into(),
        ..theirs.clone()
    };
    expect_not_found(s.update_contact(hijack, draft(&ws, "contact.updated")).await, "contact");
    expect_not_found(
        s.delete_contact(&ws.id, ghost, now(), draft(&ws, "contact.deleted")).await,
        "contact",
    );
    expect_not_found(
        s.delete_contact(&ws.id, theirs.id, now(), draft(&ws, "contact.deleted")).await,
        "contact",
    );
    let orphan = consent(&ws, ghost, "granted");
    expect_not_found(s.append_consent(orphan, vec![], draft(&ws, "consent.recorded")).await, "contact");
    let add = s.add_list_members(&ws.id, &list.id, vec![ghost], now(), draft(&ws, "list.members_added"));
    expect_not_found(add.await, "contact");
    let finish = s.finish_import(
        &ws.id,
        "imp_missing",
        ImportStatus::Finished,
        None,
        now(),
        draft(&ws, "import.finished"),
    );
    expect_not_found(finish.await, "import");

    assert_eq!(head(b, &ws).await, before, "a refused write left an audit event");
    assert_eq!(s.find_contact(&other.id, theirs.id, &ListScope::All).await.unwrap(), Some(theirs));
    assert_eq!(
        s.find_list(&other.id, &their_list.id, &ListScope::All).await.unwrap().unwrap().name,
        "theirs"
    );
}

/// A taken list name, email or phone is `Conflict` naming the field, the write is not
/// made, and its audit event is not kept.
async fn taken_names_and_identifiers_are_conflicts(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let newsletter = add_list(b, &ws, "Newsletter").await;
    let customers = add_list(b, &ws, "Customers").await;
    add_list(b, &other, "Newsletter").await; // names are unique per workspace only
    let ada = ContactPlain {
        phone: Some(PhoneNumber::parse("+31612345678", None).unwrap()),
        ..with_email("ada@example.com")
    };
    let first = seal(&ws, &ada);
    s.create_contact(new_contact(&first, &[]), draft(&ws, "contact.created"))
        .await
        .unwrap();
    let grace = add_contact(b, &ws, "grace@example.com", &[]).await;
    let before = head(b, &ws).await;

    expect_conflict(
        s.create_list(list_record(&ws, "Newsletter"), draft(&ws, "list.created")).await,
        "list name",
    );
    expect_conflict(
        s.rename_list(&ws.id, &customers.id, "Newsletter", draft(&ws, "list.renamed")).await,
        "list name",
    );
    let same_email = seal(&ws, &with_email("ada@example.com"));
    expect_conflict(
        s.create_contact(new_contact(&same_email, &[]), draft(&ws, "contact.created")).await,
        "email",
    );
    let same_phone = seal(
        &ws,
        &ContactPlain {
            phone: ada.phone.clone(),
            ..with_email("someone.else@example.com")
        },
    );
    expect_conflict(
        s.create_contact(new_contact(&same_phone, &[]), draft(&ws, "contact.created")).await,
        "phone",
    );
    let grace_as_ada = ContactRow {
        email_bidx: first.email_bidx.clone(),
        updated_at: now(),
        ..grace.clone()
    };
    expect_conflict(s.update_contact(grace_as_ada, draft(&ws, "contact.updated")).await, "email");
    assert_eq!(head(b, &ws).await, before, "a refused write left an audit event");

    assert_eq!(s.find_contact(&ws.id, same_email.id, &ListScope::All).await.unwrap(), None);
    assert_eq!(s.find_contact(&ws.id, same_phone.id, &ListScope::All).await.unwrap(), None);
    assert_eq!(s.find_contact(&ws.id, first.id, &ListScope::All).await.unwrap(), Some(first));
    assert_eq!(s.find_contact(&ws.id, grace.id, &ListScope::All).await.unwrap(), Some(grace));
    assert_eq!(
        s.find_list(&ws.id, "Newsletter", &ListScope::All).await.unwrap().unwrap().id,
        newsletter.id
    );
    assert_eq!(
        s.find_list(&ws.id, &customers.id, &ListScope::All).await.unwrap().unwrap().name,
        "Customers"
    );
    // Renaming a list to its own name is no clash.
    s.rename_list(&ws.id, &customers.id, "Customers", draft(&ws, "list.renamed"))
        .await
        .unwrap();
}

/// Paging walks live contacts once each in ascending id order, with or without a
/// list, skips deleted ones, and a list scope hides non-members everywhere.
async fn contacts_page_in_id_order_within_their_scope(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let everyone = add_list(b, &ws, "everyone").await;
    let some = add_list(b, &ws, "some").await;
    add_contact(b, &other, "elsewhere@example.com", &[]).await;
    let mut created = HashMap::new();
    let mut order = Vec::new();
    for i in 0..27 {
        let row = add_contact(b, &ws, &format!("person{i}@example.com"), &[&everyone.id]).await;
        order.push(row.id);
        created.insert(row.id, row);
    }
    let deleted = [order[3], order[17]];
    for id in deleted {
        s.delete_contact(&ws.id, id, now(), draft(&ws, "contact.deleted")).await.unwrap();
    }
    let live = sorted(order.iter().copied().filter(|id| !deleted.contains(id)).collect());
    let members: Vec<Uuid> = order.iter().copied().step_by(4).collect();
    assert_eq!(members.len(), 7);
    let added = s.add_list_members(&ws.id, &some.id, members.clone(), now(), draft(&ws, "list.members_added"));
    assert_eq!(added.await.unwrap(), 7);

    for list_id in [None, Some(everyone.id.as_str())] {
        let walked = pages(b, &ws, list_id, &ListScope::All).await;
        let sizes: Vec<usize> = walked.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 5], "pages of list {list_id:?}");
        let rows: Vec<ContactRow> = walked.into_iter().flatten().collect();
        assert_eq!(ids(&rows), live, "every live contact once, ascending by id (list {list_id:?})");
        for row in &rows {
            assert_eq!(Some(row), created.get(&row.id), "a paged row differs from the one created");
        }
    }
    // A cursor need not be a live contact.
    let after_deleted = s.list_contacts(&ws.id, None, &ListScope::All, Some(deleted[0]), 100).await.unwrap();
    assert_eq!(
        ids(&after_deleted),
        live.iter().copied().filter(|id| *id > deleted[0]).collect::<Vec<_>>()
    );
    assert_eq!(s.list_contacts(&ws.id, None, &ListScope::All, None, 1).await.unwrap().len(), 1);

    let scope = ListScope::Lists(vec![some.id.clone()]);
    let members = sorted(members);
    for (list_id, scope) in [
        (None, &scope),
        (Some(everyone.id.as_str()), &scope),
        (Some(some.id.as_str()), &ListScope::All),
    ] {
        let rows: Vec<ContactRow> = pages(b, &ws, list_id, scope).await.into_iter().flatten().collect();
        assert_eq!(ids(&rows), members, "members of `some` (list {list_id:?}, scope {scope:?})");
    }
    let nowhere = ListScope::Lists(vec!["lst_missing".into()]);
    assert_eq!(s.list_contacts(&ws.id, None, &nowhere, None, 100).await.unwrap(), vec![]);

    let outsider = &created[&order[1]];
    let insider = &created[&order[4]];
    assert_eq!(s.find_contact(&ws.id, outsider.id, &scope).await.unwrap(), None);
    assert_eq!(s.find_contact(&ws.id, insider.id, &scope).await.unwrap().as_ref(), Some(insider));
    let bidx = outsider.email_bidx.clone().unwrap();
    assert_eq!(
        s.find_contact_by_bidx(&ws.id, IdentifierKind::Email, &bidx, &scope).await.unwrap(),
        None
    );
    let found = s
        .find_contact_by_bidx(&ws.id, IdentifierKind::Email, &bidx, &ListScope::All)
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(outsider));
    for id in deleted {
        assert_eq!(s.find_contact(&ws.id, id, &ListScope::All).await.unwrap(), None);
        let bidx = created[&id].email_bidx.clone().unwrap();
        assert_eq!(
            s.find_contact_by_bidx(&ws.id, IdentifierKind::Email, &bidx, &ListScope::All)
                .await
                .unwrap(),
            None
        );
    }
}

/// The ledger lists events in the order they were appended, each with the audit
/// event that recorded it; it drives the derived state and suppressions; and the
/// database itself refuses to edit or delete its rows.
async fn consent_ledger_is_append_only(b: &Backend) {
    let ws = workspace(b, "t").await;
    let s = &b.store;
    let row = seal(&ws, &with_email("ada@example.com"));
    let bidx = row.email_bidx.clone().unwrap();
    let grant = consent(&ws, row.id, "granted");
    let new = NewContact {
        consents: vec![grant.clone()],
        ..new_contact(&row, &[])
    };
    let created = s.create_contact(new, draft(&ws, "contact.created")).await.unwrap();
    let withdraw = consent(&ws, row.id, "withdrawn");
    let withdrawn = s.append_consent(withdraw.clone(), vec![bidx.clone()], draft(&ws, "consent.recorded"));
    let withdrawn = withdrawn.await.unwrap();
    assert_eq!(withdrawn.seq, created.seq + 1);
    assert_eq!(withdrawn.action, "consent.recorded");
    assert_eq!(withdrawn, head(b, &ws).await);

    let (plan, shown) = planner(Ok(no_writes(&ws, "dry-run")));
    s.apply_import_batch(&ws.id, None, lookup("lst_none", &[&row]), None, plan, true)
        .await
        .unwrap();
    let found = shown.recv().unwrap();
    assert_eq!(
        found.suppressed,
        vec![bidx.clone()],
        "a withdrawal suppresses the given identifiers"
    );
    assert_eq!(found.contacts.len(), 1);
    assert_eq!(found.contacts[0].row, row);
    assert_eq!(
        found.contacts[0].consent,
        vec![("email".into(), "marketing".into(), "withdrawn".into())]
    );

    let regrant = consent(&ws, row.id, "granted");
    let regranted = s
        .append_consent(regrant.clone(), vec![], draft(&ws, "consent.recorded"))
        .await
        .unwrap();
    let expected = vec![
        ConsentEventRow {
            audit_seq: created.seq,
            ..grant
        },
        ConsentEventRow {
            audit_seq: withdrawn.seq,
            ..withdraw
        },
        ConsentEventRow {
            audit_seq: regranted.seq,
            ..regrant
        },
    ];
    assert_eq!(s.list_consents(&ws.id, row.id).await.unwrap(), expected);
    let (plan, shown) = planner(Ok(no_writes(&ws, "dry-run")));
    s.apply_import_batch(&ws.id, None, lookup("lst_none", &[&row]), None, plan, true)
        .await
        .unwrap();
    let state = shown.recv().unwrap().contacts.remove(0).consent;
    assert_eq!(
        state,
        vec![("email".into(), "marketing".into(), "granted".into())],
        "the latest event wins"
    );

    let mine = format!("workspace_id = '{}'", ws.id);
    let update = b
        .raw
        .execute(&format!("UPDATE consent_events SET action = 'objected' WHERE {mine}"));
    let delete = b.raw.execute(&format!("DELETE FROM consent_events WHERE {mine}"));
    for (what, result) in [("UPDATE", update), ("DELETE", delete)] {
        let Err(refusal) = result else {
            panic!("the database accepted an {what} of consent events");
        };
        // Both backends' triggers say why.
        assert!(refusal.contains("append-only"), "{what} failed for another reason: {refusal}");
    }
    assert_eq!(b.raw.count(&format!("SELECT COUNT(*) FROM consent_events WHERE {mine}")), 3);
    assert_eq!(s.list_consents(&ws.id, row.id).await.unwrap(), expected);
}

/// A contact's identifying values reach the database only sealed: no column holds
/// them in clear, blind indexes are 16 bytes, and the row opens back to the values.
async fn contact_columns_hold_only_ciphertext(b: &Backend) {
    let ws = workspace(b, "t").await;
    let plain = ContactPlain {
        phone: Some(PhoneNumber::parse("+31612345678", None).unwrap()),
        first_name: Some("Augusta".into()),
        last_name: Some("Byron-King".into()),
        identifying: BTreeMap::from([("nickname".to_string(), "Enchantress".to_string())]),
        ..with_email("Ada.Lovelace@Example.org")
    };
    let row = seal(&ws, &plain);
    b.store
        .create_contact(new_contact(&row, &[]), draft(&ws, "contact.created"))
        .await
        .unwrap();

    let columns = b.raw.contact_columns(row.id);
    let value = |name: &str| -> Option<Vec<u8>> {
        let found = columns.iter().find(|(n, _)| n == name);
        found.unwrap_or_else(|| panic!("contacts has no column {name}")).1.clone()
    };
    for sealed in [
        "email_ct",
        "phone_ct",
        "first_name_ct",
        "last_name_ct",
        "attributes_ct",
        "contact_key",
    ] {
        assert!(value(sealed).is_some_and(|v| v.len() > 16), "{sealed} is not stored");
    }
    assert_eq!(value("email_bidx").map(|v| v.len()), Some(16));
    assert_eq!(value("phone_bidx").map(|v| v.len()), Some(16));
    assert_eq!(value("email_bidx"), row.email_bidx);
    let secrets = [
        "Ada.Lovelace@Example.org",
        "Ada.Lovelace@example.org",
        "ada.lovelace@example.org",
        "Ada.Lovelace",
        "+31612345678",
        "612345678",
        "Augusta",
        "Byron-King",
        "Enchantress",
    ];
    for (name, bytes) in &columns {
        for secret in secrets {
            let leaked = bytes.as_deref().is_some_and(|v| contains(v, secret));
            assert!(!leaked, "column {name} holds {secret:?} in clear");
        }
    }

    let stored = b.store.find_contact(&ws.id, row.id, &ListScope::All).await.unwrap().unwrap();
    assert_eq!(stored, row);
    let (_, opened) = open_row(&ws.keys, &stored).unwrap();
    assert_eq!(opened.email.unwrap().as_str(), "Ada.Lovelace@example.org");
    assert_eq!(opened.phone.unwrap().as_str(), "+31612345678");
    assert_eq!(opened.first_name.as_deref(), Some("Augusta"));
    assert_eq!(opened.identifying, plain.identifying);
}

/// Each write appends exactly one audit event, the one it returns or names; the
/// per-workspace chain runs from 1 without gaps and verifies with its checkpoint.
async fn every_write_commits_its_audit_event(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let first = head(b, &ws).await;
    assert_eq!((first.seq, first.action.as_str()), (1, "workspace.created"));
    let mut expected = vec!["workspace.created"];

    let row = seal(&ws, &with_email("ada@example.com"));
    let target = format!("contact:{}", row.id);
    let returned = s.create_contact(new_contact(&row, &[]), draft(&ws, "contact.created").target(&target));
    let returned = returned.await.unwrap();
    let now_head = head(b, &ws).await;
    assert_eq!(now_head, returned, "create_contact returns the event it committed");
    assert_eq!((now_head.seq, now_head.action.as_str()), (2, "contact.created"));
    assert_eq!(now_head.target.as_deref(), Some(target.as_str()));
    expected.push("contact.created");

    let list = list_record(&ws, "newsletter");
    s.create_list(list.clone(), draft(&ws, "list.created")).await.unwrap();
    assert_eq!((head(b, &ws).await.seq, head(b, &ws).await.action), (3, "list.created".into()));
    expected.push("list.created");
    expect_conflict(
        s.create_list(list_record(&ws, "newsletter"), draft(&ws, "list.created")).await,
        "list name",
    );
    assert_eq!(head(b, &ws).await.seq, 3, "a refused write left an audit event");

    let key = api_key(&ws, "ci", &[]);
    s.create_api_key(key.clone(), draft(&ws, "api_key.created")).await.unwrap();
    expected.push("api_key.created");
    s.revoke_api_key(&ws.id, &key.id, now(), draft(&ws, "api_key.revoked"))
        .await
        .unwrap();
    assert_eq!((head(b, &ws).await.seq, head(b, &ws).await.action), (5, "api_key.revoked".into()));
    expected.push("api_key.revoked");
    let read = s
        .record_audit(draft(&ws, "contact.read_unmasked").purpose(Some("support")))
        .await
        .unwrap();
    assert_eq!((read.seq, read.purpose.as_deref()), (6, Some("support")));
    assert_eq!(read, head(b, &ws).await);
    expected.push("contact.read_unmasked");

    let mut chain: Vec<AuditEvent> = Vec::new();
    loop {
        let after = chain.last().map_or(0, |e| e.seq);
        let page = s.list_audit(&ws.id, after, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        chain.extend(page);
    }
    assert_eq!(chain.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=6).collect::<Vec<i64>>());
    assert_eq!(chain.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), expected);
    assert!(chain.windows(2).all(|w| w[0].at <= w[1].at), "event times go backwards");
    let mut verifier = ChainVerifier::new(&ws.id, vec![]);
    for event in &chain {
        verifier.push(event);
    }
    let report = verifier.finish(&ws.keys.audit_public_key());
    assert_eq!((report.events, report.problem), (6, None));
    let picked = s.find_audit(&ws.id, vec![2, 5, 99]).await.unwrap();
    assert_eq!(picked, vec![chain[1].clone(), chain[4].clone()]);

    ws.vault.checkpoint(&ws.id).await.unwrap().expect("the head moved");
    let report = ws.vault.verify_audit(&ws.id).await.unwrap();
    assert_eq!((report.events, report.checkpoints, report.problem), (6, 1, None));

    let theirs = s.list_audit(&other.id, 0, 100).await.unwrap();
    assert_eq!(theirs.len(), 1, "each workspace has its own chain");
    assert_eq!((theirs[0].seq, theirs[0].action.as_str()), (1, "workspace.created"));
}

/// An unfinished import with the same file and options is resumed, not restarted;
/// a finished one is not; `finish_import` records the outcome.
async fn unfinished_imports_resume(b: &Backend) {
    let ws = workspace(b, "t").await;
    let s = &b.store;
    let list = add_list(b, &ws, "imported").await;
    let job = import_job(&ws, "file-1", "options-1", &list.id);
    assert_eq!(s.begin_import(job.clone(), draft(&ws, "import.started")).await.unwrap(), job);
    assert_eq!(
        (head(b, &ws).await.action.as_str(), job.status),
        ("import.started", ImportStatus::Running)
    );

    let rerun = import_job(&ws, "file-1", "options-1", &list.id);
    let resumed = s.begin_import(rerun, draft(&ws, "import.started")).await.unwrap();
    assert_eq!(resumed, job, "the rerun resumes the unfinished job");
    let other_options = import_job(&ws, "file-1", "options-2", &list.id);
    let separate = s.begin_import(other_options.clone(), draft(&ws, "import.started")).await.unwrap();
    assert_eq!(separate, other_options, "other options start another job");
    assert_eq!(s.find_import(&ws.id, &job.id).await.unwrap(), Some(job.clone()));

    let at = now();
    let finished = s.finish_import(&ws.id, &job.id, ImportStatus::Finished, None, at, draft(&ws, "import.finished"));
    let finished = finished.await.unwrap();
    let expected = ImportJob {
        status: ImportStatus::Finished,
        finished_at: Some(at),
        ..job.clone()
    };
    assert_eq!(finished, expected);
    assert_eq!(s.find_import(&ws.id, &job.id).await.unwrap(), Some(expected));
    assert_eq!(head(b, &ws).await.action, "import.finished");

    let error = Some("stopped by the test".to_string());
    let failed = s.finish_import(
        &ws.id,
        &separate.id,
        ImportStatus::Failed,
        error.clone(),
        at,
        draft(&ws, "import.failed"),
    );
    let failed = failed.await.unwrap();
    assert_eq!(
        (failed.status, failed.error, failed.finished_at),
        (ImportStatus::Failed, error, Some(at))
    );

    let again = import_job(&ws, "file-1", "options-1", &list.id);
    let fresh = s.begin_import(again.clone(), draft(&ws, "import.started")).await.unwrap();
    assert_eq!(fresh, again, "a finished job is not resumed");
}

/// A batch is applied all or nothing: a planner error or a failing write leaves no
/// contact, consent, membership, progress or audit event; a good batch commits its
/// writes with the job's progress; a dry run writes nothing; a finished job takes
/// no more batches.
async fn import_batches_commit_all_or_nothing(b: &Backend) {
    let ws = workspace(b, "t").await;
    let s = &b.store;
    let (list, job) = running_import(b, &ws).await;
    let existing = add_contact(b, &ws, "existing@example.com", &[]).await;
    let rows: Vec<ContactRow> = (0..3)
        .map(|i| seal(&ws, &with_email(&format!("imported{i}@example.com"))))
        .collect();
    let nothing_written = |what: &'static str| assert_nothing_imported(b, &ws, &job, &rows, what);
    let before = head(b, &ws).await;

    let (plan, _) = planner(Err(anyhow::anyhow!("planner refused")));
    match s
        .apply_import_batch(&ws.id, Some(&job.id), lookup(&list.id, &[&rows[0]]), None, plan, true)
        .await
    {
        Err(StoreError::Backend(e)) => assert!(format!("{e:#}").contains("planner refused"), "{e:#}"),
        other => panic!("the planner's error is passed on as a backend error, not {other:?}"),
    }
    nothing_written("planner error").await;

    // The last insert clashes with an existing contact, after the rest were written.
    let clash = seal(&ws, &with_email("existing@example.com"));
    let writes = BatchWrites {
        inserts: vec![rows[0].clone(), clash.clone()],
        memberships: vec![rows[0].id],
        consents: vec![consent(&ws, rows[0].id, "granted")],
        counts: ImportCounts {
            read: 2,
            created: 2,
            ..Default::default()
        },
        rows: 2,
        ..no_writes(&ws, &job.id)
    };
    let (plan, _) = planner(Ok(writes));
    let result = s.apply_import_batch(&ws.id, Some(&job.id), lookup(&list.id, &[&rows[0], &clash]), None, plan, true);
    expect_conflict(result.await, "email");
    nothing_written("failing write").await;
    assert_eq!(head(b, &ws).await, before, "a failed batch left an audit event");

    // A dry run plans but writes nothing.
    let dry = BatchWrites {
        inserts: vec![rows[0].clone()],
        counts: ImportCounts {
            read: 1,
            created: 1,
            ..Default::default()
        },
        rows: 1,
        ..no_writes(&ws, "dry-run")
    };
    let (plan, _) = planner(Ok(dry));
    let counts = s
        .apply_import_batch(&ws.id, None, lookup(&list.id, &[&rows[0]]), None, plan, true)
        .await
        .unwrap();
    assert_eq!((counts.read, counts.created), (1, 1));
    nothing_written("dry run").await;
    assert_eq!(head(b, &ws).await, before, "a dry run left an audit event");

    let rejection = ImportRejection {
        row: 5,
        column: "email".into(),
        reason: "email has no '@'".into(),
    };
    let first_counts = ImportCounts {
        read: 4,
        created: 3,
        rejected: 1,
        ..Default::default()
    };
    let writes = BatchWrites {
        inserts: rows.clone(),
        memberships: ids(&rows),
        consents: rows.iter().map(|r| consent(&ws, r.id, "granted")).collect(),
        rejections: vec![rejection.clone()],
        counts: first_counts,
        rows: 4,
        ..no_writes(&ws, &job.id)
    };
    let consents = writes.consents.clone();
    let (plan, shown) = planner(Ok(writes));
    let batch = lookup(&list.id, &rows.iter().collect::<Vec<_>>());
    assert_eq!(
        s.apply_import_batch(&ws.id, Some(&job.id), batch, None, plan, true).await.unwrap(),
        first_counts
    );
    let found = shown.recv().unwrap();
    assert_eq!((found.contacts.len(), found.suppressed.len()), (0, 0));
    let committed = head(b, &ws).await;
    assert_eq!(
        (committed.seq, committed.action.as_str()),
        (before.seq + 1, "import.batch_committed")
    );
    let progress = s.find_import(&ws.id, &job.id).await.unwrap().unwrap();
    assert_eq!(
        (progress.rows_done, progress.counts, progress.status),
        (4, first_counts, ImportStatus::Running)
    );
    let listed = s.list_contacts(&ws.id, Some(&list.id), &ListScope::All, None, 100).await.unwrap();
    assert_eq!(ids(&listed), sorted(ids(&rows)));
    for (row, event) in rows.iter().zip(&consents) {
        let ledger = s.list_consents(&ws.id, row.id).await.unwrap();
        let recorded = ConsentEventRow {
            audit_seq: committed.seq,
            ..event.clone()
        };
        assert_eq!(ledger, vec![recorded], "the batch's consents carry the batch's audit event");
    }
    assert_eq!(s.list_import_rejections(&ws.id, &job.id, 10).await.unwrap(), vec![rejection]);

    // The next batch is shown what exists and updates it.
    let newcomer = seal(&ws, &with_email("newcomer@example.com"));
    let gold = ContactRow {
        segment_attributes: r#"{"tier":"gold"}"#.into(),
        updated_at: now(),
        ..rows[0].clone()
    };
    let second_counts = ImportCounts {
        read: 3,
        created: 1,
        updated: 1,
        unchanged: 1,
        ..Default::default()
    };
    let writes = BatchWrites {
        inserts: vec![newcomer.clone()],
        updates: vec![gold.clone()],
        memberships: vec![newcomer.id, existing.id],
        counts: second_counts,
        rows: 3,
        ..no_writes(&ws, &job.id)
    };
    let (plan, shown) = planner(Ok(writes));
    let batch = BatchLookup {
        first_row: 4,
        ..lookup(&list.id, &[&rows[0], &newcomer, &existing])
    };
    assert_eq!(
        s.apply_import_batch(&ws.id, Some(&job.id), batch, None, plan, true).await.unwrap(),
        second_counts
    );
    let mut found = shown.recv().unwrap().contacts;
    found.sort_by_key(|c| c.row.id != rows[0].id);
    assert_eq!(found.len(), 2, "the imported contact and the existing one");
    assert_eq!((&found[0].row, found[0].in_list), (&rows[0], true));
    assert_eq!(found[0].consent, vec![("email".into(), "marketing".into(), "granted".into())]);
    assert_eq!((&found[1].row, found[1].in_list, found[1].consent.len()), (&existing, false, 0));
    let progress = s.find_import(&ws.id, &job.id).await.unwrap().unwrap();
    let mut total = first_counts;
    total.add(&second_counts);
    assert_eq!((progress.rows_done, progress.counts), (7, total));
    assert_eq!(s.find_contact(&ws.id, rows[0].id, &ListScope::All).await.unwrap(), Some(gold));
    let listed = s.list_contacts(&ws.id, Some(&list.id), &ListScope::All, None, 100).await.unwrap();
    assert_eq!(listed.len(), 5);

    let done = s.finish_import(&ws.id, &job.id, ImportStatus::Finished, None, now(), draft(&ws, "import.finished"));
    assert_eq!(done.await.unwrap().status, ImportStatus::Finished);
    let late = seal(&ws, &with_email("late@example.com"));
    let writes = BatchWrites {
        inserts: vec![late.clone()],
        rows: 1,
        ..no_writes(&ws, &job.id)
    };
    let (plan, _) = planner(Ok(writes));
    let result = s
        .apply_import_batch(&ws.id, Some(&job.id), lookup(&list.id, &[&late]), None, plan, true)
        .await;
    assert!(
        matches!(result, Err(StoreError::Ended("import"))),
        "a finished import took another batch: {result:?}"
    );
    let again = s
        .finish_import(
            &ws.id,
            &job.id,
            ImportStatus::Failed,
            Some("late".into()),
            now(),
            draft(&ws, "import.finished"),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::Ended("import"))),
        "an ended import was finished again: {again:?}"
    );
    let missing = s
        .finish_import(
            &ws.id,
            "imp_missing",
            ImportStatus::Finished,
            None,
            now(),
            draft(&ws, "import.finished"),
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound("import"))), "{missing:?}");
    let job_now = s.find_import(&ws.id, &job.id).await.unwrap().unwrap();
    assert_eq!((job_now.status, job_now.error), (ImportStatus::Finished, None));
    assert_eq!(s.find_contact(&ws.id, late.id, &ListScope::All).await.unwrap(), None);
    assert_eq!(s.find_import(&ws.id, &job.id).await.unwrap().unwrap().rows_done, 7);
}

/// A batch looked up ahead of its turn (`prefetch_import_batch`) is never planned
/// on a stale look-up: a contact created since by another writer, or by an earlier
/// batch of the same import, is shown to its planner. A batch that does not start
/// where the job's progress stands is refused and writes nothing.
async fn batches_looked_up_ahead_see_every_later_write(b: &Backend) {
    let ws = workspace(b, "t").await;
    let s = &b.store;
    let (list, job) = running_import(b, &ws).await;
    let one_row = |row: &ContactRow| BatchWrites {
        inserts: vec![row.clone()],
        memberships: vec![row.id],
        counts: ImportCounts {
            read: 1,
            created: 1,
            ..Default::default()
        },
        rows: 1,
        ..no_writes(&ws, &job.id)
    };
    let unchanged_row = || BatchWrites {
        rows: 1,
        counts: ImportCounts {
            read: 1,
            unchanged: 1,
            ..Default::default()
        },
        ..no_writes(&ws, &job.id)
    };
    let at = |first_row: u64, rows: &[&ContactRow]| BatchLookup {
        first_row,
        ..lookup(&list.id, rows)
    };

    // Another writer creates the contact between the look-up ahead and the batch.
    let early = seal(&ws, &with_email("early@example.com"));
    let ahead = s.prefetch_import_batch(&ws.id, &job.id, &at(0, &[&early])).await.unwrap();
    let meanwhile = add_contact(b, &ws, "early@example.com", &[]).await;
    let (plan, shown) = planner(Ok(unchanged_row()));
    s.apply_import_batch(&ws.id, Some(&job.id), at(0, &[&early]), ahead, plan, false)
        .await
        .unwrap();
    let found = shown.recv().unwrap();
    assert_eq!(
        ids(&found.contacts.iter().map(|c| c.row.clone()).collect::<Vec<_>>()),
        vec![meanwhile.id]
    );

    // Three batches looked up ahead; the first of them creates the contact the
    // third one names, the second touches nothing of the others.
    let (first, second) = (
        seal(&ws, &with_email("first@example.com")),
        seal(&ws, &with_email("second@example.com")),
    );
    let third = seal(&ws, &with_email("first@example.com"));
    let mut ahead = Vec::new();
    for (i, row) in [&first, &second, &third].into_iter().enumerate() {
        ahead.push(s.prefetch_import_batch(&ws.id, &job.id, &at(1 + i as u64, &[row])).await.unwrap());
    }
    let mut ahead = ahead.into_iter();
    for (i, row) in [&first, &second].into_iter().enumerate() {
        let (plan, shown) = planner(Ok(one_row(row)));
        s.apply_import_batch(&ws.id, Some(&job.id), at(1 + i as u64, &[row]), ahead.next().unwrap(), plan, false)
            .await
            .unwrap();
        assert!(shown.recv().unwrap().contacts.is_empty());
    }
    let (plan, shown) = planner(Ok(unchanged_row()));
    s.apply_import_batch(&ws.id, Some(&job.id), at(3, &[&third]), ahead.next().unwrap(), plan, true)
        .await
        .unwrap();
    let found = shown.recv().unwrap();
    assert_eq!(
        found.contacts.iter().map(|c| (c.row.id, c.in_list)).collect::<Vec<_>>(),
        vec![(first.id, true)],
        "the third batch sees the contact the first one created"
    );
    let progress = s.find_import(&ws.id, &job.id).await.unwrap().unwrap();
    assert_eq!((progress.rows_done, progress.counts.created, progress.counts.unchanged), (4, 2, 2));

    // A batch that does not start where the progress stands.
    let before = head(b, &ws).await;
    let stray = seal(&ws, &with_email("stray@example.com"));
    for first_row in [2, 5] {
        let (plan, _) = planner(Ok(one_row(&stray)));
        match s
            .apply_import_batch(&ws.id, Some(&job.id), at(first_row, &[&stray]), None, plan, true)
            .await
        {
            Err(StoreError::Backend(e)) => assert!(format!("{e:#}").contains("had done 4 rows"), "{e:#}"),
            other => panic!("a batch out of order was not refused: {other:?}"),
        }
    }
    assert_eq!(head(b, &ws).await, before, "a refused batch left an audit event");
    let lookup_stray = s.find_contact_by_bidx(&ws.id, IdentifierKind::Email, stray.email_bidx.as_ref().unwrap(), &ListScope::All);
    assert_eq!(lookup_stray.await.unwrap(), None, "a refused batch wrote its contact");
    assert_eq!(s.find_import(&ws.id, &job.id).await.unwrap().unwrap().rows_done, 4);
}

/// A batch looked up and planned ahead of its turn (`BatchPrefetch::plan_ahead`)
/// is written as planned when nothing since concerns it, and planned again on a
/// fresh look-up when another writer created one of its contacts meanwhile.
async fn plans_made_ahead_are_kept_only_while_their_look_up_holds(b: &Backend) {
    let ws = workspace(b, "t").await;
    let s = &b.store;
    let (list, job) = running_import(b, &ws).await;
    let at = |first_row: u64, rows: &[&ContactRow]| BatchLookup {
        first_row,
        ..lookup(&list.id, rows)
    };
    let create = |row: &ContactRow| BatchWrites {
        inserts: vec![row.clone()],
        memberships: vec![row.id],
        counts: ImportCounts {
            read: 1,
            created: 1,
            ..Default::default()
        },
        rows: 1,
        ..no_writes(&ws, &job.id)
    };
    // A planner that answers with the next of `plans` and reports every look-up.
    let planner = |plans: Vec<BatchWrites>| {
        let (tx, rx) = mpsc::channel();
        let mut plans = plans.into_iter();
        let planner = ImportPlanner::new(move |found| {
            let _ = tx.send(found);
            plans.next().ok_or_else(|| anyhow::anyhow!("planned once too often"))
        });
        (planner, rx)
    };

    let first = seal(&ws, &with_email("first@example.com"));
    let Some(mut ahead) = s.prefetch_import_batch(&ws.id, &job.id, &at(0, &[&first])).await.unwrap() else {
        return; // This backend looks batches up at their turn only.
    };
    let (mut plan, shown) = planner(vec![create(&first)]);
    ahead.plan_ahead(&mut plan);
    assert!(shown.recv().unwrap().contacts.is_empty());
    s.apply_import_batch(&ws.id, Some(&job.id), at(0, &[&first]), Some(ahead), plan, false)
        .await
        .unwrap();
    assert!(shown.try_recv().is_err(), "the plan made ahead was kept");
    assert!(s.find_contact(&ws.id, first.id, &ListScope::All).await.unwrap().is_some());

    let second = seal(&ws, &with_email("second@example.com"));
    let mut ahead = s.prefetch_import_batch(&ws.id, &job.id, &at(1, &[&second])).await.unwrap().unwrap();
    let unchanged = BatchWrites {
        rows: 1,
        counts: ImportCounts {
            read: 1,
            unchanged: 1,
            ..Default::default()
        },
        ..no_writes(&ws, &job.id)
    };
    let (mut plan, shown) = planner(vec![create(&second), unchanged]);
    ahead.plan_ahead(&mut plan);
    assert!(shown.recv().unwrap().contacts.is_empty());
    let meanwhile = add_contact(b, &ws, "second@example.com", &[]).await;
    let counts = s
        .apply_import_batch(&ws.id, Some(&job.id), at(1, &[&second]), Some(ahead), plan, true)
        .await
        .unwrap();
    assert_eq!(counts.unchanged, 1, "the batch was planned again");
    let found = shown.recv().unwrap();
    assert_eq!(found.contacts.iter().map(|c| c.row.id).collect::<Vec<_>>(), vec![meanwhile.id]);
    assert!(s.find_contact(&ws.id, second.id, &ListScope::All).await.unwrap().is_none());
}

/// An import's identifier filter (`Store::identifier_filter`) holds every
/// identifier that existed when it was built, and the batches that trust it to
/// skip look-ups still see a contact another writer created since: the audit
/// event of that change stops the filter. The import's own batches do not.
async fn identifier_filters_hide_nothing_written_since(b: &Backend) {
    let ws = workspace(b, "t").await;
    let s = &b.store;
    let before = add_contact(b, &ws, "before@example.com", &[]).await;
    let (list, job) = running_import(b, &ws).await;
    let filter = Arc::new(
        s.identifier_filter(&ws.id, &job.id, 100_000)
            .await
            .unwrap()
            .expect("a filter for a large import into a small store"),
    );
    let bidx = |r: &ContactRow| r.email_bidx.clone().unwrap();
    assert!(filter.may_contain(&bidx(&before)));
    let (fresh, later) = (
        seal(&ws, &with_email("fresh@example.com")),
        seal(&ws, &with_email("later@example.com")),
    );
    assert!(!filter.may_contain(&bidx(&fresh)) && !filter.may_contain(&bidx(&later)));
    let unchanged = |rows: u64| BatchWrites {
        rows,
        counts: ImportCounts {
            read: rows,
            unchanged: rows,
            ..Default::default()
        },
        ..no_writes(&ws, &job.id)
    };
    let at = |first_row: u64, rows: &[&ContactRow]| BatchLookup {
        first_row,
        filter: Some(filter.clone()),
        ..lookup(&list.id, rows)
    };
    let found_ids = |found: BatchFound| found.contacts.iter().map(|c| c.row.id).collect::<Vec<_>>();

    let (plan, shown) = planner(Ok(unchanged(2)));
    s.apply_import_batch(&ws.id, Some(&job.id), at(0, &[&before, &fresh]), None, plan, false)
        .await
        .unwrap();
    assert_eq!(found_ids(shown.recv().unwrap()), vec![before.id]);
    let (plan, shown) = planner(Ok(unchanged(1)));
    s.apply_import_batch(&ws.id, Some(&job.id), at(2, &[&fresh]), None, plan, false)
        .await
        .unwrap();
    assert!(shown.recv().unwrap().contacts.is_empty());
    assert!(filter.in_use(), "the import's own batches keep the filter");

    let meanwhile = add_contact(b, &ws, "later@example.com", &[]).await;
    assert!(!filter.may_contain(&bidx(&later)), "the filter does not know of the other writer");
    let (plan, shown) = planner(Ok(unchanged(1)));
    s.apply_import_batch(&ws.id, Some(&job.id), at(3, &[&later]), None, plan, true)
        .await
        .unwrap();
    assert_eq!(found_ids(shown.recv().unwrap()), vec![meanwhile.id]);
    assert!(!filter.in_use(), "a contact created by another writer stops the filter");

    // No filter for an import that is small beside the contacts that exist.
    assert!(s.identifier_filter(&ws.id, &job.id, 9_999).await.unwrap().is_none());
}

/// Checks that no batch of `job` was applied: none of `rows`, no consent event, no
/// member of its list, no progress.
async fn assert_nothing_imported(b: &Backend, ws: &Ws, job: &ImportJob, rows: &[ContactRow], what: &str) {
    for row in rows {
        let found = b.store.find_contact(&ws.id, row.id, &ListScope::All).await.unwrap();
        assert_eq!(found, None, "{what}: a contact was written");
    }
    let consents = b
        .raw
        .count(&format!("SELECT COUNT(*) FROM consent_events WHERE workspace_id = '{}'", ws.id));
    assert_eq!(consents, 0, "{what}: a consent event was written");
    let members = b
        .store
        .list_contacts(&ws.id, Some(&job.list_id), &ListScope::All, None, 100)
        .await
        .unwrap();
    assert_eq!(members, vec![], "{what}: a membership was written");
    let progress = b.store.find_import(&ws.id, &job.id).await.unwrap();
    assert_eq!(progress.as_ref(), Some(job), "{what}: progress was written");
}

/// Adding members counts only new ones and refuses unknown contacts as a whole;
/// removing counts what it removed; `list_lists` counts live members in scope.
async fn list_members_are_counted_once(b: &Backend) {
    let ws = workspace(b, "t").await;
    let s = &b.store;
    let alpha = add_list(b, &ws, "alpha").await;
    let beta = add_list(b, &ws, "beta").await;
    let mut c = Vec::new();
    for i in 0..4 {
        c.push(add_contact(b, &ws, &format!("member{i}@example.com"), &[]).await.id);
    }
    let (w, alpha_id) = (&ws, alpha.id.as_str());
    let add = move |ids: Vec<Uuid>| s.add_list_members(&w.id, alpha_id, ids, now(), draft(w, "list.members_added"));
    let remove = move |ids: Vec<Uuid>| s.remove_list_members(&w.id, alpha_id, ids, draft(w, "list.members_removed"));
    let counts = move || async move {
        let lists = s.list_lists(&w.id, &ListScope::All).await.unwrap();
        lists.into_iter().map(|l| (l.name, l.member_count)).collect::<BTreeMap<_, _>>()
    };
    let members = move || async move {
        let rows = s.list_contacts(&w.id, Some(alpha_id), &ListScope::All, None, 100).await.unwrap();
        ids(&rows)
    };

    assert_eq!(add(vec![c[0], c[1]]).await.unwrap(), 2);
    assert_eq!(add(vec![c[1], c[2]]).await.unwrap(), 1, "only new members count");
    assert_eq!(
        counts().await,
        BTreeMap::from([("alpha".into(), Some(3)), ("beta".into(), Some(0))])
    );
    let seq = head(b, &ws).await.seq;
    expect_not_found(add(vec![c[3], random_id()]).await, "contact");
    assert_eq!(head(b, &ws).await.seq, seq);
    assert_eq!(members().await, sorted(vec![c[0], c[1], c[2]]), "a refused add added nobody");

    assert_eq!(remove(vec![c[0], random_id()]).await.unwrap(), 1);
    assert_eq!(remove(vec![c[0]]).await.unwrap(), 0);
    assert_eq!(members().await, sorted(vec![c[1], c[2]]));
    s.delete_contact(&ws.id, c[1], now(), draft(&ws, "contact.deleted")).await.unwrap();
    assert_eq!(counts().await[&"alpha".to_string()], Some(1), "deleted contacts are no members");
    assert_eq!(members().await, vec![c[2]]);

    let only_beta = ListScope::Lists(vec![beta.id.clone()]);
    let visible = s.list_lists(&ws.id, &only_beta).await.unwrap();
    assert_eq!(visible.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), vec![beta.id.as_str()]);
    assert_eq!(s.find_list(&ws.id, "alpha", &ListScope::All).await.unwrap().unwrap().id, alpha.id);
    assert_eq!(
        s.find_list(&ws.id, &alpha.id, &ListScope::All).await.unwrap().unwrap().name,
        "alpha"
    );
    assert_eq!(s.find_list(&ws.id, "alpha", &only_beta).await.unwrap(), None);

    // Another workspace cannot reach this workspace's list by its id.
    let other = workspace(b, "other").await;
    let theirs = add_contact(b, &other, "outsider@example.com", &[]).await.id;
    let seq = head(b, &other).await.seq;
    expect_not_found(
        s.add_list_members(&other.id, alpha_id, vec![theirs], now(), draft(&other, "list.members_added"))
            .await,
        "list",
    );
    expect_not_found(
        s.remove_list_members(&other.id, alpha_id, vec![c[2]], draft(&other, "list.members_removed"))
            .await,
        "list",
    );
    assert_eq!(head(b, &other).await.seq, seq);
    assert_eq!(members().await, vec![c[2]], "the list kept its members");

    s.delete_list(&ws.id, &alpha.id, draft(&ws, "list.deleted")).await.unwrap();
    assert_eq!(s.find_list(&ws.id, &alpha.id, &ListScope::All).await.unwrap(), None);
    assert_eq!(members().await, Vec::<Uuid>::new(), "a deleted list has no members");
    assert_eq!(counts().await, BTreeMap::from([("beta".into(), Some(0))]));
}

/// API keys are stored as given, listed per workspace, and record use and revocation
/// (only by their own workspace).
async fn api_keys_round_trip(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let first = api_key(&ws, "first", &[]);
    let second = api_key(&ws, "second", &["lst_a", "lst_b"]);
    let theirs = api_key(&other, "theirs", &[]);
    for (k, w) in [(&first, &ws), (&second, &ws), (&theirs, &other)] {
        s.create_api_key(k.clone(), draft(w, "api_key.created")).await.unwrap();
    }
    assert_eq!(head(b, &ws).await.action, "api_key.created");

    assert_eq!(s.find_api_key(&second.id).await.unwrap().unwrap().list_ids, second.list_ids);
    let mut listed = s.list_api_keys(&ws.id).await.unwrap();
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(format!("{listed:?}"), format!("{expected:?}"));
    assert_eq!(
        format!("{:?}", s.list_api_keys(&other.id).await.unwrap()),
        format!("{:?}", vec![theirs.clone()])
    );

    let (used, used_again, revoked) = (now(), now() + 1, now() + 2);
    s.touch_api_key(&first.id, used, Some(vec![7; 80])).await.unwrap();
    let touched = s.find_api_key(&first.id).await.unwrap().unwrap();
    assert_eq!((touched.last_used_at, touched.last_used_from), (Some(used), Some(vec![7; 80])));
    // A use without an address keeps the last address known.
    s.touch_api_key(&first.id, used_again, None).await.unwrap();
    assert_eq!(s.find_api_key(&first.id).await.unwrap().unwrap().last_used_from, Some(vec![7; 80]));
    assert!(s
        .revoke_api_key(&ws.id, &first.id, revoked, draft(&ws, "api_key.revoked"))
        .await
        .unwrap());
    let revocation = head(b, &ws).await;
    assert_eq!(revocation.action, "api_key.revoked");
    // Revoking again changes nothing and records nothing.
    assert!(!s
        .revoke_api_key(&ws.id, &first.id, revoked + 1, draft(&ws, "api_key.revoked"))
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await, revocation, "a second revocation left an audit event");
    let after = s.find_api_key(&first.id).await.unwrap().unwrap();
    let expected = ApiKeyRecord {
        last_used_at: Some(used_again),
        last_used_from: Some(vec![7; 80]),
        revoked_at: Some(revoked),
        ..first.clone()
    };
    assert_eq!(format!("{after:?}"), format!("{expected:?}"));
    assert_eq!(s.find_api_key(&second.id).await.unwrap().unwrap().revoked_at, None);

    expect_not_found(
        s.revoke_api_key(&ws.id, &theirs.id, now(), draft(&ws, "api_key.revoked")).await,
        "api key",
    );
    // Rotation: the successor is stored and the old key expires at the end of
    // the overlap (never later than it would have), with one event; a revoked or
    // foreign key is not rotated.
    let successor = api_key(&ws, "second", &["lst_a", "lst_b"]);
    let until = now() + 3_600_000_000;
    s.rotate_api_key(&ws.id, &second.id, successor.clone(), until, draft(&ws, "api_key.rotated"))
        .await
        .unwrap();
    assert_eq!(head(b, &ws).await.action, "api_key.rotated");
    assert_eq!(s.find_api_key(&second.id).await.unwrap().unwrap().expires_at, Some(until));
    assert_eq!(s.find_api_key(&successor.id).await.unwrap().unwrap().list_ids, successor.list_ids);
    let later = api_key(&ws, "second", &[]);
    s.rotate_api_key(&ws.id, &second.id, later, until + 1_000_000_000_000, draft(&ws, "api_key.rotated"))
        .await
        .unwrap();
    assert_eq!(
        s.find_api_key(&second.id).await.unwrap().unwrap().expires_at,
        Some(until),
        "never extended"
    );
    for (w, id) in [(&ws, &first.id), (&ws, &"kmissing".to_string()), (&other, &successor.id)] {
        expect_not_found(
            s.rotate_api_key(&w.id, id, api_key(w, "x", &[]), until, draft(w, "api_key.rotated"))
                .await,
            "api key",
        );
    }
    assert_eq!(s.find_api_key(&theirs.id).await.unwrap().unwrap().revoked_at, None);
}

/// An invited user with their invitation (sealed values are opaque bytes here).
fn invited_user(ws: &Ws, tag: u8, expires_in: i64) -> (UserRecord, InvitationRecord) {
    let at = now();
    let user = UserRecord {
        id: Uuid::now_v7(),
        workspace_id: ws.id.clone(),
        email_bidx: vec![tag; 16],
        user_key: vec![tag; 64],
        email_ct: vec![tag; 40],
        role: "marketer".into(),
        list_ids: vec!["lst_a".into()],
        password_hash: None,
        status: UserStatus::Invited,
        created_by: "cli".into(),
        created_at: at,
        updated_at: at,
        allowlist: vec![],
        password_change_required: false,
    };
    let invitation = InvitationRecord {
        token_hash: vec![tag; 32],
        workspace_id: ws.id.clone(),
        user_id: user.id,
        created_at: at,
        expires_at: at + expires_in,
        used_at: None,
    };
    (user, invitation)
}

/// Users round-trip; an address has one user; an invitation is used once and
/// not after it expires; disabling revokes the user's keys and is recorded once;
/// removal deletes the user and their invitations; every change has its event.
async fn users_and_invitations_round_trip(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let hour = 3_600_000_000;
    let (alice, alice_invite) = invited_user(&ws, 1, 72 * hour);
    let (late, late_invite) = invited_user(&ws, 2, -1);
    s.create_user(alice.clone(), alice_invite.clone(), draft(&ws, "user.invited"))
        .await
        .unwrap();
    s.create_user(late.clone(), late_invite.clone(), draft(&ws, "user.invited"))
        .await
        .unwrap();
    assert_eq!(head(b, &ws).await.action, "user.invited");
    let (twin, twin_invite) = invited_user(&ws, 1, hour);
    let before = head(b, &ws).await;
    expect_conflict(s.create_user(twin, twin_invite, draft(&ws, "user.invited")).await, "email");
    assert_eq!(head(b, &ws).await, before, "a refused user left an audit event");

    assert_eq!(s.find_user(&ws.id, alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(s.find_user(&other.id, alice.id).await.unwrap(), None, "another workspace's user");
    assert_eq!(s.find_user_by_email(&ws.id, &[1; 16]).await.unwrap(), Some(alice.clone()));
    assert_eq!(s.find_user_by_email(&other.id, &[1; 16]).await.unwrap(), None);
    assert_eq!(s.list_users(&ws.id).await.unwrap(), vec![alice.clone(), late.clone()]);
    assert_eq!(s.list_users(&other.id).await.unwrap(), vec![]);
    assert_eq!(s.find_invitation(&[1; 32]).await.unwrap(), Some(alice_invite.clone()));
    assert_eq!(s.find_invitation(&[9; 32]).await.unwrap(), None);

    // An invited user cannot be enabled before choosing a password.
    expect_conflict(
        s.set_user_status(&ws.id, alice.id, UserStatus::Active, now(), draft(&ws, "user.enabled"))
            .await,
        "user status",
    );
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_string();
    let accepted_at = now();
    s.accept_invitation(&[1; 32], hash.clone(), accepted_at, draft(&ws, "user.invitation_accepted"))
        .await
        .unwrap();
    let active = s.find_user(&ws.id, alice.id).await.unwrap().unwrap();
    assert_eq!(
        (active.status, active.password_hash.as_deref(), active.updated_at),
        (UserStatus::Active, Some(hash.as_str()), accepted_at)
    );
    assert_eq!(s.find_invitation(&[1; 32]).await.unwrap().unwrap().used_at, Some(accepted_at));
    let accepted = head(b, &ws).await;
    assert_eq!(accepted.action, "user.invitation_accepted");
    for (token, what) in [([1; 32], "a used invitation"), ([2; 32], "an expired invitation")] {
        match s
            .accept_invitation(&token, hash.clone(), now(), draft(&ws, "user.invitation_accepted"))
            .await
        {
            Err(StoreError::Ended("invitation")) => {}
            other => panic!("{what} was accepted: {other:?}"),
        }
    }
    expect_not_found(
        s.accept_invitation(&[9; 32], hash.clone(), now(), draft(&ws, "user.invitation_accepted"))
            .await,
        "invitation",
    );
    assert_eq!(head(b, &ws).await, accepted, "refused invitations left audit events");
    assert_eq!(s.find_user(&ws.id, late.id).await.unwrap().unwrap().status, UserStatus::Invited);

    // Disabling revokes the keys the user created, once.
    let mut theirs = api_key(&ws, "alice's", &[]);
    theirs.created_by = format!("user:{}", alice.id);
    let mine = api_key(&ws, "cli's", &[]);
    for k in [&theirs, &mine] {
        s.create_api_key(k.clone(), draft(&ws, "api_key.created")).await.unwrap();
    }
    let off = now();
    assert!(s
        .set_user_status(&ws.id, alice.id, UserStatus::Disabled, off, draft(&ws, "user.disabled"))
        .await
        .unwrap());
    let disabled = head(b, &ws).await;
    assert_eq!(disabled.action, "user.disabled");
    assert!(!s
        .set_user_status(&ws.id, alice.id, UserStatus::Disabled, now(), draft(&ws, "user.disabled"))
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await, disabled, "disabling twice recorded twice");
    assert_eq!(s.find_user(&ws.id, alice.id).await.unwrap().unwrap().status, UserStatus::Disabled);
    assert_eq!(s.find_api_key(&theirs.id).await.unwrap().unwrap().revoked_at, Some(off));
    assert_eq!(s.find_api_key(&mine.id).await.unwrap().unwrap().revoked_at, None, "only their keys");
    assert!(s
        .set_user_status(&ws.id, alice.id, UserStatus::Active, now(), draft(&ws, "user.enabled"))
        .await
        .unwrap());
    assert_eq!(
        s.find_api_key(&theirs.id).await.unwrap().unwrap().revoked_at,
        Some(off),
        "enabling revives no key"
    );
    expect_not_found(
        s.set_user_status(&other.id, alice.id, UserStatus::Disabled, now(), draft(&other, "user.disabled"))
            .await,
        "user",
    );

    // Removal deletes the user and their invitations; another workspace cannot.
    expect_not_found(
        s.remove_user(&other.id, late.id, now(), draft(&other, "user.removed")).await,
        "user",
    );
    s.remove_user(&ws.id, late.id, now(), draft(&ws, "user.removed")).await.unwrap();
    assert_eq!(head(b, &ws).await.action, "user.removed");
    assert_eq!(s.find_user(&ws.id, late.id).await.unwrap(), None);
    assert_eq!(s.find_invitation(&[2; 32]).await.unwrap(), None);
    expect_not_found(s.remove_user(&ws.id, late.id, now(), draft(&ws, "user.removed")).await, "user");
    assert_eq!(s.list_users(&ws.id).await.unwrap().len(), 1);
}

fn session_of(user: &UserRecord, tag: u8) -> SessionRecord {
    let at = now();
    SessionRecord {
        id: Uuid::now_v7(),
        token_hash: vec![tag; 32],
        workspace_id: user.workspace_id.clone(),
        user_id: user.id,
        created_at: at,
        last_seen_at: at,
        expires_at: at + 3_600_000_000,
        ended_at: None,
        ip_hash: Some("ip".into()),
        factor_required: tag == 2,
        factor_verified_at: None,
        enrolment_required: false,
    }
}

/// Sessions are found by token hash with their user, list newest first, end
/// once with one event, end all at once when their user is disabled, and go
/// with a removed user; a rehash replaces the stored hash.
async fn sessions_round_trip(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let (user, invite) = invited_user(&ws, 3, 3_600_000_000);
    s.create_user(user.clone(), invite, draft(&ws, "user.invited")).await.unwrap();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_string();
    s.accept_invitation(&[3; 32], hash, now(), draft(&ws, "user.invitation_accepted"))
        .await
        .unwrap();
    let rehashed = "$argon2id$v=19$m=19456,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_string();
    s.update_password_hash(&ws.id, user.id, rehashed.clone(), now()).await.unwrap();
    let user = s.find_user(&ws.id, user.id).await.unwrap().unwrap();
    assert_eq!(user.password_hash.as_deref(), Some(rehashed.as_str()));
    expect_not_found(s.update_password_hash(&other.id, user.id, rehashed.clone(), now()).await, "user");

    let (first, second) = (session_of(&user, 1), session_of(&user, 2));
    for session in [&first, &second] {
        s.create_session(session.clone(), draft(&ws, "user.signed_in")).await.unwrap();
    }
    assert_eq!(head(b, &ws).await.action, "user.signed_in");
    assert_eq!(s.find_session(&[1; 32]).await.unwrap(), Some((first.clone(), user.clone())));
    assert_eq!(s.find_session(&[9; 32]).await.unwrap(), None);
    let later = first.last_seen_at + 5_000_000;
    s.touch_session(first.id, later).await.unwrap();
    s.touch_session(first.id, later - 1).await.unwrap();
    assert_eq!(
        s.find_session(&[1; 32]).await.unwrap().unwrap().0.last_seen_at,
        later,
        "activity never goes back"
    );
    let listed: Vec<Uuid> = s.list_sessions(&ws.id, user.id).await.unwrap().iter().map(|x| x.id).collect();
    assert_eq!(listed, vec![second.id, first.id], "newest first");
    assert_eq!(s.list_sessions(&other.id, user.id).await.unwrap(), vec![]);

    assert!(s
        .end_session(&ws.id, user.id, first.id, now(), draft(&ws, "user.session_ended"))
        .await
        .unwrap());
    let ended = head(b, &ws).await;
    assert_eq!(ended.action, "user.session_ended");
    assert!(!s
        .end_session(&ws.id, user.id, first.id, now(), draft(&ws, "user.session_ended"))
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await, ended, "ending twice recorded twice");
    expect_not_found(
        s.end_session(&ws.id, random_id(), second.id, now(), draft(&ws, "user.session_ended"))
            .await,
        "session",
    );
    assert!(s.find_session(&[1; 32]).await.unwrap().unwrap().0.ended_at.is_some());

    // A password change ends every session, with its event.
    let third = session_of(&user, 5);
    s.create_session(third.clone(), draft(&ws, "user.signed_in")).await.unwrap();
    let chosen = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaG5ld2hhc2g".to_string();
    let changed_at = now();
    s.change_password(&ws.id, user.id, chosen.clone(), changed_at, draft(&ws, "user.password_changed"))
        .await
        .unwrap();
    assert_eq!(head(b, &ws).await.action, "user.password_changed");
    assert_eq!(s.find_user(&ws.id, user.id).await.unwrap().unwrap().password_hash, Some(chosen));
    assert_eq!(s.find_session(&[5; 32]).await.unwrap().unwrap().0.ended_at, Some(changed_at));
    let third_again = session_of(&user, 6);
    s.create_session(third_again, draft(&ws, "user.signed_in")).await.unwrap();

    // Disabling ends every session at once; removal takes them away.
    let off = now();
    s.set_user_status(&ws.id, user.id, UserStatus::Disabled, off, draft(&ws, "user.disabled"))
        .await
        .unwrap();
    assert_eq!(s.find_session(&[6; 32]).await.unwrap().unwrap().0.ended_at, Some(off));
    assert_eq!(s.list_sessions(&ws.id, user.id).await.unwrap(), vec![]);
    s.remove_user(&ws.id, user.id, now(), draft(&ws, "user.removed")).await.unwrap();
    assert_eq!(s.find_session(&[6; 32]).await.unwrap(), None);
}

/// A TOTP seed is pending until confirmed (which replaces the recovery codes and
/// ends the user's sessions); each time step and each recovery code is used
/// once; a session's factor is checked once, and its fifth wrong code ends it;
/// removing the factors ends the sessions and is recorded once.
async fn second_factors_round_trip(b: &Backend) {
    let ws = workspace(b, "t").await;
    let s = &b.store;
    let (user, invite) = invited_user(&ws, 4, 3_600_000_000);
    s.create_user(user.clone(), invite, draft(&ws, "user.invited")).await.unwrap();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_string();
    s.accept_invitation(&[4; 32], hash, now(), draft(&ws, "user.invitation_accepted"))
        .await
        .unwrap();
    let totp = |seed: u8| TotpRecord {
        user_id: user.id,
        workspace_id: ws.id.clone(),
        secret_ct: vec![seed; 48],
        created_at: now(),
        confirmed_at: None,
        last_step: 0,
    };
    assert_eq!(s.find_totp(&ws.id, user.id).await.unwrap(), None);
    s.start_totp(totp(1), draft(&ws, "user.totp_enrolment_started")).await.unwrap();
    s.start_totp(totp(2), draft(&ws, "user.totp_enrolment_started")).await.unwrap();
    assert_eq!(
        s.find_totp(&ws.id, user.id).await.unwrap().unwrap().secret_ct,
        vec![2; 48],
        "a new enrolment replaces a pending one"
    );
    assert!(!s.use_totp_step(&ws.id, user.id, 5).await.unwrap(), "a pending seed is no factor");

    let session = session_of(&user, 7);
    s.create_session(session.clone(), draft(&ws, "user.signed_in")).await.unwrap();
    let confirmed_at = now();
    s.confirm_totp(
        &ws.id,
        user.id,
        100,
        vec![vec![1; 32], vec![2; 32]],
        confirmed_at,
        draft(&ws, "user.totp_enrolled"),
    )
    .await
    .unwrap();
    assert_eq!(head(b, &ws).await.action, "user.totp_enrolled");
    let stored = s.find_totp(&ws.id, user.id).await.unwrap().unwrap();
    assert_eq!((stored.confirmed_at, stored.last_step), (Some(confirmed_at), 100));
    assert!(
        s.find_session(&[7; 32]).await.unwrap().unwrap().0.ended_at.is_some(),
        "confirming ended the sessions"
    );
    match s
        .confirm_totp(&ws.id, user.id, 101, vec![], now(), draft(&ws, "user.totp_enrolled"))
        .await
    {
        Err(StoreError::Ended("enrolment")) => {}
        other => panic!("a second confirmation: {other:?}"),
    }
    expect_conflict(
        s.start_totp(totp(3), draft(&ws, "user.totp_enrolment_started")).await,
        "second factor",
    );

    assert!(
        !s.use_totp_step(&ws.id, user.id, 100).await.unwrap(),
        "the confirming step was used"
    );
    assert!(s.use_totp_step(&ws.id, user.id, 101).await.unwrap());
    assert!(!s.use_totp_step(&ws.id, user.id, 101).await.unwrap(), "a step works once");
    assert!(!s.use_totp_step(&ws.id, user.id, 99).await.unwrap(), "an older step");
    assert!(s.use_recovery_code(&ws.id, user.id, &[1; 32], now()).await.unwrap());
    assert!(
        !s.use_recovery_code(&ws.id, user.id, &[1; 32], now()).await.unwrap(),
        "a recovery code works once"
    );
    assert!(!s.use_recovery_code(&ws.id, user.id, &[9; 32], now()).await.unwrap());

    // A session waiting for its factor: verified once; five wrong codes end another.
    let mut waiting = session_of(&user, 8);
    waiting.factor_required = true;
    s.create_session(waiting.clone(), draft(&ws, "user.signed_in")).await.unwrap();
    let verified_at = now();
    s.verify_session_factor(waiting.id, vec![18; 32], verified_at, draft(&ws, "user.second_factor_verified"))
        .await
        .unwrap();
    assert_eq!(s.find_session(&[8; 32]).await.unwrap(), None, "the old token stopped");
    assert_eq!(
        s.find_session(&[18; 32]).await.unwrap().unwrap().0.factor_verified_at,
        Some(verified_at)
    );
    // A step-up checks again and renews again.
    let stepped_at = verified_at + 60_000_000;
    s.verify_session_factor(waiting.id, vec![28; 32], stepped_at, draft(&ws, "user.second_factor_verified"))
        .await
        .unwrap();
    assert_eq!(
        s.find_session(&[28; 32]).await.unwrap().unwrap().0.factor_verified_at,
        Some(stepped_at)
    );

    let mut guessed = session_of(&user, 9);
    guessed.factor_required = true;
    s.create_session(guessed.clone(), draft(&ws, "user.signed_in")).await.unwrap();
    for attempt in 1..=5 {
        let ended = s
            .fail_session_factor(guessed.id, 5, now(), draft(&ws, "user.second_factor_failed"))
            .await
            .unwrap();
        assert_eq!(ended, attempt == 5, "attempt {attempt}");
    }
    assert!(s.find_session(&[9; 32]).await.unwrap().unwrap().0.ended_at.is_some());

    assert!(s
        .remove_second_factors(&ws.id, user.id, now(), draft(&ws, "user.second_factor_reset"))
        .await
        .unwrap());
    let reset = head(b, &ws).await;
    assert_eq!(reset.action, "user.second_factor_reset");
    assert_eq!(s.find_totp(&ws.id, user.id).await.unwrap(), None);
    assert!(
        !s.use_recovery_code(&ws.id, user.id, &[2; 32], now()).await.unwrap(),
        "the recovery codes went too"
    );
    assert!(
        s.find_session(&[28; 32]).await.unwrap().unwrap().0.ended_at.is_some(),
        "resetting ended the sessions"
    );
    assert!(matches!(
        s.verify_session_factor(waiting.id, vec![38; 32], now(), draft(&ws, "user.second_factor_verified"))
            .await,
        Err(StoreError::Ended("session"))
    ));
    assert!(!s
        .remove_second_factors(&ws.id, user.id, now(), draft(&ws, "user.second_factor_reset"))
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await, reset, "resetting twice recorded twice");
}

/// A key whose stored scopes, lists or allowlist were damaged (not JSON) reads
/// as holding nothing, limited to no list and usable from no address: damage
/// never widens a key. The same for the workspace's allowlist.
async fn damaged_key_lists_read_as_allowing_nothing(b: &Backend) {
    let ws = workspace(b, "t").await;
    let s = &b.store;
    let key = api_key(&ws, "damaged", &["lst_a"]);
    s.create_api_key(key.clone(), draft(&ws, "api_key.created")).await.unwrap();
    s.set_allowlist(
        &ws.id,
        AllowlistSubject::Workspace,
        vec!["203.0.113.0/24".into()],
        now(),
        draft(&ws, "security.allowlist_changed"),
    )
    .await
    .unwrap();
    b.raw
        .execute(&format!(
            "UPDATE api_keys SET scopes = 'x', list_ids = '[', allowlist = '{{' WHERE id = '{}'",
            key.id
        ))
        .unwrap();
    b.raw.execute("UPDATE workspace_security SET allowlist = 'not json'").unwrap();
    let read = s.find_api_key(&key.id).await.unwrap().unwrap();
    assert_eq!(read.scopes, [UNREADABLE]);
    assert_eq!(read.list_ids, [UNREADABLE], "not an empty list, which would mean every list");
    assert_eq!(read.allowlist, [UNREADABLE]);
    assert!(!consentry::access::allowlist::Allowlist::from_stored(&read.allowlist).permits("203.0.113.1".parse().ok()));
    assert_eq!(s.workspace_allowlist(&ws.id).await.unwrap(), [UNREADABLE]);
    let (joined, workspace_list) = s.find_api_key_with_allowlist(&key.id).await.unwrap().unwrap();
    assert_eq!(joined, read);
    assert_eq!(workspace_list, [UNREADABLE], "not an empty list, which would mean any address");
}

/// Passkeys: stored per user, a credential once per workspace, each use a
/// compare-and-set, removal and a second-factor reset end the sessions;
/// ceremonies are taken once, only by their kind and before they expire.
async fn passkeys_and_ceremonies_round_trip(b: &Backend) {
    let ws = workspace(b, "t").await;
    let other = workspace(b, "u").await;
    let s = &b.store;
    let (user, invite) = invited_user(&ws, 5, 3_600_000_000);
    s.create_user(user.clone(), invite, draft(&ws, "user.invited")).await.unwrap();
    let passkey = |tag: u8, credential: u8| PasskeyRecord {
        id: Uuid::now_v7(),
        workspace_id: ws.id.clone(),
        user_id: user.id,
        credential_hash: vec![credential; 32],
        credential_ct: vec![tag; 80],
        name_ct: vec![tag; 40],
        uses: 0,
        created_at: now(),
        last_used_at: None,
    };
    assert!(s.list_passkeys(&ws.id, user.id).await.unwrap().is_empty());
    let session = session_of(&user, 41);
    s.create_session(session.clone(), draft(&ws, "user.signed_in")).await.unwrap();
    let first = passkey(1, 1);
    s.add_passkey(
        first.clone(),
        Some(vec![vec![7; 32], vec![8; 32]]),
        10,
        draft(&ws, "user.passkey_enrolled"),
    )
    .await
    .unwrap();
    assert_eq!(head(b, &ws).await.action, "user.passkey_enrolled");
    assert!(
        s.find_session(&[41; 32]).await.unwrap().unwrap().0.ended_at.is_some(),
        "a new factor ends the sessions"
    );
    assert!(s.use_recovery_code(&ws.id, user.id, &[7; 32], now()).await.unwrap());
    let before = head(b, &ws).await;
    assert!(matches!(
        s.add_passkey(passkey(2, 1), None, 10, draft(&ws, "user.passkey_enrolled")).await,
        Err(StoreError::Conflict { field: "passkey" })
    ));
    assert_eq!(head(b, &ws).await, before, "a refused passkey records nothing");
    let mut stranger = passkey(3, 3);
    stranger.user_id = Uuid::now_v7();
    assert!(matches!(
        s.add_passkey(stranger, None, 10, draft(&ws, "user.passkey_enrolled")).await,
        Err(StoreError::NotFound("user"))
    ));
    let mut elsewhere = passkey(4, 4);
    elsewhere.workspace_id = other.id.clone();
    assert!(matches!(
        s.add_passkey(elsewhere, None, 10, draft(&other, "user.passkey_enrolled")).await,
        Err(StoreError::NotFound("user"))
    ));
    let second = passkey(5, 5);
    s.add_passkey(second.clone(), None, 10, draft(&ws, "user.passkey_enrolled"))
        .await
        .unwrap();
    // The limit is counted when the passkey is stored, whatever was seen when its
    // registration began.
    let before = head(b, &ws).await;
    assert!(matches!(
        s.add_passkey(passkey(6, 6), None, 2, draft(&ws, "user.passkey_enrolled")).await,
        Err(StoreError::Conflict { field: "passkeys" })
    ));
    assert_eq!(head(b, &ws).await, before, "a passkey over the limit records nothing");
    assert!(
        s.use_recovery_code(&ws.id, user.id, &[8; 32], now()).await.unwrap(),
        "without new codes the old ones stay"
    );
    assert_eq!(s.list_passkeys(&ws.id, user.id).await.unwrap(), vec![first.clone(), second.clone()]);
    assert!(s.list_passkeys(&other.id, user.id).await.unwrap().is_empty());

    // Each use is a compare-and-set on `uses`.
    let at = now();
    assert!(s.use_passkey(&ws.id, first.id, 0, vec![9; 80], at).await.unwrap());
    assert!(
        !s.use_passkey(&ws.id, first.id, 0, vec![10; 80], at).await.unwrap(),
        "a use raced by another"
    );
    assert!(!s.use_passkey(&other.id, first.id, 1, vec![10; 80], at).await.unwrap());
    let used = s.list_passkeys(&ws.id, user.id).await.unwrap().remove(0);
    assert_eq!(
        (used.uses, used.credential_ct.clone(), used.last_used_at),
        (1, vec![9; 80], Some(at))
    );

    // Removal ends the sessions; a second time it finds nothing.
    let later = session_of(&user, 42);
    s.create_session(later, draft(&ws, "user.signed_in")).await.unwrap();
    assert!(s
        .remove_passkey(&ws.id, user.id, first.id, now(), draft(&ws, "user.passkey_removed"))
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await.action, "user.passkey_removed");
    assert!(s.find_session(&[42; 32]).await.unwrap().unwrap().0.ended_at.is_some());
    let removed = head(b, &ws).await;
    assert!(!s
        .remove_passkey(&ws.id, user.id, first.id, now(), draft(&ws, "user.passkey_removed"))
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await, removed);
    // A second-factor reset takes the passkeys too.
    assert!(s
        .remove_second_factors(&ws.id, user.id, now(), draft(&ws, "user.second_factor_reset"))
        .await
        .unwrap());
    assert!(s.list_passkeys(&ws.id, user.id).await.unwrap().is_empty());

    // Ceremonies.
    let ceremony = |kind: CeremonyKind, expires_in: i64| {
        let at = now();
        CeremonyRecord {
            id: Uuid::now_v7(),
            workspace_id: ws.id.clone(),
            kind,
            user_id: Some(user.id),
            session_id: Some(Uuid::now_v7()),
            state_ct: vec![6; 100],
            created_at: at,
            expires_at: at + expires_in,
        }
    };
    let register = ceremony(CeremonyKind::Register, 300_000_000);
    s.create_ceremony(register.clone()).await.unwrap();
    assert_eq!(s.take_ceremony(register.id, CeremonyKind::Factor, now()).await.unwrap(), None);
    assert_eq!(
        s.take_ceremony(register.id, CeremonyKind::Register, now()).await.unwrap(),
        Some(register.clone())
    );
    assert_eq!(
        s.take_ceremony(register.id, CeremonyKind::Register, now()).await.unwrap(),
        None,
        "answered once"
    );
    let mut sign_in = ceremony(CeremonyKind::SignIn, 300_000_000);
    sign_in.user_id = None;
    sign_in.session_id = None;
    s.create_ceremony(sign_in.clone()).await.unwrap();
    let expired = ceremony(CeremonyKind::Factor, 1_000);
    s.create_ceremony(expired.clone()).await.unwrap();
    assert_eq!(
        s.take_ceremony(expired.id, CeremonyKind::Factor, expired.expires_at).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        s.take_ceremony(sign_in.id, CeremonyKind::SignIn, now()).await.unwrap(),
        Some(sign_in)
    );
}

/// Failed sign-ins count per workspace, scope and key, start over when the
/// first one is older than the window, and are forgotten on demand.
async fn sign_in_failures_count_within_their_window(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let (t0, window) = (now(), 900_000_000);
    assert_eq!(s.sign_in_failures(&ws.id, "account", &[1; 32]).await.unwrap(), None);
    for (i, at) in [t0, t0 + 10, t0 + 20].into_iter().enumerate() {
        let f = s.record_sign_in_failure(&ws.id, "account", &[1; 32], at, window).await.unwrap();
        assert_eq!((f.failures, f.first_at, f.last_at), (i as i64 + 1, t0, at));
    }
    s.record_sign_in_failure(&ws.id, "address", &[1; 32], t0, window).await.unwrap();
    s.record_sign_in_failure(&other.id, "account", &[1; 32], t0, window).await.unwrap();
    assert_eq!(s.sign_in_failures(&ws.id, "account", &[1; 32]).await.unwrap().unwrap().failures, 3);
    assert_eq!(s.sign_in_failures(&ws.id, "address", &[1; 32]).await.unwrap().unwrap().failures, 1);
    assert_eq!(
        s.sign_in_failures(&other.id, "account", &[1; 32]).await.unwrap().unwrap().failures,
        1
    );
    let late = t0 + window;
    let f = s.record_sign_in_failure(&ws.id, "account", &[1; 32], late, window).await.unwrap();
    assert_eq!((f.failures, f.first_at), (1, late), "a count older than the window starts over");
    s.clear_sign_in_failures(&ws.id, "account", &[1; 32]).await.unwrap();
    assert_eq!(s.sign_in_failures(&ws.id, "account", &[1; 32]).await.unwrap(), None);
    assert!(
        s.sign_in_failures(&ws.id, "address", &[1; 32]).await.unwrap().is_some(),
        "only that key"
    );
}

/// A workspace requires no second factor until told so, per workspace, and a
/// change is recorded once.
async fn second_factor_requirement_round_trip(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    assert!(!s.second_factor_required(&ws.id).await.unwrap());
    assert!(s
        .set_second_factor_required(&ws.id, true, now(), draft(&ws, "security.changed"))
        .await
        .unwrap());
    let changed = head(b, &ws).await;
    assert!(!s
        .set_second_factor_required(&ws.id, true, now(), draft(&ws, "security.changed"))
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await, changed, "setting it again recorded again");
    assert!(s.second_factor_required(&ws.id).await.unwrap());
    assert!(!s.second_factor_required(&other.id).await.unwrap());
    assert!(s
        .set_second_factor_required(&ws.id, false, now(), draft(&ws, "security.changed"))
        .await
        .unwrap());
    assert!(!s.second_factor_required(&ws.id).await.unwrap());
}

/// Allowlists of the workspace, a user and a key are set with one event each,
/// read back with their records, stay in their workspace, and setting the same
/// list again records nothing.
async fn allowlists_round_trip(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    assert_eq!(s.workspace_allowlist(&ws.id).await.unwrap(), Vec::<String>::new());
    let office = vec!["203.0.113.0/24".to_string(), "2001:db8::/48".to_string()];
    assert!(s
        .set_allowlist(
            &ws.id,
            AllowlistSubject::Workspace,
            office.clone(),
            now(),
            draft(&ws, "security.allowlist_changed")
        )
        .await
        .unwrap());
    let changed = head(b, &ws).await;
    assert_eq!(changed.action, "security.allowlist_changed");
    assert!(!s
        .set_allowlist(
            &ws.id,
            AllowlistSubject::Workspace,
            office.clone(),
            now(),
            draft(&ws, "security.allowlist_changed")
        )
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await, changed, "setting it again recorded again");
    assert_eq!(s.workspace_allowlist(&ws.id).await.unwrap(), office);
    assert_eq!(s.workspace_allowlist(&other.id).await.unwrap(), Vec::<String>::new());
    // The second-factor requirement and the allowlist share a row and leave each other be.
    s.set_second_factor_required(&ws.id, true, now(), draft(&ws, "security.changed"))
        .await
        .unwrap();
    assert_eq!(s.workspace_allowlist(&ws.id).await.unwrap(), office);

    let (user, invitation) = invited_user(&ws, 7, 3_600_000_000);
    s.create_user(user.clone(), invitation, draft(&ws, "user.invited")).await.unwrap();
    let key = api_key(&ws, "k", &[]);
    s.create_api_key(key.clone(), draft(&ws, "api_key.created")).await.unwrap();
    let home = vec!["198.51.100.7/32".to_string()];
    assert!(s
        .set_allowlist(
            &ws.id,
            AllowlistSubject::User(user.id),
            home.clone(),
            now(),
            draft(&ws, "user.allowlist_changed")
        )
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await.action, "user.allowlist_changed");
    assert_eq!(s.find_user(&ws.id, user.id).await.unwrap().unwrap().allowlist, home);
    assert!(s
        .set_allowlist(
            &ws.id,
            AllowlistSubject::Key(key.id.clone()),
            home.clone(),
            now(),
            draft(&ws, "api_key.allowlist_changed")
        )
        .await
        .unwrap());
    assert_eq!(head(b, &ws).await.action, "api_key.allowlist_changed");
    assert_eq!(s.find_api_key(&key.id).await.unwrap().unwrap().allowlist, home);
    // A key is read with its workspace's list in one go, and with no list when
    // its workspace has none.
    let (joined, workspace_list) = s.find_api_key_with_allowlist(&key.id).await.unwrap().unwrap();
    assert_eq!(joined, s.find_api_key(&key.id).await.unwrap().unwrap());
    assert_eq!(workspace_list, office);
    let elsewhere = api_key(&other, "k2", &[]);
    s.create_api_key(elsewhere.clone(), draft(&other, "api_key.created")).await.unwrap();
    let (_, none) = s.find_api_key_with_allowlist(&elsewhere.id).await.unwrap().unwrap();
    assert_eq!(none, Vec::<String>::new());
    assert!(s.find_api_key_with_allowlist("kmissing").await.unwrap().is_none());
    assert!(s
        .set_allowlist(
            &ws.id,
            AllowlistSubject::Key(key.id.clone()),
            vec![],
            now(),
            draft(&ws, "api_key.allowlist_changed")
        )
        .await
        .unwrap());
    assert_eq!(s.find_api_key(&key.id).await.unwrap().unwrap().allowlist, Vec::<String>::new());

    // Another workspace's user or key, or none at all, is not found, with no event.
    let before = head(b, &other).await;
    expect_not_found(
        s.set_allowlist(
            &other.id,
            AllowlistSubject::User(user.id),
            home.clone(),
            now(),
            draft(&other, "user.allowlist_changed"),
        )
        .await,
        "user",
    );
    expect_not_found(
        s.set_allowlist(
            &other.id,
            AllowlistSubject::Key(key.id.clone()),
            home.clone(),
            now(),
            draft(&other, "api_key.allowlist_changed"),
        )
        .await,
        "api key",
    );
    assert_eq!(head(b, &other).await, before);
}

/// "Reset all passwords" marks the users with a password and ends every session
/// of the workspace (only), and a password change clears the mark; "rotate all
/// keys" rotates every key given in one transaction with one event, or none.
async fn password_resets_and_key_rotations_cover_the_workspace(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_string();
    let (active, invite) = invited_user(&ws, 4, 3_600_000_000);
    s.create_user(active.clone(), invite, draft(&ws, "user.invited")).await.unwrap();
    s.accept_invitation(&[4; 32], hash.clone(), now(), draft(&ws, "user.invitation_accepted"))
        .await
        .unwrap();
    let (invited, invite) = invited_user(&ws, 5, 3_600_000_000);
    s.create_user(invited.clone(), invite, draft(&ws, "user.invited")).await.unwrap();
    let (theirs, invite) = invited_user(&other, 6, 3_600_000_000);
    s.create_user(theirs.clone(), invite, draft(&other, "user.invited")).await.unwrap();
    s.accept_invitation(&[6; 32], hash.clone(), now(), draft(&other, "user.invitation_accepted"))
        .await
        .unwrap();
    let mine = session_of(&active, 41);
    let their_session = session_of(&theirs, 42);
    s.create_session(mine.clone(), draft(&ws, "user.signed_in")).await.unwrap();
    s.create_session(their_session.clone(), draft(&other, "user.signed_in"))
        .await
        .unwrap();

    assert_eq!(
        s.require_password_changes(&ws.id, now(), draft(&ws, "security.passwords_reset"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(head(b, &ws).await.action, "security.passwords_reset");
    assert!(s.find_user(&ws.id, active.id).await.unwrap().unwrap().password_change_required);
    assert!(
        !s.find_user(&ws.id, invited.id).await.unwrap().unwrap().password_change_required,
        "no password yet"
    );
    assert!(!s.find_user(&other.id, theirs.id).await.unwrap().unwrap().password_change_required);
    assert!(s.find_session(&[41; 32]).await.unwrap().unwrap().0.ended_at.is_some());
    assert_eq!(s.find_session(&[42; 32]).await.unwrap().unwrap().0.ended_at, None);
    s.change_password(&ws.id, active.id, hash.clone(), now(), draft(&ws, "user.password_changed"))
        .await
        .unwrap();
    assert!(!s.find_user(&ws.id, active.id).await.unwrap().unwrap().password_change_required);

    let (k1, k2) = (api_key(&ws, "a", &[]), api_key(&ws, "b", &[]));
    for k in [&k1, &k2] {
        s.create_api_key(k.clone(), draft(&ws, "api_key.created")).await.unwrap();
    }
    let until = now() + 60_000_000;
    let (n1, n2) = (api_key(&ws, "a", &[]), api_key(&ws, "b", &[]));
    s.rotate_api_keys(
        &ws.id,
        vec![(k1.id.clone(), n1.clone()), (k2.id.clone(), n2.clone())],
        until,
        draft(&ws, "api_key.rotated_all"),
    )
    .await
    .unwrap();
    assert_eq!(head(b, &ws).await.action, "api_key.rotated_all");
    for (old, new) in [(&k1, &n1), (&k2, &n2)] {
        assert_eq!(s.find_api_key(&old.id).await.unwrap().unwrap().expires_at, Some(until));
        assert!(s.find_api_key(&new.id).await.unwrap().is_some());
    }
    // One key that cannot be rotated (another workspace's) leaves everything as it was.
    let before = head(b, &ws).await;
    let foreign = api_key(&other, "x", &[]);
    s.create_api_key(foreign.clone(), draft(&other, "api_key.created")).await.unwrap();
    let lost = api_key(&ws, "c", &[]);
    expect_not_found(
        s.rotate_api_keys(
            &ws.id,
            vec![(n1.id.clone(), lost.clone()), (foreign.id.clone(), api_key(&ws, "d", &[]))],
            until,
            draft(&ws, "api_key.rotated_all"),
        )
        .await,
        "api key",
    );
    assert_eq!(head(b, &ws).await, before);
    assert!(s.find_api_key(&lost.id).await.unwrap().is_none(), "rolled back");
    assert_ne!(s.find_api_key(&n1.id).await.unwrap().unwrap().expires_at, Some(until));
}

/// Custom roles are created once per name and workspace, listed by name,
/// changed with their holders' sessions ended (and no one else's), kept while
/// held, and deleted; a user's role change ends their sessions.
async fn custom_roles_round_trip(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let role = |w: &Ws, name: &str, perms: &[&str]| RoleRecord {
        workspace_id: w.id.clone(),
        name: name.into(),
        permissions: perms.iter().map(ToString::to_string).collect(),
        created_by: "cli".into(),
        created_at: now(),
        updated_at: now(),
    };
    let support = role(&ws, "support", &["contacts:read_masked", "contacts:read"]);
    s.create_role(support.clone(), draft(&ws, "role.created")).await.unwrap();
    s.create_role(role(&ws, "desk", &["contacts:read_masked"]), draft(&ws, "role.created"))
        .await
        .unwrap();
    let before = head(b, &ws).await;
    expect_conflict(
        s.create_role(role(&ws, "support", &["audit:read"]), draft(&ws, "role.created"))
            .await,
        "role name",
    );
    assert_eq!(head(b, &ws).await, before);
    s.create_role(role(&other, "support", &["audit:read"]), draft(&other, "role.created"))
        .await
        .unwrap();
    let names: Vec<String> = s.list_roles(&ws.id).await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["desk", "support"]);
    assert_eq!(s.list_roles(&ws.id).await.unwrap()[1], support);

    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_string();
    let (holder, invite) = invited_user(&ws, 51, 3_600_000_000);
    let holder = UserRecord {
        role: "support".into(),
        ..holder
    };
    s.create_user(holder.clone(), invite, draft(&ws, "user.invited")).await.unwrap();
    s.accept_invitation(&[51; 32], hash.clone(), now(), draft(&ws, "user.invitation_accepted"))
        .await
        .unwrap();
    let (mixed, invite) = invited_user(&ws, 52, 3_600_000_000);
    let mixed = UserRecord {
        role: "viewer,desk".into(),
        ..mixed
    };
    s.create_user(mixed.clone(), invite, draft(&ws, "user.invited")).await.unwrap();
    s.accept_invitation(&[52; 32], hash.clone(), now(), draft(&ws, "user.invitation_accepted"))
        .await
        .unwrap();
    for (user, tag) in [(&holder, 53u8), (&mixed, 54u8)] {
        s.create_session(session_of(user, tag), draft(&ws, "user.signed_in")).await.unwrap();
    }
    s.update_role(
        &ws.id,
        "support",
        vec!["contacts:read_masked".into()],
        now(),
        draft(&ws, "role.changed"),
    )
    .await
    .unwrap();
    assert_eq!(head(b, &ws).await.action, "role.changed");
    assert_eq!(s.list_roles(&ws.id).await.unwrap()[1].permissions, ["contacts:read_masked"]);
    assert!(
        s.find_session(&[53; 32]).await.unwrap().unwrap().0.ended_at.is_some(),
        "the holder's session ended"
    );
    assert_eq!(
        s.find_session(&[54; 32]).await.unwrap().unwrap().0.ended_at,
        None,
        "not another role's"
    );
    expect_not_found(
        s.update_role(&other.id, "desk", vec![], now(), draft(&other, "role.changed")).await,
        "role",
    );

    // Held roles stay; a role change ends the user's sessions.
    expect_conflict(s.delete_role(&ws.id, "desk", draft(&ws, "role.deleted")).await, "role in use");
    s.set_user_role(
        &ws.id,
        mixed.id,
        "viewer".into(),
        vec!["lst_a".into()],
        now(),
        draft(&ws, "user.role_changed"),
    )
    .await
    .unwrap();
    assert_eq!(head(b, &ws).await.action, "user.role_changed");
    let changed = s.find_user(&ws.id, mixed.id).await.unwrap().unwrap();
    assert_eq!(
        (changed.role.as_str(), changed.list_ids.clone()),
        ("viewer", vec!["lst_a".to_string()])
    );
    assert!(s.find_session(&[54; 32]).await.unwrap().unwrap().0.ended_at.is_some());
    expect_not_found(
        s.set_user_role(
            &other.id,
            mixed.id,
            "viewer".into(),
            vec![],
            now(),
            draft(&other, "user.role_changed"),
        )
        .await,
        "user",
    );
    s.delete_role(&ws.id, "desk", draft(&ws, "role.deleted")).await.unwrap();
    assert_eq!(head(b, &ws).await.action, "role.deleted");
    expect_not_found(s.delete_role(&ws.id, "desk", draft(&ws, "role.deleted")).await, "role");
    assert_eq!(s.list_roles(&other.id).await.unwrap().len(), 1, "the other workspace's role stays");
}

/// Recent events of some actions come newest first, from the time given, in
/// their workspace only, at most as many as asked.
async fn recent_audit_filters_by_action_and_time(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    let start = now();
    let mut failed = Vec::new();
    for i in 0..5 {
        s.record_audit(draft(&ws, "contact.read_unmasked")).await.unwrap();
        let action = if i % 2 == 0 { "user.sign_in_failed" } else { "auth.failed" };
        failed.push(s.record_audit(draft(&ws, action)).await.unwrap());
    }
    s.record_audit(draft(&other, "auth.failed")).await.unwrap();
    let actions = vec!["user.sign_in_failed".to_string(), "auth.failed".to_string()];
    let recent = s.recent_audit(&ws.id, actions.clone(), start, 100).await.unwrap();
    failed.reverse();
    assert_eq!(recent, failed);
    assert_eq!(
        s.recent_audit(&ws.id, actions.clone(), start, 2).await.unwrap(),
        failed[..2].to_vec()
    );
    let later = failed[1].at + 1;
    assert!(s
        .recent_audit(&ws.id, actions.clone(), later, 100)
        .await
        .unwrap()
        .iter()
        .all(|e| e.at >= later));
    assert_eq!(s.recent_audit(&ws.id, vec!["nothing".into()], start, 100).await.unwrap(), vec![]);
    assert_eq!(s.recent_audit(&other.id, actions, start, 100).await.unwrap().len(), 1);
}

/// Checkpoints come back per workspace, in sequence order, with signatures that
/// still verify.
async fn checkpoints_round_trip(b: &Backend) {
    let (ws, other) = (workspace(b, "t").await, workspace(b, "other").await);
    let s = &b.store;
    add_list(b, &ws, "newsletter").await;
    s.record_audit(draft(&ws, "contact.read_unmasked")).await.unwrap();
    let sign = |w: &Ws, e: &AuditEvent| {
        let at = now();
        let signature = w.keys.sign_checkpoint(&Checkpoint::message(&w.id, e.seq, &e.hash, at));
        Checkpoint {
            workspace_id: w.id.clone(),
            seq: e.seq,
            hash: e.hash.clone(),
            at,
            signature: hex::encode(signature),
        }
    };
    let events = s.list_audit(&ws.id, 0, 10).await.unwrap();
    assert_eq!(events.len(), 3);
    let (early, late) = (sign(&ws, &events[0]), sign(&ws, &events[2]));
    let theirs = sign(&other, &head(b, &other).await);
    // Inserted newest first: the vault takes the last one listed as the latest.
    for cp in [&late, &early, &theirs] {
        s.insert_checkpoint(cp.clone()).await.unwrap();
    }

    let listed = s.list_checkpoints(&ws.id).await.unwrap();
    assert_eq!(listed, vec![early, late]);
    for cp in &listed {
        let signature = hex::decode(&cp.signature).unwrap();
        let message = Checkpoint::message(&cp.workspace_id, cp.seq, &cp.hash, cp.at);
        assert!(verify_checkpoint(&ws.keys.audit_public_key(), &message, &signature));
    }
    assert_eq!(s.list_checkpoints(&other.id).await.unwrap(), vec![theirs]);
    let report = ws.vault.verify_audit(&ws.id).await.unwrap();
    assert_eq!((report.events, report.checkpoints, report.problem), (3, 2, None));

    // The same head signed again (another server, a moment later): kept once.
    let again = sign(&ws, &events[2]);
    s.insert_checkpoint(again).await.unwrap();
    assert_eq!(s.list_checkpoints(&ws.id).await.unwrap().len(), 2);
    // Another hash for a signed sequence number: refused, the first one stays.
    let mut forged = sign(&ws, &events[2]);
    forged.hash = events[1].hash.clone();
    let err = s.insert_checkpoint(forged).await.expect_err("a second hash for a signed seq");
    assert!(format!("{err:?}").contains("another hash"), "{err:?}");
    assert_eq!(s.list_checkpoints(&ws.id).await.unwrap(), listed);
}
