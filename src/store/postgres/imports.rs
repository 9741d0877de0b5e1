//! Import jobs of the PostgreSQL backend: start-or-resume, and one batch per
//! transaction with the job's progress. The job row is locked (`FOR UPDATE`) for
//! the batch, so two servers never apply batches of one job at the same time; the
//! batch's identifiers are looked up with a few set-based queries. Its rows reach
//! PostgreSQL by binary COPY: new contacts, their memberships and the consent
//! ledger straight into their tables (COPY inserts many rows per call, where an
//! INSERT ... SELECT inserts one at a time), changed contacts and memberships of
//! existing ones through a temporary staging table and one set-based upsert.

use super::{audit, contacts, map_err};
use crate::audit::AuditDraft;
use crate::store::identifiers::{self, IdentifierFilter};
use crate::store::recent::{self, RecentWrites};
use crate::store::{
    BatchFound, BatchLookup, BatchPrefetch, ConsentEventRow, ContactRow, ExistingContact, ImportCounts, ImportJob, ImportPlanner,
    ImportStatus, StoreError, StoreResult,
};
use futures_util::pin_mut;
use std::collections::{HashMap, HashSet};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, IsolationLevel, Row, Transaction};
use uuid::Uuid;

const JOB_COLUMNS: &str = "id, workspace_id, file_hash, options_hash, uploader, list_id, source, status, rows_done, read_count, created_count, updated_count, unchanged_count, suppressed_count, rejected_count, error, created_at, finished_at";

fn job_from_row(r: &Row) -> ImportJob {
    let n = |i: usize| -> u64 { r.get::<_, i64>(i).max(0) as u64 };
    ImportJob {
        id: r.get(0),
        workspace_id: r.get(1),
        file_hash: r.get(2),
        options_hash: r.get(3),
        uploader: r.get(4),
        list_id: r.get(5),
        source: r.get(6),
        status: ImportStatus::parse(&r.get::<_, String>(7)),
        rows_done: n(8),
        counts: ImportCounts {
            read: n(9),
            created: n(10),
            updated: n(11),
            unchanged: n(12),
            suppressed: n(13),
            rejected: n(14),
        },
        error: r.get(15),
        created_at: r.get(16),
        finished_at: r.get(17),
    }
}

pub async fn find<C: GenericClient>(c: &C, ws: &str, id: &str) -> Result<Option<ImportJob>, tokio_postgres::Error> {
    Ok(c.query_opt(
        &format!("SELECT {JOB_COLUMNS} FROM imports WHERE workspace_id = $1 AND id = $2"),
        &[&ws, &id],
    )
    .await?
    .as_ref()
    .map(job_from_row))
}

pub async fn begin<C: GenericClient>(c: &C, job: ImportJob, draft: &AuditDraft) -> StoreResult<ImportJob> {
    // One start at a time per file and options, across servers.
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 9153))",
        &[&format!("{}|{}|{}", job.workspace_id, job.file_hash, job.options_hash)],
    )
    .await
    .map_err(map_err)?;
    let existing = c
        .query_opt(
            &format!(
                "SELECT {JOB_COLUMNS} FROM imports WHERE workspace_id = $1 AND file_hash = $2 AND options_hash = $3 AND status = 'running' ORDER BY created_at LIMIT 1"
            ),
            &[&job.workspace_id, &job.file_hash, &job.options_hash],
        )
        .await
        .map_err(map_err)?;
    if let Some(found) = existing {
        return Ok(job_from_row(&found));
    }
    c.execute(
        "INSERT INTO imports (id, workspace_id, file_hash, options_hash, uploader, list_id, source, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8)",
        &[&job.id, &job.workspace_id, &job.file_hash, &job.options_hash, &job.uploader, &job.list_id, &job.source, &job.created_at],
    )
    .await
    .map_err(map_err)?;
    audit::append(c, draft).await?;
    Ok(job)
}

/// The staging table of changed contacts and memberships of existing contacts:
/// temporary (never in the WAL, private to the connection), emptied at every
/// commit.
const STAGING: &str = "SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS import_contacts (
    id BYTEA NOT NULL, workspace_id TEXT, email_bidx BYTEA, phone_bidx BYTEA, email_ct BYTEA,
    phone_ct BYTEA, first_name_ct BYTEA, last_name_ct BYTEA, attributes_ct BYTEA, segment_attributes TEXT,
    updated_at BIGINT, write BOOLEAN NOT NULL, member BOOLEAN NOT NULL
) ON COMMIT DELETE ROWS;
SET LOCAL client_min_messages = notice";

