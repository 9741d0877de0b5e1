//! `/api/v1/auth`: signing in with a password (the session token goes into a
//! `__Host-` cookie: Secure, HttpOnly, SameSite=Strict), signing out, and the
//! signed-in user's sessions; `/api/v1/invitations/accept`: an invitee chooses
//! their password.

use super::auth::{require_csrf, session_cookie as cookie_token, Auth, ClientIp, CurrentSession, EnrolAuth, PasswordAuth, SESSION_COOKIE};
use super::error::{ApiError, BodyErrors, CommonErrors, ConflictError, ThrottledError};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::vault::factors::TotpEnrolment;
use crate::vault::sessions::{SessionView, SESSION_ABSOLUTE_MICROS};
use crate::vault::users::UserView;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/me", get(whoami))
        .route("/auth/login", post(sign_in))
        .route("/auth/logout", post(sign_out))
        .route("/auth/sessions", get(list_sessions))
        .route("/auth/sessions/{id}", delete(end_session))
        .route("/auth/factor", post(verify_factor))
        .route("/auth/password", post(change_password))
        .route("/auth/factors/totp", post(begin_totp))
        .route("/auth/factors/totp/confirm", post(confirm_totp))
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
    /// When true, the session is usable only after `POST /api/v1/auth/factor`
    /// with a code of the user's authenticator or a recovery code.
    pub second_factor_required: bool,
    /// When true, the workspace requires a second factor the user has not
    /// enrolled: the session can only enrol one (`POST /api/v1/auth/factors/passkeys`
    /// or `POST /api/v1/auth/factors/totp`).
    pub second_factor_enrolment_required: bool,
    /// When true, every password of the workspace was reset: the session can
    /// only choose a new one (`POST /api/v1/auth/password`).
    pub password_change_required: bool,
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

fn session_cookie(token: &str, max_age_secs: i64) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    ))
    .map_err(|e| ApiError::Internal(e.into()))
}

/// Sign in.
///
/// A wrong address, a wrong password, an unknown workspace and a user who is
/// not active all get the same answer, after the same time. After five failures
/// for one address within 15 minutes each further attempt for it waits (1 s,
/// doubling, at most 5 minutes), whether or not an account has the address; after
/// 30 failures from one client the client waits for the 15 minutes to pass (429
/// with `Retry-After`). The session token is
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
        ThrottledError, BodyErrors, CommonErrors
    ),
    security(())
)]
pub async fn sign_in(State(state): State<AppState>, ClientIp(ip): ClientIp, ApiJson(body): ApiJson<SignIn>) -> Result<Response, ApiError> {
    let signed = state
        .vault
        .sign_in(body.workspace.as_deref(), &body.email, &body.password, ip)
        .await?;
    signed_in_response(signed)
}

/// The answer to a sign-in: the session in the body, its token in the cookie.
pub(crate) fn signed_in_response(signed: crate::vault::sessions::SignedIn) -> Result<Response, ApiError> {
    let mut response = Json(SignedIn {
        user: signed.user,
        session: signed.session,
        second_factor_required: signed.second_factor_required,
        second_factor_enrolment_required: signed.second_factor_enrolment_required,
        password_change_required: signed.password_change_required,
        csrf_token: signed.csrf_token,
    })
    .into_response();
    set_session_cookie(&mut response, signed.token.expose_secret(), SESSION_ABSOLUTE_MICROS / 1_000_000)?;
    Ok(response)
}

/// Sets (or, with an empty token and no age, clears) the session cookie.
pub(crate) fn set_session_cookie(response: &mut Response, token: &str, max_age_secs: i64) -> Result<(), ApiError> {
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(token, max_age_secs)?);
    Ok(())
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
    Ok(Json(state.vault.accept_invitation(&body.token, &body.password).await?))
}

/// A code of the user's authenticator app, or one of their recovery codes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FactorCode {
    #[schema(value_type = String, max_length = 32)]
    pub code: SecretString,
}

/// New recovery codes, shown only this once; each works once.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    #[serde(serialize_with = "expose_all")]
    #[schema(value_type = Vec<String>)]
    pub recovery_codes: Vec<SecretString>,
}

pub(crate) fn expose_all<S: serde::Serializer>(codes: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(codes.len()))?;
    for c in codes {
        seq.serialize_element(c.expose_secret())?;
    }
    seq.end()
}

/// The session's new CSRF token after a second-factor check.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FactorVerified {
    /// Send this in `X-Consentry-CSRF` from now on; the old one stopped with
    /// the old session token.
    pub csrf_token: String,
}

