//! Import jobs of the SQLite backend: start-or-resume, and one batch per transaction
//! with the job's progress, so a crash loses at most the uncommitted batch and a
//! rerun continues exactly after the last committed one. A batch is looked up
//! ahead of its turn in the writer's transaction and planned off the writer
//! thread; at its turn the writer keeps that plan only if nothing written since
//! concerns the batch (`store::recent`).

use super::{audit, contacts, map_err};
use crate::audit::AuditDraft;
use crate::store::identifiers::{self, IdentifierFilter};
use crate::store::recent::{self, RecentWrites};
use crate::store::{
    BatchFound, BatchLookup, BatchPrefetch, ExistingContact, ImportCounts, ImportJob, ImportPlanner, ImportStatus, StoreError, StoreResult,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashSet;

const JOB_COLUMNS: &str = "id, workspace_id, file_hash, options_hash, uploader, list_id, source, status, rows_done, read_count, created_count, updated_count, unchanged_count, suppressed_count, rejected_count, error, created_at, finished_at";

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<ImportJob> {
    let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)? as u64) };
    Ok(ImportJob {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        file_hash: r.get(2)?,
        options_hash: r.get(3)?,
        uploader: r.get(4)?,
        list_id: r.get(5)?,
        source: r.get(6)?,
        status: ImportStatus::parse(&r.get::<_, String>(7)?),
        rows_done: n(8)?,
        counts: ImportCounts {
            read: n(9)?,
            created: n(10)?,
            updated: n(11)?,
            unchanged: n(12)?,
            suppressed: n(13)?,
            rejected: n(14)?,
        },
        error: r.get(15)?,
        created_at: r.get(16)?,
        finished_at: r.get(17)?,
    })
}

pub fn find(c: &Connection, ws: &str, id: &str) -> rusqlite::Result<Option<ImportJob>> {
    c.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM imports WHERE workspace_id = ?1 AND id = ?2"))?
        .query_row(params![ws, id], job_from_row)
        .optional()
}

pub fn begin(c: &Connection, job: ImportJob, draft: &AuditDraft) -> StoreResult<ImportJob> {
    let existing = c
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM imports WHERE workspace_id = ?1 AND file_hash = ?2 AND options_hash = ?3 AND status = 'running' ORDER BY created_at LIMIT 1"
        ))
        .and_then(|mut s| s.query_row(params![job.workspace_id, job.file_hash, job.options_hash], job_from_row).optional())
        .map_err(map_err)?;
    if let Some(found) = existing {
        return Ok(found);
    }
    c.execute(
        "INSERT INTO imports (id, workspace_id, file_hash, options_hash, uploader, list_id, source, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8)",
        params![job.id, job.workspace_id, job.file_hash, job.options_hash, job.uploader, job.list_id, job.source, job.created_at],
    )
    .map_err(map_err)?;
    audit::append(c, draft)?;
    Ok(job)
}

/// Looks a batch up ahead of its turn, in the writer's connection (inside the
/// import's open transaction, so earlier batches not yet committed are seen),
/// with the workspace's audit head; `None` when the job is not running.
pub fn prefetch(c: &Connection, ws: &str, id: &str, lookup: &BatchLookup) -> rusqlite::Result<Option<BatchPrefetch>> {
    if find(c, ws, id)?.is_none_or(|j| j.status != ImportStatus::Running) {
        return Ok(None);
    }
    let audit_head = audit_head(c, ws)?;
    let found = look_up(c, ws, lookup)?;
    Ok(Some(BatchPrefetch {
        found_contacts: found.contacts.iter().map(|c| c.row.id).collect(),
        found,
        audit_head,
        planned: None,
    }))
}

fn audit_head(c: &Connection, ws: &str) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM audit_events WHERE workspace_id = ?1")?
        .query_row([ws], |r| r.get(0))
}

