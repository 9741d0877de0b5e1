//! The API description: the OpenAPI 3.1 document generated from the handlers'
//! annotations (`/api/v1/openapi.json`), and a reference page rendered from that
//! document by this module (`/api/docs`). The page is self-contained: no script, no
//! external style or font, and a `Content-Security-Policy` that forbids loading any.

use super::error::Problem;
use super::{audit, consents, contacts, exports, imports, keys, lists, ops, passkeys, roles, security, sessions, users, AppState};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::Value;
use std::fmt::Write;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Policy of the docs page: inline styles only, nothing loaded from anywhere.
pub const DOCS_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "consentry API",
        description = "The encrypted contact vault of consentry: contacts, the consent ledger, lists, imports, exports, \
            API keys and the tamper-evident audit log.\n\n\
            Authenticate with `Authorization: Bearer csk_...` (a key in a URL is refused), or sign in \
            (`POST /api/v1/auth/login`) and send the `__Host-consentry_session` cookie, with the session's CSRF \
            token in `X-Consentry-CSRF` on every request that changes anything. Errors are RFC 9457 \
            `application/problem+json` documents with a `request_id` (also in the `X-Request-Id` header) and, for \
            invalid input, field errors. Identifying fields come back masked unless the key has `contacts:read` and \
            the request states a purpose in `X-Consentry-Purpose`, which the audit log records."
    ),
    paths(
        contacts::create_contact,
        contacts::list_contacts,
        contacts::lookup_contact,
        contacts::get_contact,
        contacts::update_contact,
        contacts::delete_contact,
        consents::get_ledger,
        consents::record_consent,
        consents::get_event,
        consents::get_proof,
        lists::list_lists,
        lists::create_list,
        lists::get_list,
        lists::rename_list,
        lists::delete_list,
        lists::add_members,
        lists::remove_members,
        imports::create_import,
        imports::get_import,
        imports::list_rejections,
        exports::create_export,
        exports::get_export,
        keys::list_keys,
        keys::create_key,
        keys::revoke_key,
        keys::rotate_key,
        keys::rotate_all_keys,
        keys::set_key_allowlist,
        users::list_users,
        users::invite_user,
        users::get_user,
        users::disable_user,
        users::enable_user,
        users::remove_user,
        users::reset_second_factor,
        users::set_user_allowlist,
        roles::list_roles,
        roles::create_role,
        roles::update_role,
        roles::delete_role,
        roles::set_user_role,
        sessions::whoami,
        sessions::sign_in,
        sessions::sign_out,
        sessions::list_sessions,
        sessions::end_session,
        sessions::verify_factor,
        sessions::change_password,
        sessions::begin_totp,
        sessions::confirm_totp,
        sessions::accept_invitation,
        passkeys::begin_registration,
        passkeys::finish_registration,
        passkeys::list_passkeys,
        passkeys::remove_passkey,
        passkeys::begin_factor,
        passkeys::verify_factor,
        passkeys::begin_sign_in,
        passkeys::finish_sign_in,
        security::report,
        security::reset_passwords,
        security::get_requirement,
        security::set_requirement,
        security::get_allowlist,
        security::set_allowlist,
        audit::list_events,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        openapi_json,
        docs_page
    ),
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    tags(
        (name = "contacts", description = "Contacts, masked unless a purpose is stated"),
        (name = "consents", description = "The append-only consent ledger (PATCH, PUT and DELETE answer 405)"),
        (name = "lists", description = "Lists and their members"),
        (name = "imports", description = "CSV imports"),
        (name = "exports", description = "Exports for a stated purpose"),
        (name = "keys", description = "API keys"),
        (name = "users", description = "Users: one sign-in per person"),
        (name = "sessions", description = "Signing in, sessions and invitations"),
        (name = "security", description = "The workspace's security settings"),
        (name = "audit", description = "The audit log"),
        (name = "operations", description = "Health, readiness, metrics and this description")
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("csk_<id>_<secret>")
                    .description(Some("An API key, sent as `Authorization: Bearer csk_...` and never in a URL"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "__Host-consentry_session",
                    "A signed-in user's session, set by `POST /api/v1/auth/login`; requests that change anything also send \
                     the session's CSRF token in `X-Consentry-CSRF`",
                ),
            )),
        );
    }
}

