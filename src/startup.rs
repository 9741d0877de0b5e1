//! Builds the HTTP application from a vault and settings: `app` assembles the router
//! (testable without a socket), `Application::build` binds the listener (port 0 in
//! tests) and `run_until` serves until a shutdown signal, then lets requests in
//! flight finish; imports among them stop after their current batch.

use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::vault::Vault;
use anyhow::Context;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Largest body `POST /api/v1/imports` accepts, in bytes.
    pub import_body_limit: usize,
    /// Reverse proxies (addresses or CIDR blocks) whose forwarding header is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which header trusted proxies name the client in.
    pub forwarded_header: ForwardedHeader,
    /// The origin users reach the server at, which passkeys are bound to;
    /// `None`: `http://localhost:PORT` of the bound port.
    pub public_url: Option<webauthn_rs::prelude::Url>,
}

/// The header in which trusted proxies pass on the client's address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            import_body_limit: 64 << 20,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            public_url: None,
        }
    }
}

/// The whole router: the versioned API, the description, operations endpoints,
/// fallbacks that answer problems, and the request middleware.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .merge(http::contacts::router())
        .merge(http::consents::router())
        .merge(http::lists::router())
        .merge(http::imports::router(state.settings.import_body_limit))
        .merge(http::exports::router())
        .merge(http::keys::router())
        .merge(http::sessions::router())
        .merge(http::passkeys::router())
        .merge(http::users::router())
        .merge(http::roles::router())
        .merge(http::security::router())
        .merge(http::audit::router());
    Router::new()
        .nest("/api/v1", api)
        .merge(http::docs::router())
        .merge(http::ops::router())
        .route_layer(from_fn(http::tag_route))
        .method_not_allowed_fallback(http::method_not_allowed)
        .fallback(http::no_such_route)
        .layer(from_fn(http::auth::refuse_keys_in_url))
        .layer(from_fn_with_state(state.clone(), http::observe))
        .with_state(state)
}

/// A bound, not yet serving, HTTP server.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
}

impl Application {
    /// Binds the listener and prepares the application state.
    pub async fn build(vault: Arc<Vault>, settings: HttpSettings) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        let addr = listener.local_addr().context("failed to read the bound address")?;
        let origin = match &settings.public_url {
            Some(url) => url.clone(),
            None => webauthn_rs::prelude::Url::parse(&format!("http://localhost:{}", addr.port()))?,
        };
        vault.set_relying_party(&origin)?;
        let state = AppState::new(vault, Arc::new(Metrics::new()), Arc::new(settings));
        Ok(Application { listener, addr, state })
    }

    /// The address actually bound (the chosen port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics the server records into (the CLI's import counts can join them).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting connections and lets
    /// requests in flight finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = self.state.shutdown.clone();
        let router = app(self.state);
        axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown.await;
                stop.store(true, Ordering::SeqCst);
            })
            .await
            .context("the HTTP server failed")
    }
}