/// The batch's changes of existing contacts and their list memberships, from the
/// staging table in one statement (never a deleted contact, never one of another
/// workspace; the contact key and creation time stay).
const UPSERT: &str = "WITH written AS (
    UPDATE contacts c SET email_bidx = s.email_bidx, phone_bidx = s.phone_bidx, email_ct = s.email_ct,
        phone_ct = s.phone_ct, first_name_ct = s.first_name_ct, last_name_ct = s.last_name_ct,
        attributes_ct = s.attributes_ct, segment_attributes = s.segment_attributes, updated_at = s.updated_at
    FROM import_contacts s
    WHERE s.write AND c.id = s.id AND c.workspace_id = s.workspace_id AND c.deleted_at IS NULL
    RETURNING 1
), members AS (
    INSERT INTO list_members (list_id, contact_id, added_at)
    SELECT $1, id, $2 FROM import_contacts WHERE member
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM members)";

/// Applies one batch; returns its counts and the job's rows done before and after.
/// The batch's rows reach PostgreSQL by binary COPY into staging tables and go
/// into place with one set-based upsert, all in the caller's transaction: the
/// batch and the job's progress commit together or not at all, which is what
/// makes a rerun after a crash resume exactly where the last commit ended. A
/// prefetched look-up is used when nothing committed since its snapshot concerns
/// the batch (`store::recent`); otherwise the batch is looked up again here.
pub async fn apply_batch(
    c: &Transaction<'_>,
    ws: &str,
    id: &str,
    lookup: BatchLookup,
    prefetched: Option<BatchPrefetch>,
    mut planner: ImportPlanner,
    recent: &RecentWrites,
) -> StoreResult<(ImportCounts, u64, u64)> {
    let job = c
        .query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM imports WHERE workspace_id = $1 AND id = $2 FOR UPDATE"),
            &[&ws, &id],
        )
        .await
        .map_err(map_err)?
        .as_ref()
        .map(job_from_row)
        .ok_or(StoreError::NotFound("import"))?;
    if job.status != ImportStatus::Running {
        return Err(StoreError::Ended("import"));
    }
    recent::check_start(&job, &lookup)?;
    let ahead = match prefetched {
        Some(pre) => {
            let since = audit_since(c, ws, pre.audit_head).await.map_err(map_err)?;
            recent.writes_ahead(ws, &lookup, pre, since, &mut planner)
        }
        None => None,
    };
    let writes = match ahead {
        Some(writes) => writes,
        None => planner.plan(look_up(c, ws, &lookup).await.map_err(map_err)?),
    }
    .map_err(StoreError::Backend)?;
    let touched = recent::touched_by(&lookup, &writes);
    copy_new_contacts(c, &writes.inserts).await.map_err(map_err)?;
    let new: HashSet<Uuid> = writes.inserts.iter().map(|r| r.id).collect();
    let (new_members, old_members): (Vec<Uuid>, Vec<Uuid>) = writes.memberships.iter().partition(|id| new.contains(id));
    copy_memberships(c, &lookup.list_id, &new_members, writes.at)
        .await
        .map_err(map_err)?;
    if !writes.updates.is_empty() || !old_members.is_empty() {
        c.batch_execute(STAGING).await.map_err(map_err)?;
        stage_changes(c, &writes.updates, &old_members).await.map_err(map_err)?;
        c.query_one(UPSERT, &[&lookup.list_id, &writes.at]).await.map_err(map_err)?;
    }
    // The audit append holds the workspace's chain until the commit: as late as
    // the consent events (which name its sequence number) allow.
    let event = audit::append(c, &writes.audit).await?;
    copy_consents(c, &writes.consents, event.seq).await.map_err(map_err)?;
    if !writes.rejections.is_empty() {
        let rows: Vec<i64> = writes.rejections.iter().map(|r| r.row as i64).collect();
        let cols: Vec<&str> = writes.rejections.iter().map(|r| r.column.as_str()).collect();
        let reasons: Vec<&str> = writes.rejections.iter().map(|r| r.reason.as_str()).collect();
        c.execute(
            "INSERT INTO import_rejections (import_id, row_number, column_name, reason)
             SELECT $1, r, col, reason FROM UNNEST($2::int8[], $3::text[], $4::text[]) AS t(r, col, reason) ON CONFLICT DO NOTHING",
            &[&id, &rows, &cols, &reasons],
        )
        .await
        .map_err(map_err)?;
    }
    let k = writes.counts;
    let n = |v: u64| v as i64;
    c.execute(
        "UPDATE imports SET rows_done = rows_done + $3, read_count = read_count + $4, created_count = created_count + $5,
         updated_count = updated_count + $6, unchanged_count = unchanged_count + $7, suppressed_count = suppressed_count + $8,
         rejected_count = rejected_count + $9 WHERE workspace_id = $1 AND id = $2",
        &[
            &ws,
            &id,
            &n(writes.rows),
            &n(k.read),
            &n(k.created),
            &n(k.updated),
            &n(k.unchanged),
            &n(k.suppressed),
            &n(k.rejected),
        ],
    )
    .await
    .map_err(map_err)?;
    recent.record(ws, event.seq, &event.hash, touched);
    Ok((k, job.rows_done, job.rows_done + writes.rows))
}