/// The rendered description, built once.
struct Docs {
    json: String,
    html: String,
}

pub fn router() -> Router<AppState> {
    let doc = ApiDoc::openapi();
    let value = serde_json::to_value(&doc).unwrap_or(Value::Null);
    let docs = Arc::new(Docs {
        json: serde_json::to_string(&value).unwrap_or_default(),
        html: render_page(&value),
    });
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/docs", get(docs_page))
        .layer(Extension(docs))
}

/// The OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document", body = Object, content_type = "application/json"))
)]
async fn openapi_json(Extension(docs): Extension<Arc<Docs>>) -> Response {
    let mut response = docs.json.clone().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The API reference page.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "operations",
    responses((status = 200, description = "HTML reference, rendered from the OpenAPI document", body = String, content_type = "text/html"))
)]
async fn docs_page(Extension(docs): Extension<Arc<Docs>>) -> Response {
    let mut response = docs.html.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    response
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
code{font-family:ui-monospace,monospace;background:#f3f3f3;padding:0 .2em}\
h2{border-bottom:1px solid #ddd;margin-top:2.5rem}\
section.op{border:1px solid #ddd;border-radius:4px;padding:.5rem 1rem;margin:1rem 0}\
.m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}\
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}\
nav li{list-style:none}";

/// Renders the reference page from the OpenAPI document.
fn render_page(doc: &Value) -> String {
    let title = doc.pointer("/info/title").and_then(Value::as_str).unwrap_or("API");
    let version = doc.pointer("/info/version").and_then(Value::as_str).unwrap_or_default();
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>\
         <h1>{t} <small>{v}</small></h1>",
        t = esc(title),
        v = esc(version)
    );
    if let Some(d) = doc.pointer("/info/description").and_then(Value::as_str) {
        out.push_str(&paragraphs(d));
    }
    out.push_str("<p>The machine-readable description is at <a href=\"/api/v1/openapi.json\"><code>/api/v1/openapi.json</code></a>.</p>");

    let paths = doc.get("paths").and_then(Value::as_object);
    out.push_str("<h2>Operations</h2><nav><ul>");
    for (path, item) in paths.into_iter().flatten() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                let summary = op.get("summary").and_then(Value::as_str).unwrap_or_default();
                let _ = write!(
                    out,
                    "<li><a href=\"#{a}\"><span class=\"m\">{m}</span> <code>{p}</code></a> {s}</li>",
                    a = anchor(m, path),
                    p = esc(path),
                    s = esc(summary)
                );
            }
        }
    }
    out.push_str("</ul></nav>");
    for (path, item) in paths.into_iter().flatten() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                render_operation(&mut out, m, path, op);
            }
        }
    }

    out.push_str("<h2>Schemas</h2>");
    let schemas = doc.pointer("/components/schemas").and_then(Value::as_object);
    for (name, schema) in schemas.into_iter().flatten() {
        render_schema(&mut out, name, schema);
    }
    out.push_str("</body></html>");
    out
}

