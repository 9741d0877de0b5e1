//! `/api/v1/auth/...passkey...`: registering WebAuthn passkeys, using one as the
//! second factor of a session, and signing in with one alone. Each ceremony is
//! two requests: the first answers the options for the browser's
//! `navigator.credentials.create` / `.get` and a `ceremony_id`; the second sends
//! the credential the browser gave back (its JSON form, base64url fields).

use super::auth::{require_csrf, session_cookie as cookie_token, Auth, ClientIp, CurrentSession, EnrolAuth};
use super::error::{ApiError, BodyErrors, CommonErrors, ConflictError, ThrottledError};
use super::extract::{ApiJson, ApiPath};
use super::sessions::{set_session_cookie, FactorVerified, SignedIn};
use super::AppState;
use crate::vault::passkeys::{PasskeyChallenge, PasskeyView};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/factors/passkeys", get(list_passkeys).post(begin_registration))
        .route("/auth/factors/passkeys/confirm", post(finish_registration))
        .route("/auth/factors/passkeys/{id}", delete(remove_passkey))
        .route("/auth/factor/passkey/options", post(begin_factor))
        .route("/auth/factor/passkey", post(verify_factor))
        .route("/auth/passkey/options", post(begin_sign_in))
        .route("/auth/passkey/login", post(finish_sign_in))
}

/// The credential `navigator.credentials.create` gave, and a name for it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegistrationAnswer {
    #[schema(max_length = 64)]
    pub ceremony_id: String,
    /// What to call the passkey ("laptop", "YubiKey"); "Passkey" when left out.
    #[schema(max_length = 64)]
    pub name: Option<String>,
    /// The `PublicKeyCredential` as JSON (`id`, `rawId`, `type`, `response` with
    /// `attestationObject` and `clientDataJSON`, base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// The credential `navigator.credentials.get` gave.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAssertion {
    #[schema(max_length = 64)]
    pub ceremony_id: String,
    /// The `PublicKeyCredential` as JSON (`id`, `rawId`, `type`, `response` with
    /// `authenticatorData`, `clientDataJSON`, `signature`, `userHandle`, base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// A new passkey.
#[derive(Serialize, ToSchema)]
pub struct PasskeyEnrolled {
    pub passkey: PasskeyView,
    /// Ten single-use recovery codes, shown only this once, when the passkey is
    /// the user's first second factor; otherwise empty (the codes stay as they were).
    #[serde(serialize_with = "super::sessions::expose_all")]
    #[schema(value_type = Vec<String>)]
    pub recovery_codes: Vec<secrecy::SecretString>,
}

/// The signed-in user's passkeys.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PasskeyIndex {
    pub items: Vec<PasskeyView>,
}

/// The workspace to sign in to with a passkey.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PasskeySignInStart {
    /// May be left out when the server has one workspace.
    #[schema(max_length = 200)]
    pub workspace: Option<String>,
}

/// Start registering a passkey.
///
/// For the signed-in user (also a user who must enrol a second factor before
/// anything else). Answers the options for `navigator.credentials.create`;
/// the passkey must verify its user (PIN or biometrics).
#[utoipa::path(
    post,
    path = "/api/v1/auth/factors/passkeys",
    tag = "sessions",
    responses((status = 200, description = "The challenge", body = PasskeyChallenge), ConflictError, CommonErrors),
    security(("session" = []))
)]
pub async fn begin_registration(
    State(state): State<AppState>,
    EnrolAuth(p): EnrolAuth,
    session: Option<Extension<CurrentSession>>,
) -> Result<Json<PasskeyChallenge>, ApiError> {
    let session = session.map(|Extension(CurrentSession(id))| id);
    Ok(Json(state.vault.begin_passkey_registration(&p, session).await?))
}

/// Register the passkey.
///
/// With the credential the browser gave for the challenge (once, within five
/// minutes, from the same session). The passkey becomes a second factor and
/// every session of the user ends, this one too: sign in again. When it is the
/// user's first second factor, ten recovery codes are answered (once).
#[utoipa::path(
    post,
    path = "/api/v1/auth/factors/passkeys/confirm",
    tag = "sessions",
    request_body = PasskeyRegistrationAnswer,
    responses((status = 200, description = "Registered", body = PasskeyEnrolled), ConflictError, BodyErrors, CommonErrors),
    security(("session" = []))
)]
pub async fn finish_registration(
    State(state): State<AppState>,
    EnrolAuth(p): EnrolAuth,
    session: Option<Extension<CurrentSession>>,
    ApiJson(body): ApiJson<PasskeyRegistrationAnswer>,
) -> Result<Response, ApiError> {
    let session = session.map(|Extension(CurrentSession(id))| id);
    let enrolled = state
        .vault
        .finish_passkey_registration(&p, session, &body.ceremony_id, body.name.as_deref(), body.credential)
        .await?;
    let mut response = Json(PasskeyEnrolled {
        passkey: enrolled.passkey,
        recovery_codes: enrolled.recovery_codes,
    })
    .into_response();
    set_session_cookie(&mut response, "", 0)?;
    Ok(response)
}