/// Sequence numbers and hashes of the workspace's audit events after `seq`, in
/// order; `None` when there are more than 64.
fn audit_since(c: &Connection, ws: &str, seq: i64) -> rusqlite::Result<Option<Vec<(i64, String)>>> {
    let rows: Vec<(i64, String)> = c
        .prepare_cached("SELECT seq, hash FROM audit_events WHERE workspace_id = ?1 AND seq > ?2 ORDER BY seq LIMIT 65")?
        .query_map(params![ws, seq], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((rows.len() <= 64).then_some(rows))
}

/// Applies one batch: its look-up made ahead (and the plan made on it) when
/// nothing written since concerns the batch (`store::recent`), otherwise a
/// look-up and plan made here.
pub fn apply_batch(
    c: &Connection,
    ws: &str,
    id: &str,
    lookup: BatchLookup,
    prefetched: Option<BatchPrefetch>,
    mut planner: ImportPlanner,
    recent: &RecentWrites,
) -> StoreResult<ImportCounts> {
    let job = find(c, ws, id).map_err(map_err)?.ok_or(StoreError::NotFound("import"))?;
    if job.status != ImportStatus::Running {
        return Err(StoreError::Ended("import"));
    }
    recent::check_start(&job, &lookup)?;
    let ahead = match prefetched {
        Some(pre) => {
            let since = audit_since(c, ws, pre.audit_head).map_err(map_err)?;
            recent.writes_ahead(ws, &lookup, pre, since, &mut planner)
        }
        None => None,
    };
    let mut writes = match ahead {
        Some(writes) => writes,
        None => planner.plan(look_up(c, ws, &lookup).map_err(map_err)?),
    }
    .map_err(StoreError::Backend)?;
    let event = audit::append(c, &writes.audit)?;
    recent.record(ws, event.seq, &event.hash, recent::touched_by(&lookup, &writes));
    for row in &writes.inserts {
        contacts::insert(c, row).map_err(map_err)?;
    }
    for row in &writes.updates {
        contacts::update(c, row).map_err(map_err)?;
    }
    for contact in &writes.memberships {
        contacts::add_member(c, &lookup.list_id, *contact, writes.at).map_err(map_err)?;
    }
    for e in &mut writes.consents {
        e.audit_seq = event.seq;
        contacts::insert_consent(c, e).map_err(map_err)?;
    }
    {
        let mut s = c
            .prepare_cached("INSERT OR IGNORE INTO import_rejections (import_id, row_number, column_name, reason) VALUES (?1, ?2, ?3, ?4)")
            .map_err(map_err)?;
        for r in &writes.rejections {
            s.execute(params![id, r.row as i64, r.column, r.reason]).map_err(map_err)?;
        }
    }
    let k = writes.counts;
    c.prepare_cached(
        "UPDATE imports SET rows_done = rows_done + ?3, read_count = read_count + ?4, created_count = created_count + ?5,
         updated_count = updated_count + ?6, unchanged_count = unchanged_count + ?7, suppressed_count = suppressed_count + ?8,
         rejected_count = rejected_count + ?9 WHERE workspace_id = ?1 AND id = ?2",
    )
    .and_then(|mut s| {
        s.execute(params![
            ws,
            id,
            writes.rows as i64,
            k.read as i64,
            k.created as i64,
            k.updated as i64,
            k.unchanged as i64,
            k.suppressed as i64,
            k.rejected as i64
        ])
    })
    .map_err(map_err)?;
    Ok(k)
}

/// The identifier filter of an import (`store::identifiers`), from one read
/// transaction: the workspace's audit head and every blind index in the store.
/// The unique indexes hold no workspace, so other workspaces' identifiers are
/// read too; they only make the filter answer "maybe" a little more often.
pub fn identifier_filter(c: &Connection, ws: &str, import_id: &str, new_rows: u64) -> rusqlite::Result<Option<IdentifierFilter>> {
    c.execute_batch("BEGIN")?;
    let built = (|| {
        let head: i64 = c.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM audit_events WHERE workspace_id = ?1",
            [ws],
            |r| r.get(0),
        )?;
        let bound = identifiers::count_bound(new_rows);
        let existing: i64 = c.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM contacts LIMIT ?1)",
            [i64::try_from(bound).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )?;
        let existing = existing.max(0) as u64;
        if !identifiers::worth_building(existing, new_rows) {
            return Ok(None);
        }
        let filter = IdentifierFilter::new(import_id, 2 * (existing + new_rows), head);
        for sql in [
            "SELECT email_bidx FROM contacts WHERE email_bidx IS NOT NULL",
            "SELECT phone_bidx FROM contacts WHERE phone_bidx IS NOT NULL",
        ] {
            let mut stmt = c.prepare(sql)?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(0)? {
                    filter.insert(b);
                }
            }
        }
        Ok(Some(filter))
    })();
    let _ = c.execute_batch("COMMIT");
    built
}