fn render_operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let _ = write!(
        out,
        "<section class=\"op\" id=\"{a}\"><h3><span class=\"m\">{method}</span> <code>{p}</code></h3>",
        a = anchor(method, path),
        p = esc(path)
    );
    if let Some(s) = op.get("summary").and_then(Value::as_str) {
        let _ = write!(out, "<p><strong>{}</strong></p>", esc(s));
    }
    if let Some(d) = op.get("description").and_then(Value::as_str) {
        out.push_str(&paragraphs(d));
    }
    let secured = op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    out.push_str(if secured {
        "<p>Authentication: <code>Authorization: Bearer csk_...</code></p>"
    } else {
        "<p>No authentication.</p>"
    });
    if let Some(params) = op.get("parameters").and_then(Value::as_array).filter(|p| !p.is_empty()) {
        out.push_str("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>");
        for p in params {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p.get("name").and_then(Value::as_str).unwrap_or_default()),
                esc(p.get("in").and_then(Value::as_str).unwrap_or_default()),
                type_name(p.get("schema").unwrap_or(&Value::Null)),
                if p.get("required").and_then(Value::as_bool).unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                },
                esc(p.get("description").and_then(Value::as_str).unwrap_or_default())
            );
        }
        out.push_str("</table>");
    }
    if let Some(content) = op.pointer("/requestBody/content").and_then(Value::as_object) {
        out.push_str("<h4>Request body</h4><table><tr><th>media type</th><th>schema</th></tr>");
        for (media, c) in content {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                esc(media),
                type_name(c.get("schema").unwrap_or(&Value::Null))
            );
        }
        out.push_str("</table>");
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        out.push_str("<h4>Responses</h4><table><tr><th>status</th><th>description</th><th>body</th></tr>");
        for (status, r) in responses {
            let bodies: Vec<String> = r
                .get("content")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(media, c)| format!("<code>{}</code> {}", esc(media), type_name(c.get("schema").unwrap_or(&Value::Null))))
                .collect();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(status),
                esc(r.get("description").and_then(Value::as_str).unwrap_or_default()),
                bodies.join("<br>")
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn render_schema(out: &mut String, name: &str, schema: &Value) {
    let _ = write!(out, "<section class=\"op\" id=\"schema-{n}\"><h3>{n}</h3>", n = esc(name));
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        out.push_str(&paragraphs(d));
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match schema.get("properties").and_then(Value::as_object) {
        Some(props) => {
            out.push_str("<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>");
            for (field, s) in props {
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(field),
                    type_name(s),
                    if required.contains(&field.as_str()) { "yes" } else { "no" },
                    esc(s.get("description").and_then(Value::as_str).unwrap_or_default())
                );
            }
            out.push_str("</table>");
        }
        None => {
            let _ = write!(out, "<p>{}</p>", type_name(schema));
        }
    }
    out.push_str("</section>");
}

/// A short, linked description of a schema: a component name, `[T]`, a union, or a
/// primitive type with its format.
fn type_name(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{n}\">{n}</a>", n = esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = alts.iter().map(type_name).collect();
            return parts.join(if key == "allOf" { " &amp; " } else { " | " });
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return if schema.get("enum").is_some() {
            enum_values(schema)
        } else {
            "any".into()
        };
    }
    let rendered: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => format!("[{}]", type_name(schema.get("items").unwrap_or(&Value::Null))),
            "string" if schema.get("enum").is_some() => enum_values(schema),
            other => match schema.get("format").and_then(Value::as_str) {
                Some(f) if other != "null" => format!("{} ({})", esc(other), esc(f)),
                _ => esc(other),
            },
        })
        .collect();
    rendered.join(" | ")
}

fn enum_values(schema: &Value) -> String {
    let values: Vec<String> = schema
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
        .collect();
    format!("one of {}", values.join(", "))
}

fn anchor(method: &str, path: &str) -> String {
    let slug: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("op-{method}{slug}")
}

fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|p| format!("<p>{}</p>", code_spans(&esc(p.trim()))))
        .collect()
}

/// Turns `` `x` `` into `<code>x</code>` in already escaped text.
fn code_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_escapes_and_links_schemas() {
        let doc = serde_json::json!({
            "info": {"title": "<t>", "version": "1"},
            "paths": {"/x/{id}": {"get": {"summary": "S & s", "responses": {"200": {"description": "ok",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}}}},
            "components": {"schemas": {"Thing": {"type": "object", "properties": {"a": {"type": ["string", "null"]}}}}}
        });
        let html = render_page(&doc);
        assert!(html.contains("&lt;t&gt;"));
        assert!(html.contains("S &amp; s"));
        assert!(html.contains("<a href=\"#schema-Thing\">Thing</a>"));
        assert!(html.contains("string | null"));
        assert!(!html.contains("<script"));
    }
}
