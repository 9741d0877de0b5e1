//! Audit rows of the PostgreSQL backend: appending to the per-workspace chain inside
//! the caller's transaction, and reading events and checkpoints back. Several
//! servers append to one chain: a transaction-scoped advisory lock per workspace
//! orders them, so the chain has no fork, no gap and no duplicate sequence.

use crate::audit::{AuditDraft, AuditEvent, Checkpoint, GENESIS_HASH};
use crate::store::{StoreError, StoreResult};
use tokio_postgres::{GenericClient, Row};

/// Appends an event after the workspace's current head. Any failure here is
/// `AuditUnavailable`, so the caller's change is rolled back with it.
pub async fn append<C: GenericClient>(c: &C, draft: &AuditDraft) -> StoreResult<AuditEvent> {
    let unavailable =
        |e: tokio_postgres::Error| StoreError::AuditUnavailable(anyhow::Error::new(e).context("failed to append an audit event"));
    c.execute(LOCK_SQL, &[&draft.workspace_id]).await.map_err(unavailable)?;
    let head = c.query_opt(HEAD_SQL, &[&draft.workspace_id]).await.map_err(unavailable)?;
    let (seq, prev, last_at) = match head {
        Some(r) => (r.get::<_, i64>(0) + 1, r.get::<_, String>(1), r.get::<_, i64>(2)),
        None => (1, GENESIS_HASH.to_string(), 0),
    };
    let at = crate::store::now_micros().max(last_at);
    let event = AuditEvent::chain(draft, seq, at, &prev);
    c.execute(
        "INSERT INTO audit_events (workspace_id, seq, at, actor, action, target, purpose, ip_hash, outcome, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &event.workspace_id,
            &event.seq,
            &event.at,
            &event.actor,
            &event.action,
            &event.target,
            &event.purpose,
            &event.ip_hash,
            &event.outcome,
            &event.details,
            &event.prev_hash,
            &event.hash,
        ],
    )
    .await
    .map_err(unavailable)?;
    Ok(event)
}

/// Commits several events (of one or more workspaces) in a transaction of their
/// own, with one lock, one head read and one insert per workspace; returns them
/// in the drafts' order. The statements go out pipelined where the protocol
/// allows: `BEGIN` with the first lock and head read, the last insert with
/// `COMMIT`, so a group of one workspace costs two round trips. The head is read
/// by a statement of its own after the lock is held (its snapshot must see the
/// previous holder's commit); the pipeline keeps that order, it only stops
/// waiting between them. On any failure the transaction is rolled back.
pub async fn commit_group(c: &deadpool_postgres::ClientWrapper, drafts: &[&AuditDraft]) -> StoreResult<Vec<AuditEvent>> {
    let result = commit_group_pipelined(c, drafts).await;
    if result.is_err() {
        // Ends the transaction if it is still open; after a failed COMMIT or on
        // a closed connection this fails harmlessly (the pool drops closed ones).
        let _ = c.batch_execute("ROLLBACK").await;
    }
    result
}

