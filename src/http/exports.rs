//! `/api/v1/exports`: a list's contacts, decrypted, as CSV (every cell quoted,
//! formulas neutralised) or JSON Lines, for a stated purpose; and the record of an
//! export (who, when, why, how many rows). Exports need `contacts:export` and, since
//! they hand out unmasked data, `contacts:read` too.

use super::auth::Auth;
use super::error::{ApiError, BodyErrors, CommonErrors};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::clock::rfc3339;
use crate::store::ExportRecord;
use crate::vault::exports::ExportFormat;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Header naming the export record of an export's answer.
pub const EXPORT_ID_HEADER: &str = "x-consentry-export-id";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/exports", post(create_export))
        .route("/exports/{id}", get(get_export))
}

/// An export to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The list (id or name) to export.
    #[schema(min_length = 1, max_length = 100)]
    pub list: String,
    /// Why the data leaves (1-200 printable characters); recorded in the audit log
    /// and the export record.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub purpose: Option<String>,
    /// `csv` (default) or `jsonl`.
    pub format: Option<ExportFormat>,
}

/// The record of an export.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportView {
    pub id: String,
    /// Who ran it (`key:<id>` or `cli`).
    pub actor: String,
    pub purpose: String,
    pub list: String,
    pub format: String,
    pub row_count: u64,
    pub created_at: String,
}

impl From<ExportRecord> for ExportView {
    fn from(r: ExportRecord) -> Self {
        ExportView {
            id: r.id,
            actor: r.actor,
            purpose: r.purpose,
            list: r.list_id,
            format: r.format,
            row_count: r.row_count,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// Export a list.
///
/// Needs `contacts:export` and `contacts:read`. The answer is the file; its export
/// record is named in `X-Consentry-Export-Id`.
#[utoipa::path(
    post,
    path = "/api/v1/exports",
    tag = "exports",
    request_body = ExportRequest,
    responses(
        (status = 200, description = "The exported file",
            content((String = "text/csv"), (String = "application/x-ndjson")),
            headers(("X-Consentry-Export-Id" = String, description = "Id of the export record"))),
        BodyErrors, CommonErrors
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn create_export(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<ExportRequest>,
) -> Result<Response, ApiError> {
    let purpose = body
        .purpose
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("purpose", "an export needs a purpose: say why the data leaves"))?;
    let format = body.format.unwrap_or(ExportFormat::Csv);
    let mut out = Vec::new();
    let record = state.vault.export_list(&p, &body.list, &purpose, format, &mut out).await?;
    let (content_type, extension) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&record.id) {
        headers.insert(HeaderName::from_static(EXPORT_ID_HEADER), v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.{extension}\"", record.id)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Read an export record.
///
/// Needs `contacts:export` or `audit:read`.
#[utoipa::path(
    get,
    path = "/api/v1/exports/{id}",
    tag = "exports",
    params(("id" = String, Path, description = "Export id")),
    responses((status = 200, description = "The export record", body = ExportView), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_export(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<Json<ExportView>, ApiError> {
    let record = state.vault.get_export(&p, &id).await?;
    Ok(Json(record.into()))
}
