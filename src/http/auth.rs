//! Who is calling: the API key from `Authorization: Bearer csk_...` becomes a
//! `Principal` through `Vault::authenticate`; the client IP is taken from the TCP peer
//! (or, behind a named trusted proxy, from `X-Forwarded-For`); a stated purpose comes
//! from `X-Consentry-Purpose`. A request that carries an API key in its URL is refused
//! before anything else looks at it, because URLs end up in proxy and access logs.

use super::error::ApiError;
use super::AppState;
use crate::access::allowlist::in_any;
use crate::access::{AccessError, Principal, ReadMode};
use crate::startup::{ForwardedHeader, HttpSettings};
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Header in which a client states why it needs unmasked data.
pub const PURPOSE_HEADER: &str = "x-consentry-purpose";

/// Cookie that carries a signed-in user's session token.
pub const SESSION_COOKIE: &str = "__Host-consentry_session";
/// Header in which a request made with the session cookie sends the session's
/// CSRF token; every request but GET, HEAD and OPTIONS needs it.
pub const CSRF_HEADER: &str = "x-consentry-csrf";

/// The authenticated caller of a request: an API key (`Authorization: Bearer`),
/// or else a signed-in user's session cookie.
pub struct Auth(pub Principal);

/// The session a request was made with (absent for API keys).
#[derive(Clone, Copy)]
pub struct CurrentSession(pub uuid::Uuid);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(parts, state, Use::Any).await.map(Auth)
    }
}

/// Like `Auth`, but a session that may only enrol the second factor its
/// workspace requires is let through too (the enrolment operations).
pub struct EnrolAuth(pub Principal);

impl FromRequestParts<AppState> for EnrolAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(parts, state, Use::Enrol).await.map(EnrolAuth)
    }
}

/// Like `Auth`, but a session whose user must choose a new password first is
/// let through too (the password change).
pub struct PasswordAuth(pub Principal);

impl FromRequestParts<AppState> for PasswordAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(parts, state, Use::ChangePassword).await.map(PasswordAuth)
    }
}

#[derive(Clone, Copy)]
enum Use {
    Any,
    Enrol,
    ChangePassword,
}

async fn authenticate(parts: &mut Parts, state: &AppState, to: Use) -> Result<Principal, ApiError> {
    let ip = client_ip(parts, &state.settings);
    if let Some(token) = bearer_token(&parts.headers) {
        return Ok(state.vault.authenticate(token, ip).await?);
    }
    let token = session_cookie(&parts.headers).ok_or(ApiError::Unauthorized { presented: false })?;
    let (principal, session) = match to {
        Use::Any => state.vault.authenticate_session(&token, ip).await?,
        Use::Enrol => state.vault.authenticate_session_to_enrol(&token, ip).await?,
        Use::ChangePassword => state.vault.authenticate_session_to_change_password(&token, ip).await?,
    };
    if !parts.method.is_safe() {
        require_csrf(state, &parts.headers, &principal.workspace_id, &token).await?;
    }
    parts.extensions.insert(CurrentSession(session.id));
    Ok(principal)
}

/// The client's address (see `client_ip`), for requests made before anyone is
/// authenticated.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, &state.settings)))
    }
}

/// Refuses a request made with the session cookie without the session's CSRF token.
pub(crate) async fn require_csrf(state: &AppState, headers: &HeaderMap, workspace_id: &str, token: &str) -> Result<(), ApiError> {
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !state.vault.csrf_matches(workspace_id, token, presented).await? {
        return Err(ApiError::Forbidden(
            "a request made with the session cookie that changes anything needs the session's CSRF token in `X-Consentry-CSRF`".into(),
        ));
    }
    Ok(())
}

/// The session token of the `__Host-consentry_session` cookie, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The token of an `Authorization: Bearer ...` header (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy, in
/// which case the right-most address of the configured forwarding header that is
/// not itself a trusted proxy.
pub fn client_ip(parts: &Parts, settings: &HttpSettings) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    Some(resolve_client_ip(
        peer,
        &parts.headers,
        &settings.trusted_proxies,
        settings.forwarded_header,
    ))
}

fn resolve_client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet], header: ForwardedHeader) -> IpAddr {
    let peer = peer.to_canonical();
    if !in_any(trusted, peer) {
        return peer;
    }
    let hops: Vec<Option<IpAddr>> = match header {
        ForwardedHeader::XForwardedFor => headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| h.parse::<IpAddr>().ok())
            .collect(),
        ForwardedHeader::Forwarded => headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(forwarded_for)
            .collect(),
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        // An entry that does not parse ends what can be believed: keep the last hop seen.
        let Some(ip) = hop else { break };
        client = ip.to_canonical();
        if !in_any(trusted, client) {
            break;
        }
    }
    client
}

/// The address of the `for=` parameter of one RFC 7239 `Forwarded` element
/// (`for=192.0.2.60`, `for="[2001:db8::17]:4711"`); `None` when it has none
/// or names no address (`for=unknown`, obfuscated identifiers).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
    })?;
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = value.parse() {
        return Some(ip);
    }
    // IPv4 with a port.
    value.rsplit_once(':')?.0.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The purpose a request states in `X-Consentry-Purpose`, if any.
#[derive(utoipa::IntoParams)]
#[into_params(names("X-Consentry-Purpose"), parameter_in = Header)]
pub struct StatedPurpose(
    /// Why unmasked data is needed (1-200 printable characters, recorded in the audit log).
    /// Needs `contacts:read`; without this header identifying fields come back masked.
    #[param(max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub Option<String>,
);