async fn commit_group_pipelined(c: &deadpool_postgres::ClientWrapper, drafts: &[&AuditDraft]) -> StoreResult<Vec<AuditEvent>> {
    use futures_util::future::{try_join, try_join3};
    let unavailable =
        |e: tokio_postgres::Error| StoreError::AuditUnavailable(anyhow::Error::new(e).context("failed to append audit events"));
    let mut out: Vec<Option<AuditEvent>> = vec![None; drafts.len()];
    let mut workspaces: Vec<&str> = drafts.iter().map(|d| d.workspace_id.as_str()).collect();
    workspaces.sort_unstable();
    workspaces.dedup();
    let lock = c.prepare_cached(LOCK_SQL).await.map_err(unavailable)?;
    let head_stmt = c.prepare_cached(HEAD_SQL).await.map_err(unavailable)?;
    let insert = c.prepare_cached(INSERT_MANY_SQL).await.map_err(unavailable)?;
    let last = workspaces.len().saturating_sub(1);
    for (n, ws) in workspaces.into_iter().enumerate() {
        let head = if n == 0 {
            try_join3(c.batch_execute("BEGIN"), c.execute(&lock, &[&ws]), c.query_opt(&head_stmt, &[&ws]))
                .await
                .map_err(unavailable)?
                .2
        } else {
            try_join(c.execute(&lock, &[&ws]), c.query_opt(&head_stmt, &[&ws]))
                .await
                .map_err(unavailable)?
                .1
        };
        let (mut seq, mut prev, mut last_at) = match head {
            Some(r) => (r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, i64>(2)),
            None => (0, GENESIS_HASH.to_string(), 0),
        };
        let mut events = Vec::new();
        for (i, d) in drafts.iter().enumerate().filter(|(_, d)| d.workspace_id == ws) {
            seq += 1;
            let at = crate::store::now_micros().max(last_at);
            let event = AuditEvent::chain(d, seq, at, &prev);
            prev = event.hash.clone();
            last_at = at;
            events.push((i, event));
        }
        let col = |f: fn(&AuditEvent) -> Option<String>| -> Vec<Option<String>> { events.iter().map(|(_, e)| f(e)).collect() };
        let seqs: Vec<i64> = events.iter().map(|(_, e)| e.seq).collect();
        let ats: Vec<i64> = events.iter().map(|(_, e)| e.at).collect();
        let (actors, actions, targets, purposes, ip_hashes, outcomes, details, prevs, hashes) = (
            col(|e| Some(e.actor.clone())),
            col(|e| Some(e.action.clone())),
            col(|e| e.target.clone()),
            col(|e| e.purpose.clone()),
            col(|e| e.ip_hash.clone()),
            col(|e| Some(e.outcome.clone())),
            col(|e| Some(e.details.clone())),
            col(|e| Some(e.prev_hash.clone())),
            col(|e| Some(e.hash.clone())),
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
            &ws, &seqs, &ats, &actors, &actions, &targets, &purposes, &ip_hashes, &outcomes, &details, &prevs, &hashes,
        ];
        if n == last {
            // An insert that fails leaves the transaction aborted, and the
            // pipelined COMMIT then only rolls it back: the insert's error is
            // the one returned.
            try_join(c.execute(&insert, &params), c.batch_execute("COMMIT"))
                .await
                .map_err(unavailable)?;
        } else {
            c.execute(&insert, &params).await.map_err(unavailable)?;
        }
        for (i, e) in events {
            out[i] = Some(e);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7261))";
const HEAD_SQL: &str = "SELECT seq, hash, at FROM audit_events WHERE workspace_id = $1 ORDER BY seq DESC LIMIT 1";
const INSERT_MANY_SQL: &str =
    "INSERT INTO audit_events (workspace_id, seq, at, actor, action, target, purpose, ip_hash, outcome, details, prev_hash, hash)
     SELECT $1, * FROM UNNEST($2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                              $10::text[], $11::text[], $12::text[])";

pub const EVENT_COLUMNS: &str = "workspace_id, seq, at, actor, action, target, purpose, ip_hash, outcome, details, prev_hash, hash";

pub fn event_from_row(r: &Row) -> AuditEvent {
    AuditEvent {
        workspace_id: r.get(0),
        seq: r.get(1),
        at: r.get(2),
        actor: r.get(3),
        action: r.get(4),
        target: r.get(5),
        purpose: r.get(6),
        ip_hash: r.get(7),
        outcome: r.get(8),
        details: r.get(9),
        prev_hash: r.get(10),
        hash: r.get(11),
    }
}

pub async fn list<C: GenericClient>(c: &C, ws: &str, after: i64, limit: u32) -> Result<Vec<AuditEvent>, tokio_postgres::Error> {
    let rows = c
        .query(
            &format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"),
            &[&ws, &after, &i64::from(limit)],
        )
        .await?;
    Ok(rows.iter().map(event_from_row).collect())
}

pub async fn recent<C: GenericClient>(
    c: &C,
    ws: &str,
    actions: &[String],
    since: i64,
    limit: u32,
) -> Result<Vec<AuditEvent>, tokio_postgres::Error> {
    let rows = c
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM audit_events
                 WHERE workspace_id = $1
                   AND seq > (SELECT COALESCE(MAX(seq), 0) FROM audit_events WHERE workspace_id = $1) - $5
                   AND at >= $2 AND action = ANY($3)
                 ORDER BY seq DESC LIMIT $4"
            ),
            &[&ws, &since, &actions, &i64::from(limit), &crate::store::RECENT_AUDIT_SCAN],
        )
        .await?;
    Ok(rows.iter().map(event_from_row).collect())
}

pub async fn head<C: GenericClient>(c: &C, ws: &str) -> Result<Option<AuditEvent>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            &format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE workspace_id = $1 ORDER BY seq DESC LIMIT 1"),
            &[&ws],
        )
        .await?;
    Ok(row.as_ref().map(event_from_row))
}

pub async fn find<C: GenericClient>(c: &C, ws: &str, seqs: &[i64]) -> Result<Vec<AuditEvent>, tokio_postgres::Error> {
    let rows = c
        .query(
            &format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE workspace_id = $1 AND seq = ANY($2) ORDER BY seq"),
            &[&ws, &seqs],
        )
        .await?;
    Ok(rows.iter().map(event_from_row).collect())
}

pub async fn checkpoints<C: GenericClient>(c: &C, ws: &str) -> Result<Vec<Checkpoint>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT workspace_id, seq, hash, at, signature FROM audit_checkpoints WHERE workspace_id = $1 ORDER BY seq",
            &[&ws],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Checkpoint {
            workspace_id: r.get(0),
            seq: r.get(1),
            hash: r.get(2),
            at: r.get(3),
            signature: hex::encode(r.get::<_, Vec<u8>>(4)),
        })
        .collect())
}
