//! `/api/v1/audit`: pages of the workspace's audit log, oldest first. Needs
//! `audit:read`. Events hold no personal data (subjects are ids, client IPs keyed
//! hashes), so reading them reveals none.

use super::auth::Auth;
use super::contacts::page_size;
use super::error::{ApiError, CommonErrors};
use super::extract::ApiQuery;
use super::AppState;
use crate::audit::AuditEvent;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list_events))
}

/// One page of audit events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// Cursor of the next page (pass it as `after`); absent on the last page.
    pub next: Option<String>,
}

/// Paging through the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Cursor: the `next` of the previous page (a sequence number).
    #[param(pattern = "^[0-9]{1,18}$")]
    pub after: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Read the audit log.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses((status = 200, description = "One page of events", body = AuditPage), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_events(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let after = match q.after.as_deref() {
        None => 0,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("after", "use the `next` cursor of the previous page"))?,
    };
    let limit = page_size(q.limit)?;
    let items = state.vault.audit_events(&p, after, limit).await?;
    let next = if items.len() as u32 == limit {
        items.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok(Json(AuditPage { items, next }))
}
