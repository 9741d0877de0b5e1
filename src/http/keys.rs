//! `/api/v1/keys`: create (the token is in the answer, once), list and revoke API
//! keys. Needs `keys:manage`; a key can grant only permissions it holds itself.

use super::auth::Auth;
use super::error::{ApiError, BodyErrors, CommonErrors};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::vault::api_keys::ApiKeyView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{id}", delete(revoke_key))
}

/// The keys of the workspace (never their secrets).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyIndex {
    pub items: Vec<ApiKeyView>,
}

/// Scopes as `"a,b"` or `["a", "b"]`: permissions (`contacts:read`, ...) or roles
/// (`owner`, `admin`, `marketer`, `sender`, `viewer`, `auditor`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Scopes {
    Text(String),
    List(Vec<String>),
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1-100 characters.
    pub name: String,
    pub scopes: Scopes,
    /// Lists (ids or names) the key is limited to; all lists when left out.
    #[serde(default)]
    pub lists: Vec<String>,
    /// Lifetime such as `90d`, `12h` or `30m`; no expiry when left out.
    pub expires: Option<String>,
}

/// A created key and its token, which is shown only this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: ApiKeyView,
    /// The secret token (`csk_...`); only a hash of it is stored.
    #[serde(serialize_with = "expose_token")]
    #[schema(value_type = String)]
    pub token: SecretString,
}

fn expose_token<S: Serializer>(token: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(token.expose_secret())
}

/// List API keys.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    responses((status = 200, description = "The keys", body = KeyIndex), CommonErrors),
    security(("bearer" = []))
)]
pub async fn list_keys(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<KeyIndex>, ApiError> {
    Ok(Json(KeyIndex {
        items: state.vault.list_api_keys(&p).await?,
    }))
}

/// Create an API key.
///
/// The answer holds the token; it cannot be shown again.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key and its token", body = CreatedKey),
        BodyErrors, CommonErrors
    ),
    security(("bearer" = []))
)]
pub async fn create_key(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let scopes = match body.scopes {
        Scopes::Text(s) => s,
        Scopes::List(v) => v.join(","),
    };
    let (key, token) = state
        .vault
        .create_api_key(&p, &body.name, &scopes, &body.lists, body.expires.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, token })))
}

/// Revoke an API key.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), CommonErrors),
    security(("bearer" = []))
)]
pub async fn revoke_key(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.vault.revoke_api_key(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
