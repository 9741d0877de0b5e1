//! `/api/v1/imports`: a CSV file as the raw body (`text/csv` or
//! `application/octet-stream`) or as the `file` part of a multipart form, with the
//! options in the query string (they are not secrets). The body limit is checked
//! against `Content-Length` before anything is read and enforced again while reading.
//! The import itself is the same service the CLI runs.

use super::auth::Auth;
use super::error::{ApiError, BodyErrors, CommonErrors};
use super::extract::{ApiPath, ApiQuery};
use super::{created, AppState};
use crate::domain::{Channel, Purpose, Region};
use crate::import::service::{ImportOptions, ImportReport, OnExisting, SourceOpener};
use crate::store::ImportRejection;
use crate::vault::FieldError;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

pub fn router(body_limit: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/imports",
            post(create_import)
                .layer(DefaultBodyLimit::max(body_limit))
                .layer(from_fn_with_state(body_limit, refuse_oversized)),
        )
        .route("/imports/{id}", get(get_import))
        .route("/imports/{id}/rejections", get(list_rejections))
}

/// Options of an import.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// List (id or name) to add the contacts to; created when missing.
    #[param(min_length = 1, max_length = 100)]
    pub list: String,
    /// Where and how the consents were obtained; required unless every row has `gdpr_source`.
    pub source: Option<String>,
    /// Channels the consents cover, comma-separated: `email`, `sms`, `whatsapp` (default `email`).
    #[param(pattern = "^(email|sms|whatsapp)(,(email|sms|whatsapp))*$")]
    pub channels: Option<String>,
    /// Default region for phone numbers without a country code (e.g. `NL`).
    #[param(pattern = "^[A-Z]{2}$")]
    pub region: Option<String>,
    /// What to do with contacts that already exist (default `merge`).
    #[param(inline)]
    pub on_existing: Option<OnExisting>,
    /// Check and count without writing anything.
    pub dry_run: Option<bool>,
    /// Create unknown columns as attributes (identifying unless named in `segmentable`).
    pub create_attributes: Option<bool>,
    /// Columns to create as segmentable (clear) attributes, comma-separated.
    pub segmentable: Option<String>,
    /// Purpose of the imported consents (default `marketing`).
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    pub consent_purpose: Option<String>,
}

/// Rejected cells of an import (row, column and reason; never the value).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RejectionIndex {
    pub items: Vec<ImportRejection>,
}

/// Parses the query options into import options, naming every bad one.
fn import_options(q: ImportQuery) -> Result<ImportOptions, ApiError> {
    let mut errors = Vec::new();
    let channels = Channel::parse_list(q.channels.as_deref().unwrap_or("email")).unwrap_or_else(|m| {
        errors.push(FieldError::new("channels", m));
        Vec::new()
    });
    let region = q
        .region
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .and_then(|r| Region::parse(r).map_err(|m| errors.push(FieldError::new("region", m))).ok());
    let purpose = match q.consent_purpose.as_deref() {
        None => Purpose::marketing(),
        Some(raw) => Purpose::parse(raw).unwrap_or_else(|m| {
            errors.push(FieldError::new("consent_purpose", m));
            Purpose::marketing()
        }),
    };
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    Ok(ImportOptions {
        list: q.list,
        source: q.source,
        channels,
        region,
        on_existing: q.on_existing.unwrap_or(OnExisting::Merge),
        dry_run: q.dry_run.unwrap_or(false),
        create_attributes: q.create_attributes.unwrap_or(false),
        segmentable: q
            .segmentable
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        purpose,
    })
}

