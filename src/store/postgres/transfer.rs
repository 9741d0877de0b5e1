//! Moving a whole SQLite instance into an empty PostgreSQL database without
//! decrypting anything: every table is copied as stored (ciphertexts, blind
//! indexes, audit hashes and signatures are bytes that move unchanged) with binary
//! COPY, in one transaction, and counted on both sides at the end.

use super::PostgresStore;
use anyhow::{bail, Context};
use futures_util::pin_mut;
use rusqlite::types::ValueRef;
use std::path::Path;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// Tables in dependency order. The ledger's `seq` keeps its values, and its
/// sequence continues after the largest.
const TABLES: &[&str] = &[
    "workspaces",
    "workspace_keys",
    "workspace_security",
    "api_keys",
    "users",
    "user_invitations",
    "sessions",
    "user_totp",
    "user_recovery_codes",
    "user_passkeys",
    "webauthn_ceremonies",
    "roles",
    "sign_in_failures",
    "attributes",
    "contacts",
    "lists",
    "list_members",
    "consent_events",
    "suppressions",
    "imports",
    "import_rejections",
    "exports",
    "audit_events",
    "audit_checkpoints",
];

/// Rows copied per table, in `TABLES` order.
pub struct TransferReport {
    pub tables: Vec<(&'static str, i64)>,
}

enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// Copies the SQLite database at `from` into the store's (empty) database.
pub async fn copy_from_sqlite(from: &Path, to: &PostgresStore) -> anyhow::Result<TransferReport> {
    if !from.exists() {
        bail!("{} does not exist", from.display());
    }
    let source = rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("failed to open {}", from.display()))?;
    // One read transaction: a consistent snapshot even if a server still writes.
    source.execute_batch("BEGIN")?;
    let mut client = to.pool.get().await.context("failed to connect to PostgreSQL")?;
    let tx = client.transaction().await?;
    for table in TABLES {
        let n: i64 = tx.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[]).await?.get(0);
        if n > 0 {
            bail!("the target database is not empty ({table} has {n} rows); give an empty database");
        }
    }
    let mut report = TransferReport { tables: Vec::new() };
    for table in TABLES {
        // Column names and types as the target has them (the same names as SQLite).
        let cols: Vec<(String, Type)> = {
            let stmt = tx.prepare(&format!("SELECT * FROM {table} LIMIT 0")).await?;
            stmt.columns().iter().map(|c| (c.name().to_string(), c.type_().clone())).collect()
        };
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let types: Vec<Type> = cols.iter().map(|(_, t)| t.clone()).collect();
        let sink = tx
            .copy_in(&format!("COPY {table} ({}) FROM STDIN BINARY", names.join(", ")))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        let mut stmt = source.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
        let mut rows = stmt.query([])?;
        let mut copied = 0i64;
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(cols.len());
            for (i, (name, ty)) in cols.iter().enumerate() {
                let v = match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Text(t) => {
                        Value::Text(String::from_utf8(t.to_vec()).with_context(|| format!("{table}.{name} is not UTF-8"))?)
                    }
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                    ValueRef::Real(_) => bail!("{table}.{name} holds a real number; consentry stores none"),
                };
                values.push(as_sql(v, ty).with_context(|| format!("{table}.{name}"))?);
            }
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
            writer.as_mut().write(&refs).await?;
            copied += 1;
        }
        writer.finish().await?;
        report.tables.push((table, copied));
    }
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('consent_events', 'seq'), COALESCE((SELECT MAX(seq) FROM consent_events), 0) + 1, false)",
        &[],
    )
    .await?;
    for (table, copied) in &report.tables {
        let source_count: i64 = source.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        let target_count: i64 = tx.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[]).await?.get(0);
        if source_count != *copied || target_count != *copied {
            bail!("{table}: {source_count} rows in SQLite, {copied} copied, {target_count} in PostgreSQL; nothing was committed");
        }
    }
    tx.commit().await.context("failed to commit the copy")?;
    Ok(report)
}

fn as_sql(v: Value, ty: &Type) -> anyhow::Result<Box<dyn ToSql + Sync + Send>> {
    Ok(match (v, ty) {
        (Value::Null, &Type::INT8) => Box::new(None::<i64>),
        (Value::Null, &Type::BYTEA) => Box::new(None::<Vec<u8>>),
        (Value::Null, _) => Box::new(None::<String>),
        (Value::Int(n), &Type::INT8) => Box::new(n),
        // SQLite keeps booleans as 0 and 1.
        (Value::Int(n @ (0 | 1)), &Type::BOOL) => Box::new(n == 1),
        (Value::Text(t), &Type::TEXT) => Box::new(t),
        (Value::Bytes(b), &Type::BYTEA) => Box::new(b),
        (Value::Int(_), t) | (Value::Text(_), t) | (Value::Bytes(_), t) => {
            bail!("the value does not fit the target column of type {t}")
        }
    })
}
