//! Contact, membership and consent rows of the SQLite backend.

use crate::store::{scope_clause, ConsentEventRow, ContactRow, ListScope};
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

pub const CONTACT_COLUMNS: &str = "c.id, c.workspace_id, c.email_bidx, c.phone_bidx, c.contact_key, c.email_ct, c.phone_ct, c.first_name_ct, c.last_name_ct, c.attributes_ct, c.segment_attributes, c.created_at, c.updated_at";

fn uuid_from(bytes: Vec<u8>, idx: usize) -> rusqlite::Result<Uuid> {
    Uuid::from_slice(&bytes).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Blob, Box::new(e)))
}

pub fn contact_from_row(r: &Row<'_>) -> rusqlite::Result<ContactRow> {
    Ok(ContactRow {
        id: uuid_from(r.get(0)?, 0)?,
        workspace_id: r.get(1)?,
        email_bidx: r.get(2)?,
        phone_bidx: r.get(3)?,
        contact_key: r.get(4)?,
        email_ct: r.get(5)?,
        phone_ct: r.get(6)?,
        first_name_ct: r.get(7)?,
        last_name_ct: r.get(8)?,
        attributes_ct: r.get(9)?,
        segment_attributes: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

pub fn insert(c: &Connection, row: &ContactRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO contacts (id, workspace_id, email_bidx, phone_bidx, contact_key, email_ct, phone_ct, first_name_ct, last_name_ct, attributes_ct, segment_attributes, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        row.id.as_bytes().as_slice(),
        row.workspace_id,
        row.email_bidx,
        row.phone_bidx,
        row.contact_key,
        row.email_ct,
        row.phone_ct,
        row.first_name_ct,
        row.last_name_ct,
        row.attributes_ct,
        row.segment_attributes,
        row.created_at,
        row.updated_at
    ])?;
    Ok(())
}

pub fn update(c: &Connection, row: &ContactRow) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "UPDATE contacts SET email_bidx = ?3, phone_bidx = ?4, email_ct = ?5, phone_ct = ?6, first_name_ct = ?7, last_name_ct = ?8,
         attributes_ct = ?9, segment_attributes = ?10, updated_at = ?11
         WHERE workspace_id = ?1 AND id = ?2 AND deleted_at IS NULL",
    )?
    .execute(params![
        row.workspace_id,
        row.id.as_bytes().as_slice(),
        row.email_bidx,
        row.phone_bidx,
        row.email_ct,
        row.phone_ct,
        row.first_name_ct,
        row.last_name_ct,
        row.attributes_ct,
        row.segment_attributes,
        row.updated_at
    ])
}

pub fn find(c: &Connection, ws: &str, cond: &str, param: Vec<u8>, scope: &ListScope) -> rusqlite::Result<Option<ContactRow>> {
    let sql = format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.workspace_id = ?1 AND {cond} AND c.deleted_at IS NULL{}",
        scope_clause(scope, "c.id")
    );
    c.prepare_cached(&sql)?.query_row(params![ws, param], contact_from_row).optional()
}

pub fn page(
    c: &Connection,
    ws: &str,
    list_id: Option<&str>,
    scope: &ListScope,
    after: Option<Uuid>,
    limit: u32,
) -> rusqlite::Result<Vec<ContactRow>> {
    let after = after.map(|u| u.as_bytes().to_vec()).unwrap_or_default();
    let scope_sql = scope_clause(scope, "c.id");
    match list_id {
        Some(list) => {
            let sql = format!(
                "SELECT {CONTACT_COLUMNS} FROM list_members m JOIN contacts c ON c.id = m.contact_id
                 WHERE m.list_id = ?2 AND c.workspace_id = ?1 AND m.contact_id > ?3 AND c.deleted_at IS NULL{scope_sql}
                 ORDER BY m.contact_id LIMIT ?4"
            );
            c.prepare_cached(&sql)?
                .query_map(params![ws, list, after, limit], contact_from_row)?
                .collect()
        }
        None => {
            let sql = format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.workspace_id = ?1 AND c.id > ?2 AND c.deleted_at IS NULL{scope_sql}
                 ORDER BY c.id LIMIT ?3"
            );
            c.prepare_cached(&sql)?
                .query_map(params![ws, after, limit], contact_from_row)?
                .collect()
        }
    }
}

/// Adds a membership; returns 1 when it is new.
pub fn add_member(c: &Connection, list_id: &str, contact: Uuid, at: i64) -> rusqlite::Result<usize> {
    c.prepare_cached("INSERT OR IGNORE INTO list_members (list_id, contact_id, added_at) VALUES (?1, ?2, ?3)")?
        .execute(params![list_id, contact.as_bytes().as_slice(), at])
}

pub fn insert_consent(c: &Connection, e: &ConsentEventRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO consent_events (id, workspace_id, contact_id, channel, purpose, action, method, source, evidence, private_evidence_ct, actor, occurred_at, recorded_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        e.id.as_bytes().as_slice(),
        e.workspace_id,
        e.contact_id.as_bytes().as_slice(),
        e.channel,
        e.purpose,
        e.action,
        e.method,
        e.source,
        e.evidence,
        e.private_evidence_ct,
        e.actor,
        e.occurred_at,
        e.recorded_at,
        e.audit_seq
    ])?;
    Ok(())
}

pub fn consents(c: &Connection, ws: &str, contact: Uuid) -> rusqlite::Result<Vec<ConsentEventRow>> {
    c.prepare_cached(
        "SELECT id, workspace_id, contact_id, channel, purpose, action, method, source, evidence, private_evidence_ct, actor, occurred_at, recorded_at, audit_seq
         FROM consent_events WHERE workspace_id = ?1 AND contact_id = ?2 ORDER BY seq",
    )?
    .query_map(params![ws, contact.as_bytes().as_slice()], |r| {
        Ok(ConsentEventRow {
            id: uuid_from(r.get(0)?, 0)?,
            workspace_id: r.get(1)?,
            contact_id: uuid_from(r.get(2)?, 2)?,
            channel: r.get(3)?,
            purpose: r.get(4)?,
            action: r.get(5)?,
            method: r.get(6)?,
            source: r.get(7)?,
            evidence: r.get(8)?,
            private_evidence_ct: r.get(9)?,
            actor: r.get(10)?,
            occurred_at: r.get(11)?,
            recorded_at: r.get(12)?,
            audit_seq: r.get(13)?,
        })
    })?
    .collect()
}

/// Current consent state of a contact: `(channel, purpose, action)` of the newest
/// ledger event of each channel and purpose.
pub fn consent_state(c: &Connection, contact: Uuid) -> rusqlite::Result<Vec<(String, String, String)>> {
    let events: Vec<(String, String, String)> = c
        .prepare_cached("SELECT channel, purpose, action FROM consent_events WHERE contact_id = ?1 ORDER BY seq")?
        .query_map([contact.as_bytes().as_slice()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(crate::store::current_consent(events))
}
