//! Exports: decrypted contacts of one list to CSV or JSON Lines, with a stated
//! purpose, an export record and audit events before and after. CSV cells that a
//! spreadsheet would run as a formula are neutralised (OWASP CSV injection).

use super::contacts::open_row;
use super::{Vault, VaultError, VaultResult};
use crate::access::{parse_purpose_text, Permission, Principal};
use crate::audit::AuditDraft;
use crate::clock::rfc3339;
use crate::crypto::CryptoError;
use crate::store::{AttributeDef, ExportRecord};
use rayon::prelude::*;
use std::io::Write;
use uuid::Uuid;

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// Prefixes `'` to a cell a spreadsheet would treat as a formula.
pub fn neutralize_cell(value: &str) -> std::borrow::Cow<'_, str> {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\n') => std::borrow::Cow::Owned(format!("'{value}")),
        _ => std::borrow::Cow::Borrowed(value),
    }
}

/// Writes one CSV record with every field quoted and neutralised.
pub fn write_csv_record<W: Write>(out: &mut W, fields: &[&str]) -> std::io::Result<()> {
    let mut line = String::with_capacity(fields.len() * 24);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push('"');
        for ch in neutralize_cell(f).chars() {
            if ch == '"' {
                line.push('"');
            }
            line.push(ch);
        }
        line.push('"');
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

const PAGE: u32 = 5_000;

impl Vault {
    /// An export record: who exported which list, when, why, how many rows.
    /// Needs `contacts:export` or `audit:read`; outside the caller's lists it does
    /// not exist.
    pub async fn get_export(&self, p: &Principal, id: &str) -> VaultResult<ExportRecord> {
        if !p.has(Permission::ContactsExport) {
            p.require(Permission::AuditRead)?;
        }
        self.store
            .find_export(&p.workspace_id, id)
            .await?
            .filter(|r| p.lists.allows_list(&r.list_id))
            .ok_or(VaultError::NotFound("export"))
    }

    /// Streams a list's contacts to `out`; returns the export record.
    pub async fn export_list<W: Write + Send>(
        &self,
        p: &Principal,
        list: &str,
        purpose: &str,
        format: ExportFormat,
        out: &mut W,
    ) -> VaultResult<ExportRecord> {
        p.require(Permission::ContactsExport)?;
        // An export hands out unmasked data, so it needs what an unmasked read needs.
        p.require(Permission::ContactsRead)?;
        // A signed-in user confirms with their second factor first (step-up).
        p.require_recent_factor(self.now())?;
        let purpose = parse_purpose_text(purpose)?;
        let list = self.get_list(p, list).await?;
        let keys = self.keys(&p.workspace_id).await?;
        let schema: Vec<AttributeDef> = self.store.list_attributes(&p.workspace_id).await?;
        let id = format!("exp_{}", Uuid::now_v7().simple());
        let started = AuditDraft::new(&p.workspace_id, &p.actor, "export.started")
            .target(format!("export:{id}"))
            .purpose(Some(&purpose))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "list": list.id, "format": format.as_str() }));
        self.store.record_audit(started).await?;

        let mut header: Vec<String> = ["id", "email", "phone", "first_name", "last_name"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        header.extend(schema.iter().map(|a| a.name.clone()));
        header.push("created_at".into());
        let io = |e: std::io::Error| VaultError::Internal(anyhow::Error::new(e).context("failed to write the export"));
        if format == ExportFormat::Csv {
            let refs: Vec<&str> = header.iter().map(String::as_str).collect();
            write_csv_record(out, &refs).map_err(io)?;
        }
        let mut rows = 0u64;
        // The next page is read while this one is decrypted and written.
        let fetch = |after: Option<Uuid>| {
            let (store, ws, list_id, scope) = (self.store.clone(), p.workspace_id.clone(), list.id.clone(), p.lists.clone());
            tokio::spawn(async move { store.list_contacts(&ws, Some(&list_id), &scope, after, PAGE).await })
        };
        let mut pending = Some(fetch(None));
        while let Some(task) = pending.take() {
            let page = task
                .await
                .map_err(|e| VaultError::Internal(anyhow::anyhow!("an export read task failed: {e}")))??;
            let Some(last) = page.last() else { break };
            if page.len() as u32 == PAGE {
                pending = Some(fetch(Some(last.id)));
            }
            let rendered: Vec<Result<Vec<u8>, (Uuid, CryptoError)>> = page
                .par_iter()
                .map(|row| {
                    let (_, plain) = open_row(&keys, row).map_err(|e| (row.id, e))?;
                    let mut values: Vec<String> = vec![
                        row.id.to_string(),
                        plain.email.as_ref().map(|e| e.as_str().to_string()).unwrap_or_default(),
                        plain.phone.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default(),
                        plain.first_name.clone().unwrap_or_default(),
                        plain.last_name.clone().unwrap_or_default(),
                    ];
                    for a in &schema {
                        values.push(
                            plain
                                .identifying
                                .get(&a.name)
                                .or_else(|| plain.segment.get(&a.name))
                                .cloned()
                                .unwrap_or_default(),
                        );
                    }
                    values.push(rfc3339(row.created_at));
                    let mut buf = Vec::with_capacity(160);
                    match format {
                        ExportFormat::Csv => {
                            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                            let _ = write_csv_record(&mut buf, &refs);
                        }
                        ExportFormat::Jsonl => {
                            let obj: serde_json::Map<String, serde_json::Value> = header
                                .iter()
                                .zip(values)
                                .filter(|(_, v)| !v.is_empty())
                                .map(|(k, v)| (k.clone(), serde_json::Value::String(v)))
                                .collect();
                            let _ = serde_json::to_writer(&mut buf, &obj);
                            buf.push(b'\n');
                        }
                    }
                    Ok(buf)
                })
                .collect();
            for r in rendered {
                match r {
                    Ok(bytes) => out.write_all(&bytes).map_err(io)?,
                    Err((cid, CryptoError::Tampered { field })) => {
                        let p2 = p.clone();
                        return Err(self.integrity_failure(&p2, cid, &field).await);
                    }
                    Err((_, e)) => return Err(e.into()),
                }
                rows += 1;
            }
        }
        out.flush().map_err(io)?;
        let record = ExportRecord {
            id: id.clone(),
            workspace_id: p.workspace_id.clone(),
            actor: p.actor.clone(),
            purpose: purpose.clone(),
            list_id: list.id.clone(),
            format: format.as_str().into(),
            row_count: rows,
            created_at: self.now(),
        };
        let finished = AuditDraft::new(&p.workspace_id, &p.actor, "export.finished")
            .target(format!("export:{id}"))
            .purpose(Some(&purpose))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "list": list.id, "format": format.as_str(), "rows": rows }));
        self.store.create_export(record.clone(), finished).await?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_back(bytes: &[u8]) -> Vec<String> {
        let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes);
        r.records().next().unwrap().unwrap().iter().map(str::to_string).collect()
    }

    #[test]
    fn hyperlink_formula_comes_back_as_text() {
        let mut buf = Vec::new();
        write_csv_record(&mut buf, &["=HYPERLINK(\"http://x\",\"y\")"]).unwrap();
        assert_eq!(parse_back(&buf), vec!["'=HYPERLINK(\"http://x\",\"y\")".to_string()]);
    }

    proptest! {
        #[test]
        fn no_cell_starts_with_a_formula_trigger(cells in proptest::collection::vec("\\PC{0,20}|[=+@\\t\\r\\n-].{0,10}", 1..8)) {
            let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
            let mut buf = Vec::new();
            write_csv_record(&mut buf, &refs).unwrap();
            let back = parse_back(&buf);
            prop_assert_eq!(back.len(), cells.len());
            for (orig, cell) in cells.iter().zip(&back) {
                prop_assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r', '\n']), "unprotected cell {:?}", cell);
                // Nothing is lost: the original is the cell without the guard.
                prop_assert!(cell == orig || cell.strip_prefix('\'') == Some(orig.as_str()));
            }
        }
    }
}
