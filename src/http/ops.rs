//! Operations endpoints, outside the versioned API and without authentication:
//! `/healthz` (the process answers), `/readyz` (the store answers) and `/metrics`
//! (Prometheus text; no personal data in any label).

use super::error::{ApiError, NotReadyError};
use super::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, description = "Ready", body = String, content_type = "text/plain"), NotReadyError)
)]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .vault
        .store
        .ping()
        .await
        .map_err(|e| ApiError::NotReady(anyhow::Error::new(e).context("failed to ping the store")))?;
    Ok("ready")
}

/// Content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prometheus metrics.
///
/// Requests by method, route template and status; request latency; imported rows by
/// outcome; audit events.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Metrics in the OpenMetrics text format", body = String,
        content_type = "application/openmetrics-text"))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    // The log is append-only, so the sum of the chain heads is the number of events.
    let mut total = 0u64;
    let workspaces = state
        .vault
        .store
        .list_workspaces()
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("failed to list workspaces")))?;
    for ws in workspaces {
        let head = state
            .vault
            .store
            .audit_head(&ws.id)
            .await
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("failed to read an audit head")))?;
        total += head.map_or(0, |h| u64::try_from(h.seq).unwrap_or(0));
    }
    state.metrics.observe_audit_total(total);
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("failed to encode the metrics")))?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    Ok(response)
}
