//! `/api/v1/contacts/{id}/consents`: the append-only consent ledger of a contact.
//! Events are recorded and read, never changed: PATCH, PUT and DELETE answer 405
//! (see `method_not_allowed` in the parent module). The proof ties every event to
//! the audit event that recorded it.

use super::auth::{Auth, StatedPurpose};
use super::error::{ApiError, BodyErrors, CommonErrors};
use super::extract::{contact_id, ApiJson, ApiPath};
use super::{created, AppState};
use crate::vault::consents::{ConsentEventView, ConsentInput, ConsentLedger, ConsentProof};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/contacts/{id}/consents", get(get_ledger).post(record_consent))
        .route("/contacts/{id}/consents/proof", get(get_proof))
        .route("/contacts/{id}/consents/{event_id}", get(get_event))
}

/// Read a contact's consent ledger.
///
/// Every event, oldest first, and the current state per channel and purpose. The IP
/// address and user agent of an event are masked unless a purpose is stated.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}/consents",
    tag = "consents",
    params(("id" = Uuid, Path, description = "Contact id"), StatedPurpose),
    responses((status = 200, description = "The ledger", body = ConsentLedger), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_ledger(
    State(state): State<AppState>,
    Auth(p): Auth,
    purpose: StatedPurpose,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConsentLedger>, ApiError> {
    let mode = purpose.read_mode(&p)?;
    let id = contact_id(&id)?;
    Ok(Json(state.vault.consent_ledger(&p, id, &mode).await?))
}

/// Record a consent event.
///
/// Needs `contacts:write`. A grant, withdrawal or objection for one channel and
/// purpose; a source (where and how it was obtained) is required. A withdrawal or
/// objection also suppresses the address. The ledger is append-only: to change a
/// consent, record a new event.
#[utoipa::path(
    post,
    path = "/api/v1/contacts/{id}/consents",
    tag = "consents",
    params(("id" = Uuid, Path, description = "Contact id")),
    request_body = ConsentInput,
    responses(
        (status = 201, description = "The recorded event", body = ConsentEventView,
            headers(("Location" = String, description = "Path of the new event"))),
        BodyErrors, CommonErrors
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn record_consent(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<ConsentInput>,
) -> Result<Response, ApiError> {
    let id = contact_id(&id)?;
    let event = state.vault.record_consent(&p, id, input).await?;
    Ok(created(&format!("/api/v1/contacts/{id}/consents/{}", event.id), &event))
}

/// Read one consent event.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}/consents/{event_id}",
    tag = "consents",
    params(("id" = Uuid, Path, description = "Contact id"), ("event_id" = Uuid, Path, description = "Event id"), StatedPurpose),
    responses((status = 200, description = "The event", body = ConsentEventView), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_event(
    State(state): State<AppState>,
    Auth(p): Auth,
    purpose: StatedPurpose,
    ApiPath((id, event_id)): ApiPath<(String, String)>,
) -> Result<Json<ConsentEventView>, ApiError> {
    let mode = purpose.read_mode(&p)?;
    let id = contact_id(&id)?;
    let no_event = || ApiError::NotFound("no such consent event".into());
    let event_id = Uuid::parse_str(&event_id).map_err(|_| no_event())?;
    let ledger = state.vault.consent_ledger(&p, id, &mode).await?;
    ledger.events.into_iter().find(|e| e.id == event_id).map(Json).ok_or_else(no_event)
}

/// Build a consent proof.
///
/// A self-contained document: the events and their evidence, the audit events that
/// recorded them (with their hashes), the latest signed checkpoint covering them and
/// the public key that checks its signature.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}/consents/proof",
    tag = "consents",
    params(("id" = Uuid, Path, description = "Contact id"), StatedPurpose),
    responses((status = 200, description = "The proof", body = ConsentProof), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_proof(
    State(state): State<AppState>,
    Auth(p): Auth,
    purpose: StatedPurpose,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConsentProof>, ApiError> {
    let mode = purpose.read_mode(&p)?;
    let id = contact_id(&id)?;
    Ok(Json(state.vault.consent_proof(&p, id, &mode).await?))
}
