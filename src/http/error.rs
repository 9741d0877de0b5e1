//! The one error type of the HTTP API and its RFC 9457 `application/problem+json`
//! rendering. Clients get a category, a request id and, for invalid input, field
//! errors; server-side failures stay opaque to them and their whole cause chain is
//! logged once, here. No variant carries personal data into a response body.

use crate::access::AccessError;
use crate::vault::api_keys::AuthError;
use crate::vault::{FieldError, VaultError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::ToSchema;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document, as every error of the API is answered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:consentry:problem:not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, in words.
    pub detail: String,
    /// The path of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Id of the request (also in the `X-Request-Id` header); quote it when reporting a problem.
    pub request_id: String,
    /// Problems with single input fields.
    pub errors: Vec<FieldError>,
}

/// Errors of the HTTP API. Each variant names the status it is answered with.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed (unreadable JSON, a key in the URL, ...).
    BadRequest { title: &'static str, detail: String },
    /// 401: no API key or session, or one that is unknown, revoked, ended or expired.
    Unauthorized { presented: bool },
    /// 401: a sign-in with a wrong address or password (one answer for every cause).
    SignInRefused,
    /// 401: the session waits for its second factor, or a second-factor code was refused.
    SecondFactor(String),
    /// 429: too many failed sign-ins; retry after this many seconds.
    TooManyRequests { retry_after: u64 },
    /// 403: the key lacks a permission.
    Forbidden(String),
    /// 404: no such resource, or one outside the key's workspace or lists.
    NotFound(String),
    /// 405: the resource does not support the method.
    MethodNotAllowed(String),
    /// 409: the change conflicts with existing data.
    Conflict(String),
    /// 413: the body is larger than the limit (in bytes, when known).
    PayloadTooLarge { limit: Option<usize> },
    /// 415: the body is not of a media type this endpoint reads.
    UnsupportedMediaType(String),
    /// 422: fields of the input are invalid.
    Invalid(Vec<FieldError>),
    /// 500: stored data failed its integrity check and was withheld.
    Integrity,
    /// 503: the audit log could not be written, so nothing was done or returned.
    AuditUnavailable(anyhow::Error),
    /// 503: the store does not answer.
    NotReady(anyhow::Error),
    /// 500: anything else; the client learns only the request id.
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, message)])
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            title: "Bad request",
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } | ApiError::SignInRefused | ApiError::SecondFactor(_) => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Integrity | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::AuditUnavailable(_) | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The problem document, without request id and instance (the request
    /// middleware fills those in). Logs the cause chain of server-side failures.
    fn into_problem(self) -> Problem {
        let status = self.status().as_u16();
        let (slug, title, detail, errors): (&str, &str, String, Vec<FieldError>) = match self {
            ApiError::BadRequest { title, detail } => ("bad-request", title, detail, vec![]),
            ApiError::Unauthorized { presented } => (
                "unauthorized",
                "Authentication required",
                if presented {
                    "the API key or session is malformed, unknown, revoked, ended or expired".into()
                } else {
                    "send an API key as `Authorization: Bearer csk_...`, or sign in (`POST /api/v1/auth/login`) and send the session cookie"
                        .into()
                },
                vec![],
            ),
            ApiError::SignInRefused => (
                "sign-in-refused",
                "Sign-in refused",
                "the email address or the password is wrong".into(),
                vec![],
            ),
            ApiError::SecondFactor(detail) => ("second-factor", "Second factor needed", detail, vec![]),
            ApiError::TooManyRequests { retry_after } => (
                "too-many-requests",
                "Too many failed sign-ins",
                format!("too many failed sign-ins; try again in {retry_after} seconds"),
                vec![],
            ),
            ApiError::Forbidden(detail) => ("forbidden", "Forbidden", detail, vec![]),
            ApiError::NotFound(detail) => ("not-found", "Not found", detail, vec![]),
            ApiError::MethodNotAllowed(detail) => ("method-not-allowed", "Method not allowed", detail, vec![]),
            ApiError::Conflict(detail) => ("conflict", "Conflict", detail, vec![]),
            ApiError::PayloadTooLarge { limit } => (
                "payload-too-large",
                "Request body too large",
                match limit {
                    Some(limit) => format!("the body is larger than the limit of {limit} bytes"),
                    None => "the body is larger than this endpoint accepts".into(),
                },
                vec![],
            ),
            ApiError::UnsupportedMediaType(detail) => ("unsupported-media-type", "Unsupported media type", detail, vec![]),
            ApiError::Invalid(errors) => ("invalid", "Invalid input", "the request has invalid fields".into(), errors),
            ApiError::Integrity => (
                "integrity",
                "Stored data failed its integrity check",
                "the data of this record did not pass its integrity check, so it was withheld; the incident was logged and audited".into(),
                vec![],
            ),
            ApiError::AuditUnavailable(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "the audit log could not be written; the request was refused");
                (
                    "audit-unavailable",
                    "Audit log unavailable",
                    "the audit log could not be written, so nothing was done and no data was returned; try again later".into(),
                    vec![],
                )
            }
            ApiError::NotReady(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "the store is not ready");
                ("not-ready", "Not ready", "the store does not answer".into(), vec![])
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "request failed");
                (
                    "internal",
                    "Internal server error",
                    "the server failed to answer this request; quote the request id when reporting it".into(),
                    vec![],
                )
            }
        };
        Problem {
            kind: format!("urn:consentry:problem:{slug}"),
            title: title.into(),
            status,
            detail,
            instance: None,
            request_id: String::new(),
            errors,
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::NotFound(what) => ApiError::NotFound(format!("no such {what}")),
            VaultError::Forbidden(AccessError::Forbidden(p)) => {
                ApiError::Forbidden(format!("this action needs the {} permission", p.as_str()))
            }
            VaultError::Forbidden(e @ AccessError::BadPurpose) => ApiError::invalid("purpose", e.to_string()),
            VaultError::Forbidden(e @ (AccessError::StepUpRequired | AccessError::OutOfScope)) => ApiError::Forbidden(e.to_string()),
            VaultError::Invalid(errors) => ApiError::Invalid(errors),
            VaultError::BadRequest(detail) => ApiError::bad_request(detail),
            VaultError::Conflict(detail) => ApiError::Conflict(detail),
            VaultError::AuditUnavailable(cause) => ApiError::AuditUnavailable(cause),
            VaultError::Integrity { .. } => ApiError::Integrity,
            e @ VaultError::AddressRefused(_) => ApiError::Forbidden(e.to_string()),
            VaultError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<crate::vault::sessions::SessionError> for ApiError {
    fn from(e: crate::vault::sessions::SessionError) -> Self {
        use crate::vault::sessions::SessionError;
        match e {
            SessionError::SignInRefused => ApiError::SignInRefused,
            SessionError::Invalid => ApiError::Unauthorized { presented: true },
            e @ (SessionError::FactorRequired | SessionError::FactorRefused) => ApiError::SecondFactor(e.to_string()),
            SessionError::Throttled { retry_after } => ApiError::TooManyRequests { retry_after },
            e @ (SessionError::EnrolmentRequired | SessionError::PasswordChangeRequired | SessionError::NoSecondFactor) => {
                ApiError::Forbidden(e.to_string())
            }
            SessionError::Vault(e) => e.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid => ApiError::Unauthorized { presented: true },
            AuthError::Vault(e) => e.into(),
        }
    }
}

/// Marks a response as a problem so the request middleware can complete it.
#[derive(Clone)]
pub struct ProblemMarker(pub Problem);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let challenge = match &self {
            ApiError::Unauthorized { presented: false } => Some("Bearer realm=\"consentry\""),
            ApiError::Unauthorized { presented: true } => Some("Bearer realm=\"consentry\", error=\"invalid_token\""),
            _ => None,
        };
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after } => HeaderValue::from_str(&retry_after.to_string()).ok(),
            _ => None,
        };
        let problem = self.into_problem();
        let mut res = render(status, &problem);
        if let Some(v) = retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(c) = challenge {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        res.extensions_mut().insert(ProblemMarker(problem));
        res
    }
}

