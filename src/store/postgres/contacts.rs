//! Contact, membership and consent rows of the PostgreSQL backend. Batches go in
//! as one statement per table (`UNNEST` over column arrays), not one per row.

use crate::store::{scope_clause, ConsentEventRow, ContactRow, ListScope};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

pub const CONTACT_COLUMNS: &str = "c.id, c.workspace_id, c.email_bidx, c.phone_bidx, c.contact_key, c.email_ct, c.phone_ct, c.first_name_ct, c.last_name_ct, c.attributes_ct, c.segment_attributes, c.created_at, c.updated_at";

type PgResult<T> = Result<T, tokio_postgres::Error>;

pub fn uuid_of(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_default()
}

pub fn contact_from_row(r: &Row) -> ContactRow {
    ContactRow {
        id: uuid_of(r.get::<_, &[u8]>(0)),
        workspace_id: r.get(1),
        email_bidx: r.get(2),
        phone_bidx: r.get(3),
        contact_key: r.get(4),
        email_ct: r.get(5),
        phone_ct: r.get(6),
        first_name_ct: r.get(7),
        last_name_ct: r.get(8),
        attributes_ct: r.get(9),
        segment_attributes: r.get(10),
        created_at: r.get(11),
        updated_at: r.get(12),
    }
}

/// Inserts contacts, all in one statement.
pub async fn insert_many<C: GenericClient>(c: &C, rows: &[ContactRow]) -> PgResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&[u8]> = rows.iter().map(|r| r.id.as_bytes().as_slice()).collect();
    let ws: Vec<&str> = rows.iter().map(|r| r.workspace_id.as_str()).collect();
    let email_bidx: Vec<Option<&[u8]>> = rows.iter().map(|r| r.email_bidx.as_deref()).collect();
    let phone_bidx: Vec<Option<&[u8]>> = rows.iter().map(|r| r.phone_bidx.as_deref()).collect();
    let key: Vec<&[u8]> = rows.iter().map(|r| r.contact_key.as_slice()).collect();
    let email: Vec<Option<&[u8]>> = rows.iter().map(|r| r.email_ct.as_deref()).collect();
    let phone: Vec<Option<&[u8]>> = rows.iter().map(|r| r.phone_ct.as_deref()).collect();
    let first: Vec<Option<&[u8]>> = rows.iter().map(|r| r.first_name_ct.as_deref()).collect();
    let last: Vec<Option<&[u8]>> = rows.iter().map(|r| r.last_name_ct.as_deref()).collect();
    let attrs: Vec<Option<&[u8]>> = rows.iter().map(|r| r.attributes_ct.as_deref()).collect();
    let segment: Vec<&str> = rows.iter().map(|r| r.segment_attributes.as_str()).collect();
    let created: Vec<i64> = rows.iter().map(|r| r.created_at).collect();
    let updated: Vec<i64> = rows.iter().map(|r| r.updated_at).collect();
    c.execute(
        "INSERT INTO contacts (id, workspace_id, email_bidx, phone_bidx, contact_key, email_ct, phone_ct, first_name_ct, last_name_ct, attributes_ct, segment_attributes, created_at, updated_at)
         SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bytea[], $9::bytea[], $10::bytea[], $11::text[], $12::int8[], $13::int8[])",
        &[&ids, &ws, &email_bidx, &phone_bidx, &key, &email, &phone, &first, &last, &attrs, &segment, &created, &updated],
    )
    .await
}

pub async fn update<C: GenericClient>(c: &C, row: &ContactRow) -> PgResult<u64> {
    c.execute(
        "UPDATE contacts SET email_bidx = $3, phone_bidx = $4, email_ct = $5, phone_ct = $6, first_name_ct = $7, last_name_ct = $8,
         attributes_ct = $9, segment_attributes = $10, updated_at = $11
         WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
        &[
            &row.workspace_id,
            &row.id.as_bytes().as_slice(),
            &row.email_bidx,
            &row.phone_bidx,
            &row.email_ct,
            &row.phone_ct,
            &row.first_name_ct,
            &row.last_name_ct,
            &row.attributes_ct,
            &row.segment_attributes,
            &row.updated_at,
        ],
    )
    .await
}

/// A live contact by a condition on `$2`; the statement is prepared once per
/// connection (lookups are the hot path).
pub async fn find(c: &deadpool_postgres::Client, ws: &str, cond: &str, param: &[u8], scope: &ListScope) -> PgResult<Option<ContactRow>> {
    let sql = format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.workspace_id = $1 AND {cond} AND c.deleted_at IS NULL{}",
        scope_clause(scope, "c.id")
    );
    let stmt = c.prepare_cached(&sql).await?;
    Ok(c.query_opt(&stmt, &[&ws, &param]).await?.as_ref().map(contact_from_row))
}

