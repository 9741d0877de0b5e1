//! Audit rows of the SQLite backend: appending to the per-workspace chain inside the
//! caller's transaction, and reading events and checkpoints back.

use crate::audit::{AuditDraft, AuditEvent, Checkpoint, GENESIS_HASH};
use crate::store::{StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// Appends an event after the workspace's current head. Any failure here is
/// `AuditUnavailable`, so the caller's change is rolled back with it.
pub fn append(conn: &Connection, draft: &AuditDraft) -> StoreResult<AuditEvent> {
    let unavailable = |e: rusqlite::Error| StoreError::AuditUnavailable(anyhow::Error::new(e).context("failed to append an audit event"));
    let head: Option<(i64, String, i64)> = conn
        .prepare_cached("SELECT seq, hash, at FROM audit_events WHERE workspace_id = ?1 ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| {
            s.query_row([&draft.workspace_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(unavailable)?;
    let (seq, prev, last_at) = match head {
        Some((seq, hash, at)) => (seq + 1, hash, at),
        None => (1, GENESIS_HASH.to_string(), 0),
    };
    let at = now_micros().max(last_at);
    let event = AuditEvent::chain(draft, seq, at, &prev);
    conn.prepare_cached(
        "INSERT INTO audit_events (workspace_id, seq, at, actor, action, target, purpose, ip_hash, outcome, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut s| {
        s.execute(params![
            event.workspace_id,
            event.seq,
            event.at,
            event.actor,
            event.action,
            event.target,
            event.purpose,
            event.ip_hash,
            event.outcome,
            event.details,
            event.prev_hash,
            event.hash
        ])
    })
    .map_err(unavailable)?;
    Ok(event)
}

pub use crate::store::now_micros;

pub const EVENT_COLUMNS: &str = "workspace_id, seq, at, actor, action, target, purpose, ip_hash, outcome, details, prev_hash, hash";

pub fn event_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        workspace_id: r.get(0)?,
        seq: r.get(1)?,
        at: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        target: r.get(5)?,
        purpose: r.get(6)?,
        ip_hash: r.get(7)?,
        outcome: r.get(8)?,
        details: r.get(9)?,
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

pub fn list(conn: &Connection, ws: &str, after: i64, limit: u32) -> rusqlite::Result<Vec<AuditEvent>> {
    let mut s = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events WHERE workspace_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    let rows = s.query_map(params![ws, after, limit], event_from_row)?;
    rows.collect()
}

pub fn recent(conn: &Connection, ws: &str, actions: &[String], since: i64, limit: u32) -> rusqlite::Result<Vec<AuditEvent>> {
    let actions = serde_json::to_string(actions).unwrap_or_else(|_| "[]".into());
    let mut s = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events
         WHERE workspace_id = ?1
           AND seq > (SELECT COALESCE(MAX(seq), 0) FROM audit_events WHERE workspace_id = ?1) - ?5
           AND at >= ?2 AND action IN (SELECT value FROM json_each(?3))
         ORDER BY seq DESC LIMIT ?4"
    ))?;
    let rows = s.query_map(params![ws, since, actions, limit, crate::store::RECENT_AUDIT_SCAN], event_from_row)?;
    rows.collect()
}

pub fn head(conn: &Connection, ws: &str) -> rusqlite::Result<Option<AuditEvent>> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events WHERE workspace_id = ?1 ORDER BY seq DESC LIMIT 1"
    ))?
    .query_row([ws], event_from_row)
    .optional()
}

pub fn find(conn: &Connection, ws: &str, seqs: &[i64]) -> rusqlite::Result<Vec<AuditEvent>> {
    let mut s = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events WHERE workspace_id = ?1 AND seq = ?2"
    ))?;
    let mut out = Vec::new();
    for seq in seqs {
        if let Some(e) = s.query_row(params![ws, seq], event_from_row).optional()? {
            out.push(e);
        }
    }
    Ok(out)
}

pub fn checkpoints(conn: &Connection, ws: &str) -> rusqlite::Result<Vec<Checkpoint>> {
    let mut s =
        conn.prepare_cached("SELECT workspace_id, seq, hash, at, signature FROM audit_checkpoints WHERE workspace_id = ?1 ORDER BY seq")?;
    let rows = s.query_map([ws], |r| {
        Ok(Checkpoint {
            workspace_id: r.get(0)?,
            seq: r.get(1)?,
            hash: r.get(2)?,
            at: r.get(3)?,
            signature: hex::encode(r.get::<_, Vec<u8>>(4)?),
        })
    })?;
    rows.collect()
}