/// Route layer: a declared body over the limit is refused before it is read.
async fn refuse_oversized(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::PayloadTooLarge { limit: Some(limit) }.into_response();
    }
    next.run(request).await
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Reads the CSV bytes from a raw or multipart body, within the route's limit.
async fn read_csv(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let limit = state.settings.import_body_limit;
    let too_large = |status: StatusCode| status == StatusCode::PAYLOAD_TOO_LARGE;
    match media_type(request.headers()).as_str() {
        "multipart/form-data" => {
            let mut form = Multipart::from_request(request, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
            loop {
                let field = form.next_field().await.map_err(|e| {
                    if too_large(e.status()) {
                        ApiError::PayloadTooLarge { limit: Some(limit) }
                    } else {
                        ApiError::bad_request(format!("the multipart body could not be read: {}", e.body_text()))
                    }
                })?;
                let Some(field) = field else {
                    return Err(ApiError::invalid("file", "send the CSV in a form part named `file`"));
                };
                if field.name() == Some("file") {
                    return field.bytes().await.map_err(|e| {
                        if too_large(e.status()) {
                            ApiError::PayloadTooLarge { limit: Some(limit) }
                        } else {
                            ApiError::bad_request(format!("the file part could not be read: {}", e.body_text()))
                        }
                    });
                }
            }
        }
        "text/csv" | "application/csv" | "text/plain" | "application/octet-stream" => {
            Bytes::from_request(request, state).await.map_err(|e| {
                if too_large(e.status()) {
                    ApiError::PayloadTooLarge { limit: Some(limit) }
                } else {
                    ApiError::bad_request("the request body could not be read")
                }
            })
        }
        _ => Err(ApiError::UnsupportedMediaType(
            "send the CSV as `text/csv` or `application/octet-stream`, or as the `file` part of `multipart/form-data`".into(),
        )),
    }
}

/// Import a CSV file.
///
/// Needs `contacts:import`. RFC 4180 CSV with a header row (UTF-8, UTF-16 or
/// Windows-1252; `,` `;` or tab). Columns: `email` and/or `phone`, `first_name`,
/// `last_name`, attributes of the workspace schema, and per-row `gdpr_source`,
/// `consent_channel`, `consented_at`, `consent_ip`. Rerunning an interrupted import
/// of the same file with the same options resumes it.
#[utoipa::path(
    post,
    path = "/api/v1/imports",
    tag = "imports",
    params(ImportQuery),
    request_body(content(
        (String = "text/csv"),
        (String = "application/octet-stream"),
        (inline(UploadForm) = "multipart/form-data")
    )),
    responses(
        (status = 201, description = "The import ran; its report", body = ImportReport,
            headers(("Location" = String, description = "Path of the import"))),
        (status = 200, description = "Dry run: what the import would do", body = ImportReport),
        BodyErrors, CommonErrors
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn create_import(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let opts = import_options(q)?;
    let dry_run = opts.dry_run;
    let bytes = read_csv(request, &state).await?;
    let open: SourceOpener = Arc::new(move || Ok(Box::new(std::io::Cursor::new(bytes.clone())) as Box<dyn Read + Send>));
    let report = state.vault.import_csv(&p, open, opts, None, state.shutdown.clone()).await?;
    if dry_run {
        return Ok((StatusCode::OK, Json(report)).into_response());
    }
    let c = &report.counts;
    for (outcome, n) in [
        ("read", c.read),
        ("created", c.created),
        ("updated", c.updated),
        ("unchanged", c.unchanged),
        ("suppressed", c.suppressed),
        ("rejected", c.rejected),
    ] {
        state.metrics.import_rows(outcome, n);
    }
    Ok(created(&format!("/api/v1/imports/{}", report.import_id), &report))
}

/// A CSV file sent as a form.
// Only describes the form in the API description: `read_csv` reads the part itself.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The CSV file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Read an import's report.
#[utoipa::path(
    get,
    path = "/api/v1/imports/{id}",
    tag = "imports",
    params(("id" = String, Path, description = "Import id")),
    responses((status = 200, description = "The report", body = ImportReport), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_import(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ImportReport>, ApiError> {
    Ok(Json(state.vault.get_import(&p, &id).await?))
}

/// List an import's rejected cells.
#[utoipa::path(
    get,
    path = "/api/v1/imports/{id}/rejections",
    tag = "imports",
    params(("id" = String, Path, description = "Import id")),
    responses((status = 200, description = "The rejected cells (the first 1000)", body = RejectionIndex), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_rejections(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RejectionIndex>, ApiError> {
    let report = state.vault.get_import(&p, &id).await?;
    Ok(Json(RejectionIndex { items: report.rejections }))
}