/// Confirm with a second factor: complete a sign-in, or step up.
///
/// A current code of the authenticator app (each works once) or an unused
/// recovery code. For a session that waits for its second factor (sign-in
/// answered `second_factor_required: true`) this completes the sign-in; for a
/// session in use it is the step-up that exports and security settings need
/// within the last 10 minutes. Either way the session gets a new token (a new
/// cookie) and a new CSRF token; the old ones stop. The fifth wrong code ends
/// the session. Needs the session cookie and its CSRF token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/factor",
    tag = "sessions",
    request_body = FactorCode,
    responses((status = 200, description = "Confirmed; the new cookie is set", body = FactorVerified), BodyErrors, CommonErrors),
    security(("session" = []))
)]
pub async fn verify_factor(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<FactorCode>,
) -> Result<Response, ApiError> {
    let token = cookie_token(&headers).ok_or(ApiError::Unauthorized { presented: false })?;
    let (session, _, _) = state.vault.live_session(&token, ip).await?;
    require_csrf(&state, &headers, &session.workspace_id, &token).await?;
    let renewed = state.vault.verify_second_factor(&token, &body.code, ip).await?;
    let max_age = ((renewed.expires_at - crate::store::now_micros()) / 1_000_000).max(0);
    let cookie = session_cookie(renewed.token.expose_secret(), max_age)?;
    let mut response = Json(FactorVerified {
        csrf_token: renewed.csrf_token,
    })
    .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Start enrolling an authenticator app.
///
/// Answers the new seed as text, as an `otpauth://` URI and as an SVG QR code;
/// it becomes a second factor once confirmed with a code from the app.
#[utoipa::path(
    post,
    path = "/api/v1/auth/factors/totp",
    tag = "sessions",
    responses((status = 200, description = "The seed, shown once", body = TotpEnrolment), ConflictError, CommonErrors),
    security(("session" = []))
)]
pub async fn begin_totp(State(state): State<AppState>, EnrolAuth(p): EnrolAuth) -> Result<Json<TotpEnrolment>, ApiError> {
    Ok(Json(state.vault.begin_totp(&p).await?))
}

/// Confirm the authenticator app.
///
/// With a current code from the app: the app becomes the user's second factor,
/// ten new recovery codes are answered (once), and all the user's sessions end,
/// this one too: sign in again.
#[utoipa::path(
    post,
    path = "/api/v1/auth/factors/totp/confirm",
    tag = "sessions",
    request_body = FactorCode,
    responses((status = 200, description = "The recovery codes", body = RecoveryCodes), ConflictError, BodyErrors, CommonErrors),
    security(("session" = []))
)]
pub async fn confirm_totp(
    State(state): State<AppState>,
    EnrolAuth(p): EnrolAuth,
    ApiJson(body): ApiJson<FactorCode>,
) -> Result<Response, ApiError> {
    let codes = state.vault.confirm_totp(&p, body.code.expose_secret()).await?;
    let mut response = Json(RecoveryCodes { recovery_codes: codes }).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0)?);
    Ok(response)
}

/// The current password and a new one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    #[schema(value_type = String, max_length = 1024)]
    pub current_password: SecretString,
    /// At least 12 characters, not a common password, not easy to guess.
    #[schema(value_type = String, min_length = 12, max_length = 1024)]
    pub new_password: SecretString,
}

/// Change the signed-in user's password.
///
/// All the user's sessions end, this one too: sign in again with the new password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    tag = "sessions",
    request_body = ChangePassword,
    responses((status = 204, description = "Changed; every session of the user ended"), BodyErrors, CommonErrors),
    security(("session" = []))
)]
pub async fn change_password(
    State(state): State<AppState>,
    PasswordAuth(p): PasswordAuth,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<Response, ApiError> {
    state.vault.change_password(&p, &body.current_password, &body.new_password).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0)?);
    Ok(response)
}

/// Who a request is made as.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Caller {
    /// `key:<id>` for an API key, `user:<id>` for a signed-in user.
    pub actor: String,
    pub workspace_id: String,
    /// Permissions held, sorted.
    pub permissions: Vec<String>,
    /// Lists the caller is limited to; empty: all lists.
    pub lists: Vec<String>,
}

/// Who am I.
///
/// The API key or signed-in user a request is made as: its permissions and
/// the lists it is limited to. Useful to check a key before using it.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "sessions",
    responses((status = 200, description = "The caller", body = Caller), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn whoami(Auth(p): Auth) -> Json<Caller> {
    Json(Caller {
        permissions: p.permissions.iter().map(|x| x.as_str().to_string()).collect(),
        lists: match &p.lists {
            crate::store::ListScope::All => Vec::new(),
            crate::store::ListScope::Lists(ids) => ids.clone(),
        },
        actor: p.actor,
        workspace_id: p.workspace_id,
    })
}
