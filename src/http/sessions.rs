//! `/api/v1/auth`: signing in with a password (the session token goes into a
//! `__Host-` cookie: Secure, HttpOnly, SameSite=Strict), signing out, and the
//! signed-in user's sessions; `/api/v1/invitations/accept`: an invitee chooses
//! their password.

use super::auth::{Auth, ClientIp, CurrentSession, SESSION_COOKIE};
use super::error::{ApiError, BodyErrors, CommonErrors, ConflictError};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::access::password::MAX_CHARS;
use crate::vault::sessions::{SessionView, SESSION_ABSOLUTE_MICROS};
use crate::vault::users::UserView;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(sign_in))
        .route("/auth/logout", post(sign_out))
        .route("/auth/sessions", get(list_sessions))
        .route("/auth/sessions/{id}", delete(end_session))
        .route("/invitations/accept", post(accept_invitation))
}

/// An address and a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The workspace to sign in to; may be left out when the server has one.
    #[schema(max_length = 200)]
    pub workspace: Option<String>,
    #[schema(max_length = 320)]
    pub email: String,
    #[schema(value_type = String, max_length = 1024)]
    pub password: SecretString,
}

/// A new session: its token is in the `Set-Cookie` header only.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SignedIn {
    pub user: UserView,
    pub session: SessionView,
    /// Send this in `X-Consentry-CSRF` with every request made with the session
    /// cookie that changes anything.
    pub csrf_token: String,
}

/// The signed-in user's sessions that have not ended, newest first.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SessionIndex {
    pub items: Vec<SessionView>,
}

/// An invitation token and the password its invitee chooses.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The token (`csi_...`) the invitation gave.
    #[schema(value_type = String, max_length = 200)]
    pub token: SecretString,
    /// At least 12 characters, not a common password, not easy to guess.
    #[schema(value_type = String, min_length = 12, max_length = 1024)]
    pub password: SecretString,
}

fn too_long(password: &SecretString) -> Result<(), ApiError> {
    if password.expose_secret().chars().count() > MAX_CHARS {
        return Err(ApiError::invalid(
            "password",
            format!("a password has at most {MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

fn session_cookie(token: &str, max_age_secs: i64) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    ))
    .map_err(|e| ApiError::Internal(e.into()))
}

/// Sign in.
///
/// A wrong address, a wrong password, an unknown workspace and a user who is
/// not active all get the same answer, after the same time. The session token is
/// set as the `__Host-consentry_session` cookie (Secure, HttpOnly,
/// SameSite=Strict); it ends after 30 minutes without a request and 12 hours
/// after sign-in.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "sessions",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SignedIn,
         headers(("Set-Cookie" = String, description = "The session cookie"))),
        BodyErrors, CommonErrors
    ),
    security(())
)]
pub async fn sign_in(State(state): State<AppState>, ClientIp(ip): ClientIp, ApiJson(body): ApiJson<SignIn>) -> Result<Response, ApiError> {
    too_long(&body.password)?;
    let signed = state
        .vault
        .sign_in(body.workspace.as_deref(), &body.email, &body.password, ip)
        .await?;
    let cookie = session_cookie(signed.token.expose_secret(), SESSION_ABSOLUTE_MICROS / 1_000_000)?;
    let mut response = Json(SignedIn {
        user: signed.user,
        session: signed.session,
        csrf_token: signed.csrf_token,
    })
    .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Sign out: ends the session of this request and clears its cookie.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "sessions",
    responses((status = 204, description = "Signed out"), CommonErrors),
    security(("session" = []))
)]
pub async fn sign_out(
    State(state): State<AppState>,
    Auth(p): Auth,
    session: Option<Extension<CurrentSession>>,
) -> Result<Response, ApiError> {
    let Some(Extension(CurrentSession(id))) = session else {
        return Err(ApiError::bad_request("only a session signs out; an API key is revoked instead"));
    };
    state.vault.end_my_session(&p, &id.to_string()).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0)?);
    Ok(response)
}

/// The signed-in user's sessions.
#[utoipa::path(
    get,
    path = "/api/v1/auth/sessions",
    tag = "sessions",
    responses((status = 200, description = "Sessions that have not ended", body = SessionIndex), CommonErrors),
    security(("session" = []))
)]
pub async fn list_sessions(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<SessionIndex>, ApiError> {
    Ok(Json(SessionIndex {
        items: state.vault.list_my_sessions(&p).await?,
    }))
}

/// End one of the signed-in user's sessions.
#[utoipa::path(
    delete,
    path = "/api/v1/auth/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Ended (or had ended)"), CommonErrors),
    security(("session" = []))
)]
pub async fn end_session(State(state): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.vault.end_my_session(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation.
///
/// The invitee chooses a password (at least 12 characters, not one of the
/// 10,000 most common, not easy to guess); the token works once, within 72
/// hours of the invitation.
#[utoipa::path(
    post,
    path = "/api/v1/invitations/accept",
    tag = "sessions",
    request_body = AcceptInvitation,
    responses((status = 200, description = "The user, now active", body = UserView), ConflictError, BodyErrors, CommonErrors),
    security(())
)]
pub async fn accept_invitation(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AcceptInvitation>,
) -> Result<Json<UserView>, ApiError> {
    too_long(&body.password)?;
    Ok(Json(state.vault.accept_invitation(&body.token, &body.password).await?))
}
