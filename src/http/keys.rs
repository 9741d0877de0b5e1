//! `/api/v1/keys`: create (the token is in the answer, once), list and revoke API
//! keys. Needs `keys:manage`; a key can grant only permissions it holds itself.

use super::auth::Auth;
use super::error::{ApiError, BodyErrors, CommonErrors, ConflictError};
use super::extract::{ApiJson, ApiPath};
use super::security::{AllowlistView, SetAllowlist};
use super::AppState;
use crate::access::Permission;
use crate::vault::api_keys::ApiKeyView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{id}", delete(revoke_key))
        .route("/keys/rotate-all", post(rotate_all_keys))
        .route("/keys/{id}/rotate", post(rotate_key))
        .route("/keys/{id}/allowlist", put(set_key_allowlist))
}

/// The keys of the workspace (never their secrets).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyIndex {
    pub items: Vec<ApiKeyView>,
}

/// Scopes as `"a,b"` or `["a", "b"]`: permissions (`contacts:read`, ...) or roles
/// (`owner`, `admin`, `marketer`, `sender`, `viewer`, `auditor`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Scopes {
    Text(String),
    List(Vec<String>),
}

/// The roles `access::parse_scopes` expands, for the API description.
const ROLES: [&str; 6] = ["owner", "admin", "marketer", "sender", "viewer", "auditor"];

/// Describes `Scopes`: a comma-separated string or a list of scope names.
fn scopes_schema() -> Schema {
    let names: Vec<&str> = ROLES.into_iter().chain(Permission::ALL.iter().map(|p| p.as_str())).collect();
    let alternatives = names.join("|");
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^({alternatives})(,({alternatives}))*$")))
        .description(Some("Comma-separated scope names"));
    let list = ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)))
        .min_items(Some(1));
    OneOfBuilder::new()
        .item(text)
        .item(list)
        .description(Some("Permissions and roles the key gets"))
        .build()
        .into()
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1-100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    #[schema(schema_with = scopes_schema)]
    pub scopes: Scopes,
    /// Lists (ids or names) the key is limited to; all lists when left out.
    #[serde(default)]
    pub lists: Vec<String>,
    /// Lifetime such as `90d`, `12h` or `30m`; 90 days when left out; at most
    /// `api_key_max_days` (365 unless configured).
    #[schema(pattern = "^[1-9][0-9]{0,4}[dhm]$")]
    pub expires: Option<String>,
    /// Addresses and CIDR blocks the key may be used from (at most 100); any
    /// address when left out.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub allowlist: Vec<String>,
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
    security(("bearer" = []), ("session" = []))
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
    security(("bearer" = []), ("session" = []))
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
        .create_api_key_from(&p, &body.name, &scopes, &body.lists, body.expires.as_deref(), &body.allowlist)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, token })))
}

/// Revoke an API key.
///
/// A key cannot revoke itself (use another key or the CLI), so a client cannot lock
/// itself out by accident.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), ConflictError, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn revoke_key(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.vault.revoke_api_key(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How long the old key keeps working.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Such as `24h` or `30m` (at most 30 days); the old key stops at once when left out.
    #[schema(pattern = "^[1-9][0-9]{0,4}[dhm]$")]
    pub overlap: Option<String>,
}

/// Rotate an API key.
///
/// Makes a new key with the same name, permissions and lists (the token is in the
/// answer, once); the old key keeps working for the overlap, so clients can switch
/// without an outage. A key rotating itself must give an overlap (409 without).
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/rotate",
    tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    request_body = RotateKey,
    responses((status = 201, description = "The new key and its token", body = CreatedKey), ConflictError, BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn rotate_key(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RotateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let (key, token) = state.vault.rotate_api_key(&p, &id, body.overlap.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, token })))
}

/// Replace an API key's address allowlist.
///
/// Requests with the key must come from an address on it (and on the
/// workspace's list). Changing the list of the key making the request so that
/// it shuts this request's address out needs `confirm_lockout`.
#[utoipa::path(
    put,
    path = "/api/v1/keys/{id}/allowlist",
    tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    request_body = SetAllowlist,
    responses((status = 200, description = "The allowlist now", body = AllowlistView), ConflictError, BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn set_key_allowlist(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetAllowlist>,
) -> Result<Json<AllowlistView>, ApiError> {
    Ok(Json(AllowlistView {
        allowlist: state
            .vault
            .set_api_key_allowlist(&p, &id, &body.allowlist, body.confirm_lockout)
            .await?,
    }))
}

/// One key rotated by "rotate all keys".
#[derive(Serialize, ToSchema)]
pub struct RotatedKey {
    /// The id of the key replaced.
    pub old_key: String,
    pub key: ApiKeyView,
    /// The new secret token (`csk_...`), shown only this once.
    #[serde(serialize_with = "expose_token")]
    #[schema(value_type = String)]
    pub token: SecretString,
}

/// Every key rotated, with the new tokens.
#[derive(Serialize, ToSchema)]
pub struct RotatedKeys {
    pub items: Vec<RotatedKey>,
}

/// Rotate all keys of the workspace.
///
/// For when someone leaves: every live key gets a successor with the same name,
/// permissions, lists and allowlist (the tokens are in the answer, once); the
/// old keys keep working for the overlap, or stop at once without one (the key
/// making this request too). Recorded as one audit event.
#[utoipa::path(
    post,
    path = "/api/v1/keys/rotate-all",
    tag = "keys",
    request_body = RotateKey,
    responses((status = 201, description = "The new keys and their tokens", body = RotatedKeys), BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn rotate_all_keys(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<RotateKey>,
) -> Result<(StatusCode, Json<RotatedKeys>), ApiError> {
    let items = state
        .vault
        .rotate_all_api_keys(&p, body.overlap.as_deref())
        .await?
        .into_iter()
        .map(|(old_key, key, token)| RotatedKey { old_key, key, token })
        .collect();
    Ok((StatusCode::CREATED, Json(RotatedKeys { items })))
}
