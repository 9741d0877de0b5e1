//! `/api/v1/security`: the workspace's security settings. Needs `security:manage`.

use super::auth::Auth;
use super::error::{ApiError, BodyErrors, CommonErrors};
use super::extract::ApiJson;
use super::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new().route("/security/second-factor", get(get_requirement).put(set_requirement))
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
