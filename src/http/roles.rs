//! `/api/v1/roles`: custom roles (named sets of permissions) beside the built-in
//! ones, and `/api/v1/users/{id}/role`: a user's role change. Defining roles
//! needs `security:manage`; nobody grants a permission they lack.

use super::auth::Auth;
use super::error::{ApiError, BodyErrors, CommonErrors, ConflictError};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::vault::roles::RoleView;
use crate::vault::users::UserView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/roles", get(list_roles).post(create_role))
        .route("/roles/{name}", put(update_role).delete(delete_role))
        .route("/users/{id}/role", put(set_user_role))
}

/// The workspace's custom roles, by name.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RoleIndex {
    pub items: Vec<RoleView>,
}

/// A custom role to define.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// 1-40 lowercase letters, digits and hyphens, starting with a letter; not a
    /// built-in role's name.
    #[schema(min_length = 1, max_length = 40, pattern = "^[a-z][a-z0-9-]{0,39}$")]
    pub name: String,
    /// Permissions (`contacts:read`, ...) and roles whose permissions it takes.
    #[schema(min_items = 1, max_items = 64)]
    pub permissions: Vec<String>,
}

/// A custom role's new permissions.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolePermissions {
    pub permissions: Vec<String>,
}

/// A user's new role.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRole {
    /// A built-in role, a custom role, or permissions, comma-separated.
    #[schema(min_length = 1, max_length = 1000)]
    pub role: String,
    /// Lists (ids or names) the user is limited to; all lists when left out
    /// (or the caller's own, when the caller is limited).
    #[serde(default)]
    pub lists: Vec<String>,
}

/// List custom roles.
#[utoipa::path(
    get,
    path = "/api/v1/roles",
    tag = "users",
    responses((status = 200, description = "The custom roles", body = RoleIndex), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_roles(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<RoleIndex>, ApiError> {
    Ok(Json(RoleIndex {
        items: state.vault.list_roles(&p).await?,
    }))
}

/// Define a custom role.
///
/// Only permissions the caller holds can be put in it.
#[utoipa::path(
    post,
    path = "/api/v1/roles",
    tag = "users",
    request_body = NewRole,
    responses((status = 201, description = "The role", body = RoleView), ConflictError, BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn create_role(State(state): State<AppState>, Auth(p): Auth, ApiJson(body): ApiJson<NewRole>) -> Result<Response, ApiError> {
    let role = state.vault.create_role(&p, &body.name, &body.permissions.join(",")).await?;
    Ok(super::created(&format!("/api/v1/roles/{}", role.name), &role))
}

/// Change a custom role's permissions.
///
/// Every session of the users who hold the role ends: they sign in again with
/// what the role grants now.
#[utoipa::path(
    put,
    path = "/api/v1/roles/{name}",
    tag = "users",
    params(("name" = String, Path, description = "Role name")),
    request_body = RolePermissions,
    responses((status = 200, description = "The role now", body = RoleView), BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn update_role(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<RolePermissions>,
) -> Result<Json<RoleView>, ApiError> {
    Ok(Json(state.vault.update_role(&p, &name, &body.permissions.join(",")).await?))
}

/// Delete a custom role.
///
/// Refused (409) while a user holds it.
#[utoipa::path(
    delete,
    path = "/api/v1/roles/{name}",
    tag = "users",
    params(("name" = String, Path, description = "Role name")),
    responses((status = 204, description = "Deleted"), ConflictError, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn delete_role(State(state): State<AppState>, Auth(p): Auth, ApiPath(name): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.vault.delete_role(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a user's role and lists.
///
/// Every session of the user ends (a privilege change). Nobody changes their
/// own role, or gives more than they hold.
#[utoipa::path(
    put,
    path = "/api/v1/users/{id}/role",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body = UserRole,
    responses((status = 200, description = "The user now", body = UserView), ConflictError, BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn set_user_role(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UserRole>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.vault.set_user_role(&p, &id, &body.role, &body.lists).await?))
}