/// Looks a batch up in a read-only snapshot of its own, with the audit head of
/// that snapshot; `None` when the job is not running (the batch then looks up
/// under its locks).
pub async fn prefetch(
    c: &mut deadpool_postgres::Object,
    ws: &str,
    id: &str,
    lookup: &BatchLookup,
) -> Result<Option<BatchPrefetch>, tokio_postgres::Error> {
    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    if tx
        .query_opt(
            "SELECT 1 FROM imports WHERE workspace_id = $1 AND id = $2 AND status = 'running'",
            &[&ws, &id],
        )
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let audit_head = audit_head(&*tx, ws).await?;
    let found = look_up(&*tx, ws, lookup).await?;
    tx.commit().await?;
    Ok(Some(BatchPrefetch {
        found_contacts: found.contacts.iter().map(|c| c.row.id).collect(),
        found,
        audit_head,
        planned: None,
    }))
}

/// Sequence numbers and hashes of the workspace's audit events after `seq`, in
/// order; `None` when there are more than 64 (far more than a look-up ahead of
/// one batch can still use).
async fn audit_since<C: GenericClient>(c: &C, ws: &str, seq: i64) -> Result<Option<Vec<(i64, String)>>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT seq, hash FROM audit_events WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT 65",
            &[&ws, &seq],
        )
        .await?;
    Ok((rows.len() <= 64).then(|| rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

/// The sequence number of the workspace's newest audit event (0 when none).
async fn audit_head<C: GenericClient>(c: &C, ws: &str) -> Result<i64, tokio_postgres::Error> {
    Ok(
        c.query_one("SELECT COALESCE(MAX(seq), 0) FROM audit_events WHERE workspace_id = $1", &[&ws])
            .await?
            .get(0),
    )
}

/// COPYs the batch's new contacts into `contacts`. A unique index that refuses
/// one fails the batch (another writer gave the identifier to a contact since
/// the look-up); the rerun looks it up again.
async fn copy_new_contacts(c: &Transaction<'_>, rows: &[ContactRow]) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sink = c
        .copy_in(
            "COPY contacts (id, workspace_id, email_bidx, phone_bidx, contact_key, email_ct, phone_ct, first_name_ct,
             last_name_ct, attributes_ct, segment_attributes, created_at, updated_at) FROM STDIN BINARY",
        )
        .await?;
    let (b, t, i) = (Type::BYTEA, Type::TEXT, Type::INT8);
    let types = [
        b.clone(),
        t.clone(),
        b.clone(),
        b.clone(),
        b.clone(),
        b.clone(),
        b.clone(),
        b.clone(),
        b.clone(),
        b,
        t,
        i.clone(),
        i,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for row in rows {
        writer
            .as_mut()
            .write(&[
                &row.id.as_bytes().as_slice(),
                &row.workspace_id,
                &row.email_bidx,
                &row.phone_bidx,
                &row.contact_key,
                &row.email_ct,
                &row.phone_ct,
                &row.first_name_ct,
                &row.last_name_ct,
                &row.attributes_ct,
                &row.segment_attributes,
                &row.created_at,
                &row.updated_at,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// COPYs the list memberships of the batch's new contacts (nobody else can have
/// added them yet) into `list_members`.
async fn copy_memberships(c: &Transaction<'_>, list_id: &str, contacts: &[Uuid], at: i64) -> Result<(), tokio_postgres::Error> {
    if contacts.is_empty() {
        return Ok(());
    }
    let sink = c
        .copy_in("COPY list_members (list_id, contact_id, added_at) FROM STDIN BINARY")
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::BYTEA, Type::INT8]);
    pin_mut!(writer);
    for contact in contacts {
        writer.as_mut().write(&[&list_id, &contact.as_bytes().as_slice(), &at]).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// COPYs the batch's changed contacts, and the existing contacts it adds to the
/// list, into `import_contacts`.
async fn stage_changes(c: &Transaction<'_>, updates: &[ContactRow], members: &[Uuid]) -> Result<(), tokio_postgres::Error> {
    let sink = c
        .copy_in(
            "COPY import_contacts (id, workspace_id, email_bidx, phone_bidx, email_ct, phone_ct, first_name_ct,
             last_name_ct, attributes_ct, segment_attributes, updated_at, write, member) FROM STDIN BINARY",
        )
        .await?;
    let (b, t, i, f) = (Type::BYTEA, Type::TEXT, Type::INT8, Type::BOOL);
    let types = [
        b.clone(),
        t.clone(),
        b.clone(),
        b.clone(),
        b.clone(),
        b.clone(),
        b.clone(),
        b.clone(),
        b,
        t,
        i,
        f.clone(),
        f,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let mut members: HashSet<Uuid> = members.iter().copied().collect();
    for row in updates {
        let member = members.remove(&row.id);
        writer
            .as_mut()
            .write(&[
                &row.id.as_bytes().as_slice(),
                &row.workspace_id,
                &row.email_bidx,
                &row.phone_bidx,
                &row.email_ct,
                &row.phone_ct,
                &row.first_name_ct,
                &row.last_name_ct,
                &row.attributes_ct,
                &row.segment_attributes,
                &row.updated_at,
                &true,
                &member,
            ])
            .await?;
    }
    let none = None::<&[u8]>;
    let (no_text, no_int) = (None::<&str>, None::<i64>);
    // Contacts that only join the list.
    for contact in &members {
        writer
            .as_mut()
            .write(&[
                &contact.as_bytes().as_slice(),
                &no_text,
                &none,
                &none,
                &none,
                &none,
                &none,
                &none,
                &none,
                &no_text,
                &no_int,
                &false,
                &true,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// COPYs the batch's consent events into the ledger, in order (the sequence
/// numbers follow the order of the rows), each naming the batch's audit event.
async fn copy_consents(c: &Transaction<'_>, events: &[ConsentEventRow], audit_seq: i64) -> Result<(), tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let sink = c
        .copy_in(
            "COPY consent_events (id, workspace_id, contact_id, channel, purpose, action, method, source, evidence,
             private_evidence_ct, actor, occurred_at, recorded_at, audit_seq) FROM STDIN BINARY",
        )
        .await?;
    let (b, t, i) = (Type::BYTEA, Type::TEXT, Type::INT8);
    let types = [
        b.clone(),
        t.clone(),
        b.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        b,
        t,
        i.clone(),
        i.clone(),
        i,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for e in events {
        writer
            .as_mut()
            .write(&[
                &e.id.as_bytes().as_slice(),
                &e.workspace_id,
                &e.contact_id.as_bytes().as_slice(),
                &e.channel,
                &e.purpose,
                &e.action,
                &e.method,
                &e.source,
                &e.evidence,
                &e.private_evidence_ct,
                &e.actor,
                &e.occurred_at,
                &e.recorded_at,
                &audit_seq,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// The identifier filter of an import (`store::identifiers`), from one snapshot:
/// the workspace's audit head and every blind index in the database, streamed.
/// The unique indexes hold no workspace, so other workspaces' identifiers are
/// read too; they only make the filter answer "maybe" a little more often.
pub async fn identifier_filter(
    c: &mut deadpool_postgres::Object,
    ws: &str,
    import_id: &str,
    new_rows: u64,
) -> Result<Option<IdentifierFilter>, tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let head = audit_head(&*tx, ws).await?;
    let bound = i64::try_from(identifiers::count_bound(new_rows)).unwrap_or(i64::MAX);
    let existing: i64 = tx
        .query_one("SELECT count(*) FROM (SELECT 1 FROM contacts LIMIT $1) t", &[&bound])
        .await?
        .get(0);
    let existing = existing.max(0) as u64;
    if !identifiers::worth_building(existing, new_rows) {
        return Ok(None);
    }
    let filter = IdentifierFilter::new(import_id, 2 * (existing + new_rows), head);
    for sql in [
        "SELECT email_bidx FROM contacts WHERE email_bidx IS NOT NULL",
        "SELECT phone_bidx FROM contacts WHERE phone_bidx IS NOT NULL",
    ] {
        let rows = tx.query_raw(sql, std::iter::empty::<i64>()).await?;
        pin_mut!(rows);
        while let Some(r) = rows.try_next().await? {
            filter.insert(r.get::<_, &[u8]>(0));
        }
    }
    tx.commit().await?;
    Ok(Some(filter))
}

/// Whether the batch's filter may be trusted now: the audit events committed
/// since its last check are taken in (`IdentifierFilter::check_events`).
async fn filter_holds<C: GenericClient>(c: &C, ws: &str, filter: &IdentifierFilter) -> Result<bool, tokio_postgres::Error> {
    if !filter.in_use() {
        return Ok(false);
    }
    let rows = c
        .query(
            "SELECT seq, action, target FROM audit_events WHERE workspace_id = $1 AND seq > $2 ORDER BY seq",
            &[&ws, &filter.checked()],
        )
        .await?;
    Ok(filter.check_events(
        rows.iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, &str>(1), r.get::<_, Option<&str>>(2))),
    ))
}

/// What exists for a batch's identifiers: a handful of set-based queries.
/// Identifiers the import's filter reports absent are left out.
pub async fn look_up<C: GenericClient>(c: &C, ws: &str, lookup: &BatchLookup) -> Result<BatchFound, tokio_postgres::Error> {
    let mut found = BatchFound::default();
    let filter = match &lookup.filter {
        Some(f) if filter_holds(c, ws, f).await? => Some(f.as_ref()),
        _ => None,
    };
    let maybe = |b: &&Vec<u8>| !filter.is_some_and(|f| f.absent(b));
    let all: Vec<&[u8]> = lookup
        .email_bidx
        .iter()
        .chain(lookup.phone_bidx.iter())
        .map(Vec::as_slice)
        .collect();
    if all.is_empty() {
        return Ok(found);
    }
    for r in c
        .query(
            "SELECT bidx FROM suppressions WHERE workspace_id = $1 AND bidx = ANY($2)",
            &[&ws, &all],
        )
        .await?
    {
        found.suppressed.push(r.get(0));
    }
    // One query per identifier kind, each answered by its unique index alone (an
    // OR of both, or a workspace condition, lets the planner pick a plan that reads
    // the whole workspace when statistics are stale, as during a first import).
    let mut rows = Vec::new();
    for (column, values) in [("email_bidx", &lookup.email_bidx), ("phone_bidx", &lookup.phone_bidx)] {
        if values.is_empty() {
            continue;
        }
        let values: Vec<&[u8]> = values.iter().filter(maybe).map(Vec::as_slice).collect();
        if values.is_empty() {
            continue;
        }
        rows.extend(
            c.query(
                &format!("SELECT {} FROM contacts c WHERE c.{column} = ANY($1)", contacts::CONTACT_COLUMNS),
                &[&values],
            )
            .await?,
        );
    }
    let mut seen = HashSet::new();
    let rows: Vec<_> = rows
        .iter()
        .map(contacts::contact_from_row)
        .filter(|r| r.workspace_id == ws && seen.insert(r.id))
        .collect();
    if rows.is_empty() {
        return Ok(found);
    }
    let ids: Vec<&[u8]> = rows.iter().map(|r| r.id.as_bytes().as_slice()).collect();
    let members: HashSet<Vec<u8>> = c
        .query(
            "SELECT contact_id FROM list_members WHERE list_id = $1 AND contact_id = ANY($2)",
            &[&lookup.list_id, &ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The current state: the newest ledger event of each channel and purpose.
    let mut consent: HashMap<Vec<u8>, Vec<(String, String, String)>> = HashMap::new();
    for r in c
        .query(
            "SELECT DISTINCT ON (contact_id, channel, purpose) contact_id, channel, purpose, action FROM consent_events
             WHERE contact_id = ANY($1) ORDER BY contact_id, channel, purpose, seq DESC",
            &[&ids],
        )
        .await?
    {
        consent.entry(r.get(0)).or_default().push((r.get(1), r.get(2), r.get(3)));
    }
    for row in rows {
        let key = row.id.as_bytes().to_vec();
        let in_list = members.contains(&key);
        let consent = consent.remove(&key).unwrap_or_default();
        found.contacts.push(ExistingContact { row, in_list, consent });
    }
    Ok(found)
}
