//! `/api/v1/security`: the workspace's security settings. Needs `security:manage`.

use super::auth::Auth;
use super::error::{ApiError, BodyErrors, CommonErrors, ConflictError};
use super::extract::ApiJson;
use super::AppState;
use crate::vault::security_report::SecurityReport;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/security", get(report))
        .route("/security/reset-passwords", post(reset_passwords))
        .route("/security/second-factor", get(get_requirement).put(set_requirement))
        .route("/security/allowlist", get(get_allowlist).put(set_allowlist))
}

/// Whether every user of the workspace must have a second factor.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorRequirement {
    pub required: bool,
}

/// Whether a second factor is required.
#[utoipa::path(
    get,
    path = "/api/v1/security/second-factor",
    tag = "security",
    responses((status = 200, description = "The requirement", body = SecondFactorRequirement), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_requirement(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<SecondFactorRequirement>, ApiError> {
    Ok(Json(SecondFactorRequirement {
        required: state.vault.second_factor_required(&p).await?,
    }))
}

/// Require a second factor of every user, or stop requiring it.
///
/// When required, a user without a second factor must enrol one right after
/// signing in and can do nothing else first.
#[utoipa::path(
    put,
    path = "/api/v1/security/second-factor",
    tag = "security",
    request_body = SecondFactorRequirement,
    responses((status = 200, description = "The requirement now", body = SecondFactorRequirement), BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn set_requirement(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<SecondFactorRequirement>,
) -> Result<Json<SecondFactorRequirement>, ApiError> {
    Ok(Json(SecondFactorRequirement {
        required: state.vault.set_second_factor_required(&p, body.required).await?,
    }))
}

/// An address allowlist as it is now.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AllowlistView {
    /// CIDR blocks in canonical form (a single address is a `/32` or `/128`
    /// block); empty: any address.
    pub allowlist: Vec<String>,
}

/// A new address allowlist.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAllowlist {
    /// IPv4 and IPv6 addresses and CIDR blocks such as `203.0.113.0/24` or
    /// `2001:db8::/48` (at most 100); empty: any address.
    #[schema(max_items = 100)]
    pub allowlist: Vec<String>,
    /// Set it even though it does not include the address of this request
    /// (which would then be shut out). Refused (409) without it.
    #[serde(default)]
    pub confirm_lockout: bool,
}

/// The workspace's address allowlist.
///
/// Every sign-in and every request of the workspace, by session or by API key,
/// must come from an address on it (when it is not empty).
#[utoipa::path(
    get,
    path = "/api/v1/security/allowlist",
    tag = "security",
    responses((status = 200, description = "The allowlist", body = AllowlistView), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_allowlist(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<AllowlistView>, ApiError> {
    Ok(Json(AllowlistView {
        allowlist: state.vault.workspace_allowlist(&p).await?,
    }))
}

/// Replace the workspace's address allowlist.
///
/// A list that does not include the address of this request needs
/// `confirm_lockout`; `consentry security allowlist clear` on the server clears it.
#[utoipa::path(
    put,
    path = "/api/v1/security/allowlist",
    tag = "security",
    request_body = SetAllowlist,
    responses((status = 200, description = "The allowlist now", body = AllowlistView), ConflictError, BodyErrors, CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn set_allowlist(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<SetAllowlist>,
) -> Result<Json<AllowlistView>, ApiError> {
    Ok(Json(AllowlistView {
        allowlist: state
            .vault
            .set_workspace_allowlist(&p, &body.allowlist, body.confirm_lockout)
            .await?,
    }))
}

/// The workspace's security overview.
///
/// Second-factor coverage and the users without one, API keys near expiry or
/// unused for 30 days, allowlists, and the failed or refused authentications of
/// the last 24 hours.
#[utoipa::path(
    get,
    path = "/api/v1/security",
    tag = "security",
    responses((status = 200, description = "The overview", body = SecurityReport), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn report(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<SecurityReport>, ApiError> {
    Ok(Json(state.vault.security_report(&p).await?))
}

/// What "reset all passwords" did.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PasswordsReset {
    /// Users who must choose a new password at their next sign-in.
    pub users: u64,
}

/// Reset all passwords.
///
/// Every user must choose a new password at their next sign-in before doing
/// anything else, and every session of the workspace ends now, this one too.
#[utoipa::path(
    post,
    path = "/api/v1/security/reset-passwords",
    tag = "security",
    responses((status = 200, description = "Done; every session ended", body = PasswordsReset), CommonErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn reset_passwords(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<PasswordsReset>, ApiError> {
    Ok(Json(PasswordsReset {
        users: state.vault.reset_all_passwords(&p).await?,
    }))
}
