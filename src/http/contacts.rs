//! `/api/v1/contacts`: create, page through, look up by email or phone (identifiers
//! travel in the body, never in a URL), read, change and delete contacts. Identifying
//! fields come back masked unless the key has `contacts:read` and the request states
//! a purpose in `X-Consentry-Purpose`; the vault audits every unmasked read.

use super::auth::{Auth, StatedPurpose};
use super::error::{ApiError, BodyErrors, CommonErrors, ConflictError};
use super::extract::{contact_id, ApiJson, ApiPath, ApiQuery};
use super::{created, AppState};
use crate::vault::contacts::{ContactInput, ContactView};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/contacts", get(list_contacts).post(create_contact))
        .route("/contacts/lookup", post(lookup_contact))
        .route("/contacts/{id}", get(get_contact).patch(update_contact).delete(delete_contact))
}

/// One page of contacts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContactPage {
    pub items: Vec<ContactView>,
    /// Cursor of the next page (pass it as `after`); absent on the last page.
    pub next: Option<String>,
}

/// Paging through contacts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactListQuery {
    /// Only members of this list (id or name).
    pub list: Option<String>,
    /// Cursor: the `next` of the previous page.
    pub after: Option<Uuid>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Exact lookup by one identifier: an email address, or a phone number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LookupRequest {
    Email(EmailLookup),
    Phone(PhoneLookup),
}

/// Lookup by email address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailLookup {
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
}

/// Lookup by phone number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneLookup {
    /// In international form (`+31...`), or national form with `region`.
    #[schema(min_length = 1, max_length = 64)]
    pub phone: String,
    /// Region for a number written without a country code (e.g. `NL`).
    #[schema(pattern = "^[A-Z]{2}$")]
    pub region: Option<String>,
}

/// Checks a page size: 1-1000, 100 when left out.
pub fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(_) => Err(ApiError::invalid("limit", "a page holds 1-1000 items")),
    }
}

/// Create a contact.
///
/// Needs `contacts:write`. The contact can be added to lists and given its first
/// consents in the same request.
#[utoipa::path(
    post,
    path = "/api/v1/contacts",
    tag = "contacts",
    params(StatedPurpose),
    request_body = ContactInput,
    responses(
        (status = 201, description = "The contact, masked unless a purpose was stated", body = ContactView,
            headers(("Location" = String, description = "Path of the new contact"))),
        ConflictError, BodyErrors, CommonErrors
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn create_contact(
    State(state): State<AppState>,
    Auth(p): Auth,
    purpose: StatedPurpose,
    ApiJson(input): ApiJson<ContactInput>,
) -> Result<Response, ApiError> {
    let mode = purpose.write_mode(&p)?;
    let view = state.vault.create_contact(&p, input, &mode).await?;
    Ok(created(&format!("/api/v1/contacts/{}", view.id), &view))
}

/// List contacts.
///
/// Pages in id order, optionally of one list. Masked unless a purpose is stated.
#[utoipa::path(
    get,
    path = "/api/v1/contacts",
    tag = "contacts",
    params(ContactListQuery, StatedPurpose),
    responses((status = 200, description = "One page of contacts", body = ContactPage), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_contacts(
    State(state): State<AppState>,
    Auth(p): Auth,
    purpose: StatedPurpose,
    ApiQuery(q): ApiQuery<ContactListQuery>,
) -> Result<Json<ContactPage>, ApiError> {
    let mode = purpose.read_mode(&p)?;
    let limit = page_size(q.limit)?;
    let (items, next) = state.vault.list_contacts(&p, q.list.as_deref(), q.after, limit, &mode).await?;
    Ok(Json(ContactPage {
        items,
        next: next.map(|id| id.to_string()),
    }))
}

/// Look up a contact by email or phone.
///
/// Exact match through the blind index. The identifier is sent in the body so that
/// it never appears in a URL.
#[utoipa::path(
    post,
    path = "/api/v1/contacts/lookup",
    tag = "contacts",
    params(StatedPurpose),
    request_body = LookupRequest,
    responses((status = 200, description = "The contact", body = ContactView), BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn lookup_contact(
    State(state): State<AppState>,
    Auth(p): Auth,
    purpose: StatedPurpose,
    ApiJson(q): ApiJson<LookupRequest>,
) -> Result<Json<ContactView>, ApiError> {
    let mode = purpose.read_mode(&p)?;
    let view = match q {
        LookupRequest::Email(e) => state.vault.lookup_contact(&p, Some(&e.email), None, None, &mode).await?,
        LookupRequest::Phone(ph) => {
            state
                .vault
                .lookup_contact(&p, None, Some(&ph.phone), ph.region.as_deref(), &mode)
                .await?
        }
    };
    Ok(Json(view))
}

/// Read a contact.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "Contact id"), StatedPurpose),
    responses((status = 200, description = "The contact", body = ContactView), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_contact(
    State(state): State<AppState>,
    Auth(p): Auth,
    purpose: StatedPurpose,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ContactView>, ApiError> {
    let mode = purpose.read_mode(&p)?;
    let id = contact_id(&id)?;
    Ok(Json(state.vault.get_contact(&p, id, &mode).await?))
}

/// Change a contact.
///
/// Needs `contacts:write`. A field left out stays as it is; an empty string clears it.
#[utoipa::path(
    patch,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "Contact id"), StatedPurpose),
    request_body = ContactInput,
    responses((status = 200, description = "The changed contact", body = ContactView), ConflictError, BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn update_contact(
    State(state): State<AppState>,
    Auth(p): Auth,
    purpose: StatedPurpose,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<ContactInput>,
) -> Result<Json<ContactView>, ApiError> {
    let mode = purpose.write_mode(&p)?;
    let id = contact_id(&id)?;
    Ok(Json(state.vault.update_contact(&p, id, input, &mode).await?))
}

/// Delete a contact.
///
/// Needs `contacts:write`. The contact leaves every list and lookup.
#[utoipa::path(
    delete,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "Contact id")),
    responses((status = 204, description = "Deleted"), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn delete_contact(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    let id = contact_id(&id)?;
    state.vault.delete_contact(&p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