/// The signed-in user's passkeys.
#[utoipa::path(
    get,
    path = "/api/v1/auth/factors/passkeys",
    tag = "sessions",
    responses((status = 200, description = "Passkeys, oldest first", body = PasskeyIndex), CommonErrors),
    security(("session" = []))
)]
pub async fn list_passkeys(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<PasskeyIndex>, ApiError> {
    Ok(Json(PasskeyIndex {
        items: state.vault.list_my_passkeys(&p).await?,
    }))
}

/// Remove a passkey.
///
/// Needs a second-factor check within the last 10 minutes. Every session of
/// the user ends, this one too.
#[utoipa::path(
    delete,
    path = "/api/v1/auth/factors/passkeys/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "Passkey id")),
    responses((status = 204, description = "Removed; every session of the user ended"), CommonErrors),
    security(("session" = []))
)]
pub async fn remove_passkey(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    state.vault.remove_my_passkey(&p, &id).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_session_cookie(&mut response, "", 0)?;
    Ok(response)
}

/// Start confirming with a passkey.
///
/// For a session that waits for its second factor, or a step-up. Answers the
/// options for `navigator.credentials.get` with the user's passkeys. Needs the
/// session cookie and its CSRF token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/factor/passkey/options",
    tag = "sessions",
    responses((status = 200, description = "The challenge", body = PasskeyChallenge), ConflictError, CommonErrors),
    security(("session" = []))
)]
pub async fn begin_factor(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
) -> Result<Json<PasskeyChallenge>, ApiError> {
    let token = cookie_token(&headers).ok_or(ApiError::Unauthorized { presented: false })?;
    let (session, _, _) = state.vault.live_session(&token, ip).await?;
    require_csrf(&state, &headers, &session.workspace_id, &token).await?;
    Ok(Json(state.vault.begin_passkey_factor(&token, ip).await?))
}

/// Confirm with a passkey.
///
/// With the credential the browser gave for the challenge: as a code does, it
/// completes the sign-in or is the step-up; the session gets a new token (a new
/// cookie) and a new CSRF token. A refused answer counts as a wrong code (the
/// fifth ends the session); a signature counter that did not rise (a cloned
/// authenticator) is refused and audited.
#[utoipa::path(
    post,
    path = "/api/v1/auth/factor/passkey",
    tag = "sessions",
    request_body = PasskeyAssertion,
    responses((status = 200, description = "Confirmed; the new cookie is set", body = FactorVerified), ConflictError, BodyErrors, CommonErrors),
    security(("session" = []))
)]
pub async fn verify_factor(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<PasskeyAssertion>,
) -> Result<Response, ApiError> {
    let token = cookie_token(&headers).ok_or(ApiError::Unauthorized { presented: false })?;
    let (session, _, _) = state.vault.live_session(&token, ip).await?;
    require_csrf(&state, &headers, &session.workspace_id, &token).await?;
    let renewed = state
        .vault
        .verify_passkey_factor(&token, &body.ceremony_id, body.credential, ip)
        .await?;
    let max_age = ((renewed.expires_at - crate::store::now_micros()) / 1_000_000).max(0);
    let mut response = Json(FactorVerified {
        csrf_token: renewed.csrf_token,
    })
    .into_response();
    set_session_cookie(&mut response, renewed.token.expose_secret(), max_age)?;
    Ok(response)
}

/// Start signing in with a passkey.
///
/// No password: answers the options for `navigator.credentials.get` without a
/// list of credentials, so the authenticator offers the accounts it holds for
/// this site. The workspace's allowlist and the client's failed-attempt limit
/// apply as to a password sign-in.
#[utoipa::path(
    post,
    path = "/api/v1/auth/passkey/options",
    tag = "sessions",
    request_body = PasskeySignInStart,
    responses((status = 200, description = "The challenge", body = PasskeyChallenge), ThrottledError, BodyErrors, CommonErrors),
    security(())
)]
pub async fn begin_sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<PasskeySignInStart>,
) -> Result<Json<PasskeyChallenge>, ApiError> {
    Ok(Json(state.vault.begin_passkey_sign_in(body.workspace.as_deref(), ip).await?))
}

/// Sign in with a passkey.
///
/// With the credential the browser gave for the challenge. The session's
/// second factor counts as checked (a passkey verifies its user). Any refusal
/// answers as a wrong password does and counts toward the client's limit.
#[utoipa::path(
    post,
    path = "/api/v1/auth/passkey/login",
    tag = "sessions",
    request_body = PasskeyAssertion,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SignedIn,
         headers(("Set-Cookie" = String, description = "The session cookie"))),
        ConflictError, ThrottledError, BodyErrors, CommonErrors
    ),
    security(())
)]
pub async fn finish_sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<PasskeyAssertion>,
) -> Result<Response, ApiError> {
    let signed = state.vault.finish_passkey_sign_in(&body.ceremony_id, body.credential, ip).await?;
    super::sessions::signed_in_response(signed)
}