/// Renders a problem document as a response body.
pub fn render(status: StatusCode, problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

// OpenAPI descriptions of the error responses, shared by the operations.

fn problem_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
    )
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String))
        .description(Some(description))
        .build()
}

fn responses(codes: &[u16]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    codes
        .iter()
        .map(|code| {
            let response = match code {
                400 => problem_response("Malformed request, or an API key in the URL"),
                401 => problem_response("Missing, unknown, revoked or expired API key")
                    .header("WWW-Authenticate", string_header("`Bearer` challenge")),
                403 => problem_response("The key lacks a permission this request needs"),
                404 => problem_response("No such resource in this workspace, or outside the key's lists"),
                409 => problem_response("Conflicts with existing data"),
                413 => problem_response("The body is larger than the configured limit"),
                415 => problem_response("The body is not of a media type this endpoint reads"),
                422 => problem_response("Invalid input; `errors` names the fields"),
                500 => problem_response("Server failure, or stored data that failed its integrity check (withheld)"),
                503 => problem_response("The audit log could not be written, so the request was refused"),
                _ => problem_response("Error"),
            };
            (code.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// Errors every authenticated operation can answer with.
pub struct CommonErrors;

impl utoipa::IntoResponses for CommonErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        responses(&[400, 401, 403, 404, 422, 500, 503])
    }
}

/// A sign-in refused for too many failures.
pub struct ThrottledError;

impl utoipa::IntoResponses for ThrottledError {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let mut map = BTreeMap::new();
        let response = problem_response("Too many failed sign-ins for this address or from this client")
            .header("Retry-After", string_header("Seconds to wait"));
        map.insert("429".into(), RefOr::T(response.build()));
        map
    }
}

/// Errors of operations that read a request body, besides the common ones.
pub struct BodyErrors;

impl utoipa::IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        responses(&[413, 415])
    }
}

/// A conflict with existing data.
pub struct ConflictError;

impl utoipa::IntoResponses for ConflictError {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        responses(&[409])
    }
}

/// The store not answering (readiness).
pub struct NotReadyError;

impl utoipa::IntoResponses for NotReadyError {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let mut map = BTreeMap::new();
        map.insert("503".into(), RefOr::T(problem_response("The store does not answer").build()));
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_failures_stay_opaque() -> serde_json::Result<()> {
        let problem = ApiError::Internal(anyhow::anyhow!("secret detail jane@example.com")).into_problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("jane"));
        let problem = ApiError::AuditUnavailable(anyhow::anyhow!("jane@example.com")).into_problem();
        assert_eq!(problem.status, 503);
        assert!(!serde_json::to_string(&problem)?.contains("jane"));
        Ok(())
    }
}
