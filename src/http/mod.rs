//! The HTTP API (DESIGN.md §7): thin axum adapters over the vault services, one
//! router per resource, one error type rendered as problem+json, and the request
//! middleware that gives every request an id, a tracing span without query string or
//! body, metrics by route template and the security headers.

pub mod audit;
pub mod auth;
pub mod consents;
pub mod contacts;
pub mod docs;
pub mod error;
pub mod exports;
pub mod extract;
pub mod imports;
pub mod keys;
pub mod lists;
pub mod ops;
pub mod passkeys;
pub mod roles;
pub mod security;
pub mod sessions;
pub mod users;

use crate::metrics::Metrics;
use crate::startup::HttpSettings;
use crate::vault::Vault;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use error::{ApiError, ProblemMarker};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<HttpSettings>,
    /// Set when the server shuts down, so long imports stop after their current batch.
    pub shutdown: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(vault: Arc<Vault>, metrics: Arc<Metrics>, settings: Arc<HttpSettings>) -> Self {
        AppState {
            vault,
            metrics,
            settings,
            shutdown: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Header carrying the id of a request in every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The matched route template of a request, carried on its response.
#[derive(Clone)]
struct RouteTemplate(String);

/// Route layer: records the matched route template on the response, where the
/// outer middleware (which runs before routing) can read it.
pub async fn tag_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| RouteTemplate(m.as_str().to_string()));
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Outermost middleware: request id, tracing span, problem completion, security
/// headers and metrics. The span and the log line hold the method, the route
/// template, the status, the latency and the request id: never the path, the query
/// string or the body, which can hold personal data.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::now_v7().to_string();
    let method = request.method().clone();
    let is_api = request.uri().path().starts_with("/api/");
    let span = tracing::info_span!("request", method = %method, route = tracing::field::Empty, request_id = %request_id);
    let mut response = next.run(request).instrument(span.clone()).await;

    if let Some(ProblemMarker(mut problem)) = response.extensions_mut().remove::<ProblemMarker>() {
        problem.request_id = request_id.clone();
        problem.instance = Some(format!("urn:uuid:{request_id}"));
        let mut completed = error::render(response.status(), &problem);
        for (name, value) in response.headers() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                completed.headers_mut().append(name.clone(), value.clone());
            }
        }
        response = completed;
    }

    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if is_api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or_else(|| "unmatched".to_string(), |r| r.0.clone());
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics.observe_request(method.as_str(), &route, status, elapsed);
    span.record("route", route.as_str());
    span.in_scope(|| tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request answered"));
    response
}

/// A `201 Created` answer with the new resource and its `Location`.
pub fn created<T: serde::Serialize>(location: &str, body: &T) -> Response {
    let mut response = (axum::http::StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Answers paths no route matches.
pub async fn no_such_route() -> ApiError {
    ApiError::NotFound("no route matches this path; see /api/v1/openapi.json".into())
}

/// Answers a method a route does not support (axum adds the `Allow` header).
pub async fn method_not_allowed(method: Method, request: Request) -> ApiError {
    let path = request.uri().path();
    if path.contains("/consents") && (method == Method::PATCH || method == Method::DELETE || method == Method::PUT) {
        return ApiError::MethodNotAllowed("the consent ledger is append-only; record a new event instead".into());
    }
    ApiError::MethodNotAllowed(format!("this resource does not support {method}"))
}