impl<S: Send + Sync> FromRequestParts<S> for StatedPurpose {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(PURPOSE_HEADER) {
            None => Ok(StatedPurpose(None)),
            Some(v) => match v.to_str() {
                Ok(s) => Ok(StatedPurpose(Some(s.to_string()))),
                Err(_) => Err(ApiError::invalid("X-Consentry-Purpose", "a purpose must be printable ASCII text")),
            },
        }
    }
}

impl StatedPurpose {
    /// How contact data is shown to `p` for a read: unmasked only with
    /// `contacts:read` and a stated purpose.
    pub fn read_mode(&self, p: &Principal) -> Result<ReadMode, ApiError> {
        p.read_mode(self.0.as_deref()).map_err(purpose_error)
    }

    /// The same for the contact a write returns: a write needs no read permission
    /// as long as it does not ask to see unmasked data.
    pub fn write_mode(&self, p: &Principal) -> Result<ReadMode, ApiError> {
        match self.0.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(ReadMode::Masked),
            Some(_) => self.read_mode(p),
        }
    }
}

fn purpose_error(e: AccessError) -> ApiError {
    match e {
        AccessError::BadPurpose => ApiError::invalid("X-Consentry-Purpose", e.to_string()),
        e @ (AccessError::StepUpRequired | AccessError::OutOfScope) => ApiError::Forbidden(e.to_string()),
        AccessError::Forbidden(p) => ApiError::Forbidden(format!(
            "unmasked data needs the {} permission; leave out the X-Consentry-Purpose header to get masked data",
            p.as_str()
        )),
    }
}

/// Query parameter names that suggest a credential.
const SECRET_PARAMS: [&str; 4] = ["api_key", "key", "token", "access_token"];

/// Refuses any request whose URL carries an API key, before authentication or
/// routing sees it.
pub async fn refuse_keys_in_url(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let in_path = percent_decode(uri.path()).to_ascii_lowercase().contains("csk_");
    let in_query = uri.query().is_some_and(query_carries_secret);
    if in_path || in_query {
        return ApiError::BadRequest {
            title: "API key in URL",
            detail: "never put an API key in a URL: URLs are kept by proxies and access logs; send it as `Authorization: Bearer csk_...`. \
                     Revoke a key that was sent this way."
                .into(),
        }
        .into_response();
    }
    next.run(request).await
}

fn query_carries_secret(query: &str) -> bool {
    if percent_decode(query).to_ascii_lowercase().contains("csk_") {
        return true;
    }
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        let name = percent_decode(&name.replace('+', " ")).trim().to_ascii_lowercase();
        SECRET_PARAMS.contains(&name.as_str())
    })
}

/// Decodes `%XX` escapes (lossy: invalid UTF-8 becomes U+FFFD), leaving anything
/// malformed as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_queries_are_recognised() {
        assert!(query_carries_secret("api_key=abc"));
        assert!(query_carries_secret("list=a&Token=x"));
        assert!(query_carries_secret("access%5Ftoken=x"));
        assert!(query_carries_secret("q=CSK_abc"));
        assert!(query_carries_secret("q=csk%5fabc"));
        assert!(query_carries_secret("key"));
        assert!(!query_carries_secret("list=newsletter&limit=10"));
        assert!(!query_carries_secret("keyboard=1"));
    }

    #[test]
    fn percent_decoding_is_forgiving() {
        assert_eq!(percent_decode("a%20b%"), "a b%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() -> Result<(), Box<dyn std::error::Error>> {
        let xff = ForwardedHeader::XForwardedFor;
        let proxy: IpAddr = "10.0.0.1".parse()?;
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.0.0.2".parse()?);
        let other: IpAddr = "192.0.2.1".parse()?;
        let one: Vec<IpNet> = vec!["10.0.0.1/32".parse()?];
        assert_eq!(resolve_client_ip(other, &headers, &one, xff), other);
        let block: Vec<IpNet> = vec!["10.0.0.0/24".parse()?];
        assert_eq!(resolve_client_ip(proxy, &headers, &block, xff), "203.0.113.9".parse::<IpAddr>()?);
        headers.insert("x-forwarded-for", "junk, 10.0.0.2".parse()?);
        assert_eq!(resolve_client_ip(proxy, &headers, &block, xff), "10.0.0.2".parse::<IpAddr>()?);
        assert_eq!(resolve_client_ip(proxy, &HeaderMap::new(), &block, xff), proxy);
        // The other header is not believed.
        let mut headers = HeaderMap::new();
        headers.insert(header::FORWARDED, "for=198.51.100.7".parse()?);
        assert_eq!(resolve_client_ip(proxy, &headers, &block, xff), proxy);
        assert_eq!(
            resolve_client_ip(proxy, &headers, &block, ForwardedHeader::Forwarded),
            "198.51.100.7".parse::<IpAddr>()?
        );
        // An IPv4-mapped peer is its IPv4 address.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse()?;
        assert_eq!(resolve_client_ip(mapped, &headers, &block, xff), proxy);
        Ok(())
    }

    #[test]
    fn forwarded_elements_name_their_for_address() {
        assert_eq!(
            forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43"),
            "192.0.2.60".parse().ok()
        );
        assert_eq!(
            forwarded_for(r#" For="[2001:db8:cafe::17]:4711""#),
            "2001:db8:cafe::17".parse().ok()
        );
        assert_eq!(forwarded_for("for=\"192.0.2.43:47011\""), "192.0.2.43".parse().ok());
        assert_eq!(forwarded_for("for=unknown"), None);
        assert_eq!(forwarded_for("for=_hidden"), None);
        assert_eq!(forwarded_for("proto=https"), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() -> Result<(), Box<dyn std::error::Error>> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bearer csk_a_b".parse()?);
        assert_eq!(bearer_token(&headers), Some("csk_a_b"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse()?);
        assert_eq!(bearer_token(&headers), None);
        Ok(())
    }
}
