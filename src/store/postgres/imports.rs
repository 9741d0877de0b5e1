//! Import jobs of the PostgreSQL backend: start-or-resume, and one batch per
//! transaction with the job's progress. The job row is locked (`FOR UPDATE`) for
//! the batch, so two servers never apply batches of one job at the same time; the
//! batch's identifiers are looked up with a few set-based queries and its writes
//! go in as one statement per table.

use super::{audit, contacts, map_err};
use crate::audit::AuditDraft;
use crate::store::{
    BatchFound, BatchLookup, ExistingContact, ImportCounts, ImportJob, ImportPlanner, ImportStatus, StoreError, StoreResult,
};
use std::collections::{HashMap, HashSet};
use tokio_postgres::{GenericClient, Row};

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

/// Applies one batch; returns its counts and the job's rows done before and after.
pub async fn apply_batch<C: GenericClient>(
    c: &C,
    ws: &str,
    id: &str,
    lookup: BatchLookup,
    planner: ImportPlanner,
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
        return Err(StoreError::Backend(anyhow::anyhow!("import {id} is not running")));
    }
    let found = look_up(c, ws, &lookup).await.map_err(map_err)?;
    let mut writes = planner(found).map_err(StoreError::Backend)?;
    contacts::insert_many(c, &writes.inserts).await.map_err(map_err)?;
    for row in &writes.updates {
        contacts::update(c, row).await.map_err(map_err)?;
    }
    contacts::add_members(c, &lookup.list_id, &writes.memberships, writes.at)
        .await
        .map_err(map_err)?;
    // The audit append holds the workspace's chain until the commit: as late as
    // the consent events (which name its sequence number) allow.
    let event = audit::append(c, &writes.audit).await?;
    for e in &mut writes.consents {
        e.audit_seq = event.seq;
    }
    contacts::insert_consents(c, &writes.consents).await.map_err(map_err)?;
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
    Ok((k, job.rows_done, job.rows_done + writes.rows))
}

/// What exists for a batch's identifiers: a handful of set-based queries.
pub async fn look_up<C: GenericClient>(c: &C, ws: &str, lookup: &BatchLookup) -> Result<BatchFound, tokio_postgres::Error> {
    let mut found = BatchFound::default();
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
        let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
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
    let mut consent: HashMap<Vec<u8>, Vec<(String, String, String)>> = HashMap::new();
    for r in c
        .query(
            "SELECT contact_id, channel, purpose, action FROM consent_state WHERE contact_id = ANY($1)",
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
