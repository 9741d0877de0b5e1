//! `/api/v1/users`: invite colleagues, list, show, disable, enable and remove
//! users. Needs `users:manage`; nobody grants or manages a permission they lack.

use super::auth::Auth;
use super::error::{ApiError, BodyErrors, CommonErrors, ConflictError};
use super::extract::{ApiJson, ApiPath};
use super::security::{AllowlistView, SetAllowlist};
use super::AppState;
use crate::vault::users::UserView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(invite_user))
        .route("/users/{id}", get(get_user).delete(remove_user))
        .route("/users/{id}/disable", post(disable_user))
        .route("/users/{id}/enable", post(enable_user))
        .route("/users/{id}/reset-2fa", post(reset_second_factor))
        .route("/users/{id}/allowlist", put(set_user_allowlist))
}

/// The workspace's users, oldest first.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserIndex {
    pub items: Vec<UserView>,
}

/// A colleague to invite.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteUser {
    /// Their sign-in address; one user per address.
    #[schema(max_length = 320)]
    pub email: String,
    /// A role (`owner`, `admin`, `marketer`, `sender`, `viewer`, `auditor`) or
    /// permissions, comma-separated; never more than the inviter has.
    #[schema(max_length = 500)]
    pub role: String,
    /// Lists (ids or names) the user is limited to; all lists when left out.
    #[serde(default)]
    pub lists: Vec<String>,
}

/// A new user and their invitation token, which is shown only this once.
#[derive(Serialize, ToSchema)]
pub struct Invited {
    pub user: UserView,
    /// The single-use token (`csi_...`) to pass on; it expires after 72 hours.
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub token: SecretString,
    pub expires_at: String,
}

fn expose<S: Serializer>(token: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(token.expose_secret())
}

/// List users.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    responses((status = 200, description = "The users", body = UserIndex), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_users(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<UserIndex>, ApiError> {
    Ok(Json(UserIndex {
        items: state.vault.list_users(&p).await?,
    }))
}

/// Invite a colleague.
///
/// The answer holds the invitation token; it cannot be shown again.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = InviteUser,
    responses((status = 201, description = "The invited user and the token", body = Invited), ConflictError, BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn invite_user(State(state): State<AppState>, Auth(p): Auth, ApiJson(body): ApiJson<InviteUser>) -> Result<Response, ApiError> {
    let invitation = state.vault.invite_user(&p, &body.email, &body.role, &body.lists).await?;
    let location = format!("/api/v1/users/{}", invitation.user.id);
    Ok(super::created(
        &location,
        &Invited {
            user: invitation.user,
            token: invitation.token,
            expires_at: invitation.expires_at,
        },
    ))
}

/// Show a user.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserView), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_user(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.vault.get_user(&p, &id).await?))
}

/// Disable a user: they can sign in no more, their sessions end and the API
/// keys they created are revoked, at once.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/disable",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user, disabled", body = UserView), ConflictError, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn disable_user(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.vault.set_user_enabled(&p, &id, false).await?))
}

/// Enable a disabled user again (their ended sessions and revoked keys stay so).
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/enable",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user, active", body = UserView), ConflictError, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn enable_user(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.vault.set_user_enabled(&p, &id, true).await?))
}

/// Remove a user: their address, invitations and sessions are deleted and their
/// API keys revoked; the audit log keeps their id.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Removed"), ConflictError, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn remove_user(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.vault.remove_user(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reset a user's second factor.
///
/// For a user who lost their authenticator: removes it and their recovery codes
/// and ends their sessions; they sign in with their password and enrol again.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/reset-2fa",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Reset (or had none)"), ConflictError, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn reset_second_factor(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.reset_user_second_factor(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace a user's address allowlist.
///
/// The user can sign in and work only from an address on it (and on the
/// workspace's list). Shutting out the address of your own request needs
/// `confirm_lockout`.
#[utoipa::path(
    put,
    path = "/api/v1/users/{id}/allowlist",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body = SetAllowlist,
    responses((status = 200, description = "The allowlist now", body = AllowlistView), ConflictError, BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn set_user_allowlist(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetAllowlist>,
) -> Result<Json<AllowlistView>, ApiError> {
    Ok(Json(AllowlistView {
        allowlist: state
            .vault
            .set_user_allowlist(&p, &id, &body.allowlist, body.confirm_lockout)
            .await?,
    }))
}
