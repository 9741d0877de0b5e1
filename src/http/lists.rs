//! `/api/v1/lists`: create, list, read, rename and delete lists, and add or remove
//! members. A key limited to some lists sees only those; the others answer 404.

use super::auth::Auth;
use super::error::{ApiError, BodyErrors, CommonErrors, ConflictError};
use super::extract::{ApiJson, ApiPath};
use super::{created, AppState};
use crate::vault::lists::ListView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/lists", get(list_lists).post(create_list))
        .route("/lists/{id}", get(get_list).patch(rename_list).delete(delete_list))
        .route("/lists/{id}/members", post(add_members).delete(remove_members))
}

/// The lists a key can see.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListIndex {
    pub items: Vec<ListView>,
}

/// A list's name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListName {
    /// 1-100 printable characters, unique in the workspace.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]([^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f])?$"
    )]
    pub name: String,
}

/// Contacts to add to or remove from a list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberChange {
    /// 1-10000 contact ids.
    #[schema(min_items = 1, max_items = 10000)]
    pub contacts: Vec<Uuid>,
}

/// How many contacts became members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MembersAdded {
    pub added: u64,
}

/// How many contacts stopped being members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MembersRemoved {
    pub removed: u64,
}

/// List lists.
#[utoipa::path(
    get,
    path = "/api/v1/lists",
    tag = "lists",
    responses((status = 200, description = "The lists", body = ListIndex), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_lists(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<ListIndex>, ApiError> {
    Ok(Json(ListIndex {
        items: state.vault.list_lists(&p).await?,
    }))
}

/// Create a list.
///
/// Needs `lists:manage` and a key not limited to some lists.
#[utoipa::path(
    post,
    path = "/api/v1/lists",
    tag = "lists",
    request_body = ListName,
    responses(
        (status = 201, description = "The new list", body = ListView,
            headers(("Location" = String, description = "Path of the new list"))),
        BodyErrors, ConflictError, CommonErrors
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn create_list(State(state): State<AppState>, Auth(p): Auth, ApiJson(body): ApiJson<ListName>) -> Result<Response, ApiError> {
    let list = state.vault.create_list(&p, &body.name).await?;
    Ok(created(&format!("/api/v1/lists/{}", list.id), &list))
}

/// Read a list.
#[utoipa::path(
    get,
    path = "/api/v1/lists/{id}",
    tag = "lists",
    params(("id" = String, Path, description = "List id or name")),
    responses((status = 200, description = "The list", body = ListView), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_list(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<Json<ListView>, ApiError> {
    Ok(Json(state.vault.list_view(&p, &id).await?))
}

/// Rename a list.
#[utoipa::path(
    patch,
    path = "/api/v1/lists/{id}",
    tag = "lists",
    params(("id" = String, Path, description = "List id or name")),
    request_body = ListName,
    responses((status = 200, description = "The renamed list", body = ListView), BodyErrors, ConflictError, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn rename_list(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ListName>,
) -> Result<Json<ListView>, ApiError> {
    Ok(Json(state.vault.rename_list(&p, &id, &body.name).await?))
}

/// Delete a list.
///
/// Its members stay in the workspace; only the list and its memberships go.
#[utoipa::path(
    delete,
    path = "/api/v1/lists/{id}",
    tag = "lists",
    params(("id" = String, Path, description = "List id or name")),
    responses((status = 204, description = "Deleted"), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn delete_list(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.vault.delete_list(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add members to a list.
#[utoipa::path(
    post,
    path = "/api/v1/lists/{id}/members",
    tag = "lists",
    params(("id" = String, Path, description = "List id or name")),
    request_body = MemberChange,
    responses((status = 200, description = "How many became members", body = MembersAdded), BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn add_members(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MemberChange>,
) -> Result<Json<MembersAdded>, ApiError> {
    Ok(Json(MembersAdded {
        added: state.vault.add_members(&p, &id, body.contacts).await?,
    }))
}

/// Remove members from a list.
#[utoipa::path(
    delete,
    path = "/api/v1/lists/{id}/members",
    tag = "lists",
    params(("id" = String, Path, description = "List id or name")),
    request_body = MemberChange,
    responses((status = 200, description = "How many stopped being members", body = MembersRemoved), BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn remove_members(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MemberChange>,
) -> Result<Json<MembersRemoved>, ApiError> {
    Ok(Json(MembersRemoved {
        removed: state.vault.remove_members(&p, &id, body.contacts).await?,
    }))
}