pub async fn page<C: GenericClient>(
    c: &C,
    ws: &str,
    list_id: Option<&str>,
    scope: &ListScope,
    after: Option<Uuid>,
    limit: u32,
) -> PgResult<Vec<ContactRow>> {
    let after = after.map(|u| u.as_bytes().to_vec()).unwrap_or_default();
    let scope_sql = scope_clause(scope, "c.id");
    let limit = i64::from(limit);
    // The cursor bounds both sides of the join, so that a merge join starts at the
    // cursor instead of at the first contact.
    let rows = match list_id {
        Some(list) => {
            let sql = format!(
                "SELECT {CONTACT_COLUMNS} FROM list_members m JOIN contacts c ON c.id = m.contact_id
                 WHERE m.list_id = $2 AND c.workspace_id = $1 AND m.contact_id > $3 AND c.id > $3 AND c.deleted_at IS NULL{scope_sql}
                 ORDER BY m.contact_id LIMIT $4"
            );
            c.query(&sql, &[&ws, &list, &after, &limit]).await?
        }
        None => {
            let sql = format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.workspace_id = $1 AND c.id > $2 AND c.deleted_at IS NULL{scope_sql}
                 ORDER BY c.id LIMIT $3"
            );
            c.query(&sql, &[&ws, &after, &limit]).await?
        }
    };
    Ok(rows.iter().map(contact_from_row).collect())
}

/// Adds memberships; returns how many were new.
pub async fn add_members<C: GenericClient>(c: &C, list_id: &str, contacts: &[Uuid], at: i64) -> PgResult<u64> {
    if contacts.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&[u8]> = contacts.iter().map(|u| u.as_bytes().as_slice()).collect();
    c.execute(
        "INSERT INTO list_members (list_id, contact_id, added_at) SELECT $1, id, $3 FROM UNNEST($2::bytea[]) AS t(id)
         ON CONFLICT DO NOTHING",
        &[&list_id, &ids, &at],
    )
    .await
}

/// Appends ledger events, in order.
pub async fn insert_consents<C: GenericClient>(c: &C, events: &[ConsentEventRow]) -> PgResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let id: Vec<&[u8]> = events.iter().map(|e| e.id.as_bytes().as_slice()).collect();
    let ws: Vec<&str> = events.iter().map(|e| e.workspace_id.as_str()).collect();
    let contact: Vec<&[u8]> = events.iter().map(|e| e.contact_id.as_bytes().as_slice()).collect();
    let channel: Vec<&str> = events.iter().map(|e| e.channel.as_str()).collect();
    let purpose: Vec<&str> = events.iter().map(|e| e.purpose.as_str()).collect();
    let action: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let method: Vec<&str> = events.iter().map(|e| e.method.as_str()).collect();
    let source: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let evidence: Vec<&str> = events.iter().map(|e| e.evidence.as_str()).collect();
    let private: Vec<Option<&[u8]>> = events.iter().map(|e| e.private_evidence_ct.as_deref()).collect();
    let actor: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    let occurred: Vec<i64> = events.iter().map(|e| e.occurred_at).collect();
    let recorded: Vec<i64> = events.iter().map(|e| e.recorded_at).collect();
    let audit_seq: Vec<i64> = events.iter().map(|e| e.audit_seq).collect();
    c.execute(
        "WITH input AS (
             SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                                  $9::text[], $10::bytea[], $11::text[], $12::int8[], $13::int8[], $14::int8[]) WITH ORDINALITY
                 AS t(id, workspace_id, contact_id, channel, purpose, action, method, source, evidence, private_evidence_ct, actor,
                      occurred_at, recorded_at, audit_seq, n)
         )
         INSERT INTO consent_events (id, workspace_id, contact_id, channel, purpose, action, method, source, evidence,
                                     private_evidence_ct, actor, occurred_at, recorded_at, audit_seq)
         SELECT id, workspace_id, contact_id, channel, purpose, action, method, source, evidence, private_evidence_ct, actor,
                occurred_at, recorded_at, audit_seq FROM input ORDER BY n",
        &[
            &id, &ws, &contact, &channel, &purpose, &action, &method, &source, &evidence, &private, &actor, &occurred, &recorded,
            &audit_seq,
        ],
    )
    .await?;
    Ok(())
}

pub fn consent_from_row(r: &Row) -> ConsentEventRow {
    ConsentEventRow {
        id: uuid_of(r.get::<_, &[u8]>(0)),
        workspace_id: r.get(1),
        contact_id: uuid_of(r.get::<_, &[u8]>(2)),
        channel: r.get(3),
        purpose: r.get(4),
        action: r.get(5),
        method: r.get(6),
        source: r.get(7),
        evidence: r.get(8),
        private_evidence_ct: r.get(9),
        actor: r.get(10),
        occurred_at: r.get(11),
        recorded_at: r.get(12),
        audit_seq: r.get(13),
    }
}

pub async fn consents<C: GenericClient>(c: &C, ws: &str, contact: Uuid) -> PgResult<Vec<ConsentEventRow>> {
    let rows = c
        .query(
            "SELECT id, workspace_id, contact_id, channel, purpose, action, method, source, evidence, private_evidence_ct, actor,
                    occurred_at, recorded_at, audit_seq
             FROM consent_events WHERE workspace_id = $1 AND contact_id = $2 ORDER BY seq",
            &[&ws, &contact.as_bytes().as_slice()],
        )
        .await?;
    Ok(rows.iter().map(consent_from_row).collect())
}