/// Whether the batch's filter may be trusted now: the audit events written
/// since its last check are taken in (`IdentifierFilter::check_events`).
fn filter_holds(c: &Connection, ws: &str, filter: &IdentifierFilter) -> rusqlite::Result<bool> {
    if !filter.in_use() {
        return Ok(false);
    }
    let mut stmt = c.prepare_cached("SELECT seq, action, target FROM audit_events WHERE workspace_id = ?1 AND seq > ?2 ORDER BY seq")?;
    let events: Vec<(i64, String, Option<String>)> = stmt
        .query_map(params![ws, filter.checked()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(filter.check_events(
        events
            .iter()
            .map(|(seq, action, target)| (*seq, action.as_str(), target.as_deref())),
    ))
}

pub fn look_up(c: &Connection, ws: &str, lookup: &BatchLookup) -> rusqlite::Result<BatchFound> {
    let mut found = BatchFound::default();
    let filter = match &lookup.filter {
        Some(f) if filter_holds(c, ws, f)? => Some(f.as_ref()),
        _ => None,
    };
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    // The probes read only the unique indexes (they hold the contact id); a contact
    // found by both its email and its phone is read once.
    let mut by_email = c.prepare_cached("SELECT id FROM contacts WHERE email_bidx = ?1")?;
    let mut by_phone = c.prepare_cached("SELECT id FROM contacts WHERE phone_bidx = ?1")?;
    let mut by_id = c.prepare_cached(&format!(
        "SELECT {} FROM contacts c WHERE c.id = ?1 AND c.workspace_id = ?2",
        contacts::CONTACT_COLUMNS
    ))?;
    let mut member = c.prepare_cached("SELECT 1 FROM list_members WHERE list_id = ?1 AND contact_id = ?2")?;
    let mut suppressed = c.prepare_cached("SELECT 1 FROM suppressions WHERE workspace_id = ?1 AND bidx = ?2")?;
    // Most workspaces have few suppressions; skip the per-identifier probe when there are none.
    let any_suppressed = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM suppressions WHERE workspace_id = ?1)")?
        .query_row([ws], |r| r.get::<_, bool>(0))?;
    let pairs = lookup
        .email_bidx
        .iter()
        .map(|b| (true, b))
        .chain(lookup.phone_bidx.iter().map(|b| (false, b)));
    for (is_email, bidx) in pairs {
        if any_suppressed && suppressed.query_row(params![ws, bidx], |_| Ok(())).optional()?.is_some() {
            found.suppressed.push(bidx.clone());
        }
        if filter.is_some_and(|f| f.absent(bidx)) {
            continue;
        }
        let stmt = if is_email { &mut by_email } else { &mut by_phone };
        let Some(id) = stmt.query_row([bidx], |r| r.get::<_, Vec<u8>>(0)).optional()? else {
            continue;
        };
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(row) = by_id.query_row(params![id, ws], contacts::contact_from_row).optional()? {
            let in_list = member
                .query_row(params![lookup.list_id, row.id.as_bytes().as_slice()], |_| Ok(()))
                .optional()?
                .is_some();
            let consent = contacts::consent_state(c, row.id)?;
            found.contacts.push(ExistingContact { row, in_list, consent });
        }
    }
    Ok(found)
}
